import type { Timings, Usage } from './types.ts';

/**
 * What a streamed answer's chunks add up to for the history: its text as it grows, the usage,
 * the finish reason and the timings. One rule for the API's stored completions and the chat.
 */
export class AnswerTally {
  usage: Usage | undefined;
  finishReason: string | null = null;
  private readonly t0: number;
  private firstTokenAt: number | undefined;

  constructor(private readonly now: () => number = Date.now) {
    this.t0 = now();
  }

  /** Takes in chunks (stream deltas, or a whole non-streamed answer); returns the text they add. */
  add(chunks: readonly Record<string, any>[]): string {
    let piece = '';
    let streamed = false;
    for (const chunk of chunks) {
      const choice = Array.isArray(chunk?.choices) ? chunk.choices[0] : undefined;
      const delta = choice?.delta?.content;
      const text = delta ?? choice?.message?.content;
      if (typeof text === 'string') piece += text;
      if (typeof delta === 'string' && delta) streamed = true;
      if (choice?.finish_reason) this.finishReason = choice.finish_reason;
      if (typeof chunk?.usage?.completion_tokens === 'number') this.usage = chunk.usage;
    }
    // A whole answer has no first token to time: its rate is taken over the whole request.
    if (streamed) this.firstTokenAt ??= this.now();
    return piece;
  }

  /**
   * Total time; for a stream, time to first token and tokens per second after it; for an answer
   * with no streamed text (a whole answer, tool calls only), tokens per second over the total.
   */
  timings(): Timings {
    const end = this.now();
    const t: Timings = { totalMs: end - this.t0 };
    if (this.firstTokenAt !== undefined) t.ttftMs = this.firstTokenAt - this.t0;
    const decodeS = (end - (this.firstTokenAt ?? this.t0)) / 1000;
    if (this.usage && this.usage.completion_tokens > 0 && decodeS > 0) t.tokensPerSecond = Math.round((this.usage.completion_tokens / decodeS) * 10) / 10;
    return t;
  }
}
