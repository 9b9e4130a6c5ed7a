import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectedAnswer, startSimNode, type SimNode } from '../../bench/sim-node.ts';
import { startBundle } from './harness.ts';

const bundleOpts = (data: string, node: string) => ({ data, node, env: { HEARTH_PROBE_INTERVAL_MS: '200' } });

describe('power cut: kill -9 mid-stream', () => {
  let sim: SimNode;
  const procs: ChildProcess[] = [];
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await sim?.close();
  });

  it('after a restart the partial answer is stored, marked interrupted, missing at most the last second', async () => {
    sim = await startSimNode({ models: ['m'], tokensPerSecond: 20 });
    const data = mkdtempSync(join(tmpdir(), 'hearth-kill9-'));
    const first = await startBundle(bundleOpts(data, sim.url));
    procs.push(first.proc);
    await first.ready();
    const messages = [{ role: 'user', content: 'A long story, please.' }];
    const res = await fetch(`${first.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages, stream: true, store: true, max_tokens: 200 }),
    });
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    const t0 = Date.now();
    while (Date.now() - t0 < 2500) text += dec.decode((await reader.read()).value);
    const id = /"id":"([^"]+)"/.exec(text)![1];
    const received = [...text.matchAll(/"content":"([^"]*)"/g)].map((m) => m[1]).join('');
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    reader.cancel().catch(() => {});

    const second = await startBundle(bundleOpts(data, sim.url));
    procs.push(second.proc);
    const stored = await (await fetch(`${second.url}/v1/chat/completions/${id}`)).json();
    expect(stored.hearth.status).toBe('interrupted');
    const content: string = stored.choices[0].message.content;
    // A prefix of the answer, holding all but (at most) the last second: 20 tokens at 20 tokens/s.
    expect(expectedAnswer(messages, 200).startsWith(content)).toBe(true);
    const tokens = (s: string) => s.split(' ').filter(Boolean).length;
    expect(tokens(content)).toBeGreaterThanOrEqual(tokens(received) - 20);
    expect(tokens(content)).toBeGreaterThan(10);
  });
});
