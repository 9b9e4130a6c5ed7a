/**
 * `bench/run.ts balance`: three simulated nodes at 1x, 2x and 4x speed (4 slots each), a burst
 * of 200 requests of varied lengths sent at once; mean and p95 completion time under Hearth's
 * balancer, round-robin and least-connections (each a fresh Hearth process with
 * `routing.policy`), against an oracle computed from the known speeds and lengths. Then a fault
 * run: the same burst with one node killed mid-burst; every answer is checked word for word.
 *
 * The simulated nodes run in a process of their own (bench/lib/sim-host.ts), Hearth in its own.
 */
import { performance } from 'node:perf_hooks';
import { expectedAnswer, type ChatMessage } from './sim-node.ts';
import { startSimHost, type SimHost } from './lib/sim-host.ts';
import { keepAliveAgent, rng, streamChat, type StreamResult } from './lib/load.ts';
import { sleep, startHearth, waitReady } from './lib/proc.ts';
import { fmt, mean, quantile, runHeader, say, table, targetLine, writeSection, type Target } from './lib/report.ts';

const SPEEDS = [200, 400, 800]; // tokens/s per stream: 1x, 2x, 4x
const SLOTS = 4;
const N = 200;
const MIN_TOKENS = 20;
const MAX_TOKENS = 400;
const SEED = 42;
const MODEL = 'sim-model';

interface Job {
  i: number;
  tokens: number;
  messages: ChatMessage[];
}

interface RunResult {
  label: string;
  /** Completion time of each request (s from the burst start), index order. */
  done: number[];
  results: StreamResult[];
  wall: number;
  /** Requests each node started (from the nodes' own counters). */
  perNode: number[];
  check: Check;
}

interface Check {
  failed: number;
  status: number;
  noDone: number;
  truncated: number;
  mismatched: number;
  example?: string;
}

function jobs(n: number, quick: boolean): Job[] {
  const r = rng(SEED);
  const max = quick ? 120 : MAX_TOKENS;
  return Array.from({ length: n }, (_, i) => ({
    i,
    tokens: MIN_TOKENS + Math.floor(r() * (max - MIN_TOKENS + 1)),
    messages: [{ role: 'user', content: `Balance request ${i}: tell me about rivers.` }],
  }));
}

/**
 * Oracle: the optimal schedule for mean completion time when every length and speed is known in
 * advance and nothing is preempted (Q||ΣCj, solved exactly by matching: a job placed k-th from
 * the end on a slot of speed s adds k·p/s to the sum, so the longest jobs take the smallest k/s).
 * Time of a job on a slot = (tokens - 1) / speed, as the simulated node paces it.
 */
export function oracle(lengths: number[], speeds: number[]): { completions: number[]; makespanBound: number } {
  const n = lengths.length;
  const coeffs: { slot: number; k: number; c: number }[] = [];
  for (const [slot, s] of speeds.entries()) for (let k = 1; k <= n; k++) coeffs.push({ slot, k, c: k / s });
  coeffs.sort((a, b) => a.c - b.c);
  const order = lengths.map((len, j) => ({ j, p: Math.max(0, len - 1) })).sort((a, b) => b.p - a.p);
  const perSlot: { k: number; p: number }[][] = speeds.map(() => []);
  order.forEach((job, idx) => perSlot[coeffs[idx].slot].push({ k: coeffs[idx].k, p: job.p }));
  const completions: number[] = [];
  for (const [slot, list] of perSlot.entries()) {
    list.sort((a, b) => b.k - a.k); // k-th from the end: largest k runs first
    let t = 0;
    for (const x of list) {
      t += x.p / speeds[slot];
      completions.push(t);
    }
  }
  const work = lengths.reduce((a, b) => a + Math.max(0, b - 1), 0);
  return { completions, makespanBound: work / speeds.reduce((a, b) => a + b, 0) };
}

function checkAll(js: Job[], rs: StreamResult[]): Check {
  const c: Check = { failed: 0, status: 0, noDone: 0, truncated: 0, mismatched: 0 };
  rs.forEach((r, idx) => {
    const want = expectedAnswer(js[idx].messages, js[idx].tokens);
    let bad: string | undefined;
    if (r.status !== 200) {
      c.status++;
      bad = `status ${r.status} ${r.error ?? ''}`;
    } else if (!r.done || r.error) {
      c.noDone++;
      bad = `no [DONE]: ${r.error ?? 'stream ended'} after ${r.content.length}/${want.length} chars`;
    } else if (r.content !== want) {
      if (want.startsWith(r.content)) {
        c.truncated++;
        bad = `truncated: ${r.content.length}/${want.length} chars`;
      } else {
        c.mismatched++;
        bad = `content differs from the expected answer (${r.content.length}/${want.length} chars)`;
      }
    }
    if (bad) {
      c.failed++;
      c.example ??= `request ${idx}: ${bad}`;
    }
  });
  return c;
}

function startNodes(): Promise<SimHost> {
  return startSimHost(SPEEDS.map((tps) => ({ models: [MODEL], slots: SLOTS, overflow: 'queue' as const, tokensPerSecond: tps, ttftMs: 0 })));
}

type Policy = 'hearth' | 'round-robin' | 'least-connections';

/** Runs the burst through a fresh Hearth with `routing.policy = policy`. */
async function viaHearth(label: string, js: Job[], policy: Policy, killAfter?: number): Promise<RunResult> {
  const nodes = await startNodes();
  const settings = { 'routing.queue_size': 100_000, 'routing.queue_wait_ms': 600_000, 'routing.policy': policy };
  const hearth = await startHearth({ nodes: nodes.urls.map((url) => ({ url, kind: 'llama.cpp' })), settings, log: 'info' });
  try {
    await waitReady(hearth.url);
    await sleep(300); // every node read at least once
    const agent = keepAliveAgent();
    // Warm-up (not counted): Hearth measures the nodes' speeds.
    const warm = await Promise.all(
      Array.from({ length: 12 }, (_, i) => streamChat(hearth.url, { model: MODEL, messages: [{ role: 'user', content: `warm-up ${i}` }], max_tokens: 40 }, { agent, timeoutMs: 30_000, keepChunkTimes: false })),
    );
    const warmFailed = warm.filter((r) => r.status !== 200 || !r.done).length;
    if (warmFailed) say(`   warm-up: ${warmFailed} of 12 failed`);
    await nodes.idle(10_000);
    const startedBefore = (await nodes.stats()).map((s) => s.started);
    const r = await burst(js, () => ({ url: hearth.url }), agent, killAfter === undefined ? undefined : { after: killAfter, kill: () => void nodes.kill(1).catch((e: Error) => say(`   could not kill node 2: ${e.message}`)) });
    agent.destroy();
    return { label, ...r, perNode: (await nodes.stats()).map((s, k) => s.started - startedBefore[k]) };
  } finally {
    await hearth.stop();
    await nodes.close();
  }
}

/** All requests sent at once; completion time of each from the burst start. */
async function burst(
  js: Job[],
  pick: () => { url: string; release?: () => void },
  agent: ReturnType<typeof keepAliveAgent>,
  kill?: { after: number; kill: () => void },
): Promise<{ done: number[]; results: StreamResult[]; wall: number; check: Check }> {
  let started = 0;
  let killed = false;
  const t0 = performance.now();
  const done: number[] = new Array(js.length);
  const results = await Promise.all(
    js.map(async (j) => {
      const target = pick();
      const r = await streamChat(target.url, { model: MODEL, messages: j.messages, max_tokens: j.tokens }, {
        agent,
        timeoutMs: 180_000,
        keepChunkTimes: false,
        onFirst: () => {
          started++;
          if (kill && !killed && started >= kill.after) {
            killed = true;
            kill.kill();
            say(`   killed node 2 (${SPEEDS[1]} tok/s) after ${started} requests had started, at ${((performance.now() - t0) / 1000).toFixed(2)} s`);
          }
        },
      });
      target.release?.();
      done[j.i] = (r.t0 + r.total - t0) / 1000;
      return r;
    }),
  );
  return { done, results, wall: (performance.now() - t0) / 1000, check: checkAll(js, results) };
}

export async function runBalance(o: { command: string; quick?: boolean }): Promise<void> {
  say('== balance ==');
  const js = jobs(o.quick ? 60 : N, !!o.quick);
  const lengths = js.map((j) => j.tokens);
  const slotSpeeds = SPEEDS.flatMap((s) => Array(SLOTS).fill(s) as number[]);
  const orc = oracle(lengths, slotSpeeds);
  say(`${js.length} requests, max_tokens ${Math.min(...lengths)}..${Math.max(...lengths)} (mean ${fmt(mean(lengths), 0)}, seed ${SEED}), nodes ${SPEEDS.join('/')} tok/s x ${SLOTS} slots`);

  const runs: RunResult[] = [];
  const t = async (label: string, fn: () => Promise<RunResult>) => {
    say(`-- ${label}`);
    const r = await fn();
    say(`   mean ${fmt(mean(r.done))} s, p95 ${fmt(quantile(r.done, 0.95))} s, wall ${fmt(r.wall)} s, per node ${r.perNode.join('/')}, failed ${r.check.failed}${r.check.example ? ` (${r.check.example})` : ''}`);
    runs.push(r);
    return r;
  };
  const hearthRun = await t('hearth', () => viaHearth('Hearth (routing.policy = "hearth")', js, 'hearth'));
  const rrRun = await t('round-robin', () => viaHearth('Hearth, routing.policy = "round-robin"', js, 'round-robin'));
  const lcRun = await t('least-connections', () => viaHearth('Hearth, routing.policy = "least-connections"', js, 'least-connections'));
  const fault = await t('fault run', () => viaHearth('fault: policy hearth, node 2 killed', js, 'hearth', Math.round(js.length * 0.3)));

  const orcMean = mean(orc.completions);
  const orcP95 = quantile(orc.completions, 0.95);
  const rows = runs.map((r) => [
    r.label,
    fmt(mean(r.done)),
    fmt(quantile(r.done, 0.95)),
    fmt(Math.max(...r.done)),
    fmt(mean(r.done) / orcMean, 2) + 'x',
    r.perNode.join(' / '),
    `${r.check.failed}${r.check.failed ? ` (status ${r.check.status}, no [DONE] ${r.check.noDone}, truncated ${r.check.truncated}, wrong ${r.check.mismatched})` : ''}`,
  ]);
  rows.push(['oracle: optimal clairvoyant schedule (Q||ΣCj), a lower bound', fmt(orcMean), fmt(orcP95), fmt(Math.max(...orc.completions)), '1.00x', '', '']);
  const head = ['run', 'mean s', 'p95 s', 'last s', 'mean / oracle', 'requests per node (1x / 2x / 4x)', 'failed'];
  say(table(head, rows));

  const hMean = mean(hearthRun.done);
  const rrMean = mean(rrRun.done);
  const lcMean = mean(lcRun.done);
  const targets: Target[] = [
    { what: 'mean completion <= 1.15x the oracle', measured: `${fmt(hMean / orcMean, 2)}x (${fmt(hMean)} s vs ${fmt(orcMean)} s)`, met: hMean / orcMean <= 1.15 },
    { what: 'mean completion >= 25% better than round-robin', measured: `${fmt((1 - hMean / rrMean) * 100, 1)}% better (${fmt(hMean)} s vs ${fmt(rrMean)} s; least-connections ${fmt(lcMean)} s)`, met: hMean <= 0.75 * rrMean },
    { what: 'fault run: no request fails or is truncated', measured: `${fault.check.failed} of ${js.length} failed${fault.check.example ? ` (e.g. ${fault.check.example})` : ''}`, met: fault.check.failed === 0 },
  ];
  for (const x of targets) say(targetLine(x));

  const md = [
    `## balance\n\n${runHeader(o.command)}`,
    `Three simulated nodes (in one process of their own, so that the load generator starting 200 requests at once does not delay them) at ${SPEEDS.join(', ')} tokens/s per stream (1x, 2x, 4x), ${SLOTS} slots each, requests beyond the slots queue in the node (\`overflow: 'queue'\`), TTFT 0. ` +
      `Burst: ${js.length} streamed requests sent at once, max_tokens drawn uniformly from ${Math.min(...lengths) === MIN_TOKENS ? MIN_TOKENS : Math.min(...lengths)}..${o.quick ? 120 : MAX_TOKENS} with seed ${SEED} (total ${lengths.reduce((a, b) => a + b, 0)} tokens), each a distinct prompt. ` +
      `Completion time = burst start to the end of the response. Each policy is a fresh Hearth process with \`routing.policy\` set, after a warm-up of 12 requests (not counted). ` +
      `Hearth has \`routing.queue_size = 100000\`, \`routing.queue_wait_ms = 600000\`.`,
    `Oracle: the optimal non-preemptive schedule for mean completion time knowing every length and speed in advance (exact, by the k/s matching of Q||ΣCj), using the node's pacing ((tokens-1)/speed per answer, no overheads); its mean is a true lower bound for any balancer on these nodes. Its p95 is that schedule's, not a bound. Makespan bound (total work / total capacity): ${fmt(orc.makespanBound)} s.`,
    table(head, rows),
    `Fault run: the same burst through Hearth; node 2 (${SPEEDS[1]} tok/s) is killed (\`sim.kill()\`: every socket destroyed, listener closed) once ${Math.round(js.length * 0.3)} requests have received their first token. Every response is checked: status 200, ends with \`[DONE]\`, content equal to \`expectedAnswer(messages, max_tokens)\`.` +
      (fault.check.example ? ` First failure: ${fault.check.example}.` : ''),
    '### Targets\n\n' + targets.map((x) => `- ${targetLine(x)}`).join('\n'),
  ];
  writeSection('balance', md.join('\n\n'));
  say('balance: written to bench/RESULTS.md');
}
