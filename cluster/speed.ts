/**
 * Moving averages of how fast each node serves each model, learned from real traffic: time to
 * first token and decode tokens per second, plus the usual answer length per model.
 */
const ALPHA = 0.3;
const DEFAULT_TOKENS_PER_S = 50;
const DEFAULT_TTFT_MS = 300;
const DEFAULT_ANSWER_TOKENS = 256;
/** How much better than the best measured node an untried node is assumed to be (explore it once). */
const OPTIMISM = 1.25;

interface Ewma {
  value: number;
  n: number;
}

const update = (e: Ewma | undefined, x: number): Ewma => (e ? { value: e.value + ALPHA * (x - e.value), n: e.n + 1 } : { value: x, n: 1 });

export class SpeedBook {
  private readonly ttft = new Map<string, Ewma>();
  private readonly tps = new Map<string, Ewma>();
  private readonly answerTokens = new Map<string, Ewma>();
  /** serviceMs runs for every queued request and slot each time a slot frees: its inputs are kept until the next measurement. */
  private readonly rates = new Map<string, { ttftMs: number; msPerToken: number }>();

  private static key(nodeId: string, model: string): string {
    return `${nodeId}\u0000${model}`;
  }

  record(nodeId: string, model: string, s: { firstByteMs?: number; chunks?: number; decodeMs?: number }): void {
    const k = SpeedBook.key(nodeId, model);
    this.rates.clear();
    if (s.firstByteMs !== undefined) this.ttft.set(k, update(this.ttft.get(k), s.firstByteMs));
    // A few chunks are too short to say anything about decode speed.
    if (s.chunks && s.chunks >= 8 && s.decodeMs && s.decodeMs > 0) {
      this.tps.set(k, update(this.tps.get(k), (s.chunks - 1) / (s.decodeMs / 1000)));
    }
    if (s.chunks) this.answerTokens.set(model, update(this.answerTokens.get(model), s.chunks));
  }

  /** Decode speed. A node not measured yet is assumed a little faster than the fastest measured one, so it gets tried. */
  tokensPerSecond(nodeId: string, model: string): number {
    const best = this.extreme(this.tps, model, Math.max);
    return this.tps.get(SpeedBook.key(nodeId, model))?.value ?? (best !== undefined ? best * OPTIMISM : DEFAULT_TOKENS_PER_S);
  }

  ttftMs(nodeId: string, model: string): number {
    const best = this.extreme(this.ttft, model, Math.min);
    return this.ttft.get(SpeedBook.key(nodeId, model))?.value ?? (best !== undefined ? best / OPTIMISM : DEFAULT_TTFT_MS);
  }

  /** Expected answer length when the request does not bound it. */
  typicalTokens(model: string): number {
    return this.answerTokens.get(model)?.value ?? DEFAULT_ANSWER_TOKENS;
  }

  /** Expected seconds to serve `tokens` on a free slot of the node. */
  serviceMs(nodeId: string, model: string, tokens: number): number {
    const k = SpeedBook.key(nodeId, model);
    let r = this.rates.get(k);
    if (!r) this.rates.set(k, (r = { ttftMs: this.ttftMs(nodeId, model), msPerToken: 1000 / this.tokensPerSecond(nodeId, model) }));
    return r.ttftMs + tokens * r.msPerToken;
  }

  private extreme(map: Map<string, Ewma>, model: string, pick: (a: number, b: number) => number): number | undefined {
    let out: number | undefined;
    const suffix = `\u0000${model}`;
    for (const [k, e] of map) if (k.endsWith(suffix)) out = out === undefined ? e.value : pick(out, e.value);
    return out;
  }
}
