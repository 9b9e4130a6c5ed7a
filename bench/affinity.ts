/**
 * `bench/run.ts affinity`: conversation affinity with the real llama-server. Two instances of
 * the same model behind Hearth; four conversations with long, distinct system prompts take ten
 * turns each, interleaved (A1 B1 C1 D1 A2 ...), each turn appending the previous answer and a
 * new user message. Time to first token per turn with `routing.affinity` on and off, and
 * llama-server's own `timings.prompt_n` / `cache_n` to show where its prompt cache hit.
 */
import { performance } from 'node:perf_hooks';
import { llamaAvailable, llamaMissing, startLlama, type Llama } from './lib/llama.ts';
import { keepAliveAgent, rng, streamChat } from './lib/load.ts';
import { sleep, startHearth, waitReady } from './lib/proc.ts';
import { fmt, mean, median, runHeader, say, table, targetLine, writeSection } from './lib/report.ts';

const CONVERSATIONS = 4;
const TURNS = 10;
const SYSTEM_WORDS = 200;
const ANSWER_TOKENS = 16;
const PARALLEL = 2;

const WORDS = ['the', 'river', 'stone', 'and', 'a', 'light', 'over', 'water', 'house', 'green', 'time', 'people', 'small', 'world', 'day', 'garden', 'window', 'morning', 'road', 'city'];

function systemPrompt(seed: number, words: number): string {
  const r = rng(seed);
  let s = `You are assistant number ${seed}. Background notes follow.\n`;
  for (let i = 0; i < words; i++) s += WORDS[Math.floor(r() * WORDS.length)] + (i % 12 === 11 ? '.\n' : ' ');
  return s;
}

interface Turn {
  conv: number;
  turn: number;
  ttft: number;
  promptN?: number;
  cacheN?: number;
  ok: boolean;
  error?: string;
}

async function metrics(l: Llama): Promise<{ prompt: number; predicted: number }> {
  const t = await (await fetch(`${l.url}/metrics`)).text();
  const g = (name: string) => Number(new RegExp(`^llamacpp:${name} (\\S+)`, 'm').exec(t)?.[1] ?? NaN);
  return { prompt: g('prompt_tokens_total'), predicted: g('tokens_predicted_total') };
}

async function runMode(affinity: boolean, seedBase: number, turns: number): Promise<{ turns: Turn[]; perNode: { prompt: number; requests: number }[] }> {
  // Fresh instances per mode: no prompt cache carried over from the other mode.
  // --cache-ram 0: no host-RAM prompt cache shared between slots, so a turn finds its prompt
  // cached only in the slot that served the conversation, as on a node with no RAM to spare.
  const llamaOpts = { parallel: PARALLEL, alias: 'tiny', ctx: 4096 * PARALLEL, extra: ['--cache-ram', '0'] };
  const llamas = [await startLlama(llamaOpts), await startLlama(llamaOpts)];
  const hearth = await startHearth({ nodes: llamas.map((l) => ({ url: l.url, kind: 'llama.cpp' })), settings: { 'routing.affinity': affinity } });
  const out: Turn[] = [];
  try {
    await waitReady(hearth.url);
    await sleep(300);
    const before = await Promise.all(llamas.map(metrics));
    const agent = keepAliveAgent();
    const convs = Array.from({ length: CONVERSATIONS }, (_, c) => [{ role: 'system', content: systemPrompt(seedBase + c, SYSTEM_WORDS) }] as { role: string; content: string }[]);
    for (let t = 0; t < turns; t++) {
      for (let c = 0; c < CONVERSATIONS; c++) {
        const messages = convs[c];
        messages.push({ role: 'user', content: `Turn ${t + 1}: what about the ${WORDS[(c * 7 + t) % WORDS.length]}?` });
        const r = await streamChat(hearth.url, { model: 'tiny', messages, max_tokens: ANSWER_TOKENS, stream_options: { include_usage: true } }, { agent, timeoutMs: 60_000, keepChunkTimes: false });
        const ok = r.status === 200 && r.done && !r.error;
        out.push({ conv: c, turn: t + 1, ttft: r.ttft, promptN: r.timings?.prompt_n, cacheN: r.timings?.cache_n, ok, error: r.error });
        messages.push({ role: 'assistant', content: r.content });
      }
    }
    agent.destroy();
    const after = await Promise.all(llamas.map(metrics));
    return { turns: out, perNode: after.map((a, k) => ({ prompt: a.prompt - before[k].prompt, requests: Math.round((a.predicted - before[k].predicted) / ANSWER_TOKENS) })) };
  } finally {
    await hearth.stop();
    await Promise.all(llamas.map((l) => l.stop()));
  }
}

export async function runAffinity(o: { command: string; quick?: boolean }): Promise<void> {
  say('== affinity ==');
  const header = `## affinity\n\n${runHeader(o.command)}`;
  if (!llamaAvailable()) {
    say(`skipped: ${llamaMissing}`);
    writeSection('affinity', `${header}\n\nskipped: ${llamaMissing}`);
    return;
  }
  const turns = o.quick ? 3 : TURNS;
  const modes = [
    { label: 'affinity on', affinity: true },
    { label: 'affinity off', affinity: false },
  ];
  const results: { label: string; turns: Turn[]; perNode: { prompt: number; requests: number }[]; secs: number }[] = [];
  for (const [i, m] of modes.entries()) {
    say(`-- ${m.label}: ${CONVERSATIONS} conversations x ${turns} turns, 2 llama-server instances (--parallel ${PARALLEL})`);
    const t0 = performance.now();
    const r = await runMode(m.affinity, 1000 * (i + 1), turns);
    const secs = (performance.now() - t0) / 1000;
    results.push({ label: m.label, ...r, secs });
    const later = r.turns.filter((t) => t.turn > 1 && t.ok);
    const firstErr = r.turns.find((t) => !t.ok);
    if (firstErr) say(`   first failure: turn ${firstErr.turn} conversation ${firstErr.conv}: ${firstErr.error}`);
    say(`   TTFT mean ${fmt(mean(later.map((t) => t.ttft)), 1)} ms, median ${fmt(median(later.map((t) => t.ttft)), 1)} ms (turns 2+); prompt tokens per node ${r.perNode.map((p) => p.prompt).join('/')}, requests per node ${r.perNode.map((p) => p.requests).join('/')}; failed ${r.turns.filter((t) => !t.ok).length}`);
  }

  const summary = results.map((r) => {
    const ok = r.turns.filter((t) => t.ok);
    const later = ok.filter((t) => t.turn > 1);
    const hits = later.filter((t) => (t.cacheN ?? 0) > (t.promptN ?? 0)).length;
    return {
      r,
      row: [
        r.label,
        fmt(mean(ok.map((t) => t.ttft)), 1),
        fmt(median(ok.map((t) => t.ttft)), 1),
        fmt(mean(later.map((t) => t.ttft)), 1),
        fmt(median(later.map((t) => t.ttft)), 1),
        fmt(mean(later.map((t) => t.promptN ?? NaN)), 0),
        fmt(mean(later.map((t) => t.cacheN ?? NaN)), 0),
        `${hits}/${later.length}`,
        r.perNode.map((p) => `${p.requests} req, ${p.prompt} prompt tok`).join(' / '),
        String(r.turns.length - ok.length),
      ],
      laterMean: mean(later.map((t) => t.ttft)),
      laterMedian: median(later.map((t) => t.ttft)),
    };
  });
  const head = ['mode', 'TTFT mean ms (all)', 'TTFT median ms (all)', 'TTFT mean ms (turns 2-10)', 'TTFT median ms (turns 2-10)', 'mean prompt_n (turns 2-10)', 'mean cache_n (turns 2-10)', 'mostly-cached turns', 'per instance', 'failed'];
  say(table(head, summary.map((s) => s.row)));

  // Per-turn means, to show the cache building up (or not).
  const turnHead = ['turn', ...results.flatMap((r) => [`${r.label}: TTFT mean ms`, `${r.label}: prompt_n / cache_n`])];
  const turnRows: string[][] = [];
  for (let t = 1; t <= turns; t++) {
    const row = [String(t)];
    for (const r of results) {
      const ts = r.turns.filter((x) => x.turn === t && x.ok);
      row.push(fmt(mean(ts.map((x) => x.ttft)), 1), `${fmt(mean(ts.map((x) => x.promptN ?? NaN)), 0)} / ${fmt(mean(ts.map((x) => x.cacheN ?? NaN)), 0)}`);
    }
    turnRows.push(row);
  }

  const md = [
    header,
    `Two real llama-server instances (tiny.gguf, alias \`tiny\`, \`--parallel ${PARALLEL}\`, \`-c ${4096 * PARALLEL}\`, host-RAM prompt cache off with \`--cache-ram 0\`, so only a slot's own cache can serve a follow-up turn), fresh for each mode, behind a fresh Hearth. ` +
      `${CONVERSATIONS} conversations, each with its own system prompt of ~${SYSTEM_WORDS} words (~${SYSTEM_WORDS * 5} tokens: the tiny model spells most words byte by byte), ${turns} turns, sent one at a time and interleaved (A1 B1 C1 D1 A2 ...); each turn appends the previous answer (${ANSWER_TOKENS} tokens) and a new user message. ` +
      `TTFT measured by the client to the first content delta; \`prompt_n\`/\`cache_n\` from llama-server's \`timings\` on the last chunk; "mostly-cached" = cache_n > prompt_n. Turn 1 is a cold miss in every mode, so turns 2-${turns} are reported apart.`,
    table(head, summary.map((s) => s.row)),
    '### Per turn\n\n' + table(turnHead, turnRows),
  ];
  if (summary.length === 2) {
    const [on, off] = summary;
    const ratio = off.laterMean / on.laterMean;
    const line = targetLine({ what: 'time to first token with and without affinity in the results (no numeric target)', measured: `turns 2-${turns}: mean ${fmt(on.laterMean, 1)} ms with vs ${fmt(off.laterMean, 1)} ms without (${fmt(ratio, 2)}x), median ${fmt(on.laterMedian, 1)} vs ${fmt(off.laterMedian, 1)} ms`, met: true });
    say(line);
    md.push('### Summary\n\n- ' + line);
  }
  writeSection('affinity', md.join('\n\n'));
  say('affinity: written to bench/RESULTS.md');
}
