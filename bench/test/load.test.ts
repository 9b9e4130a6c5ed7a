import { describe, it, expect, afterEach } from 'vitest';
import { startSimNode, expectedAnswer, type SimNode, type SimNodeOptions } from '../sim-node.ts';
import { fetchStream, keepAliveAgent, readStream, streamChat, type StreamResult } from '../lib/load.ts';

const nodes: SimNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
});

const agent = keepAliveAgent();
const MESSAGES = [{ role: 'user' as const, content: 'Tell me about rivers.' }];
const body = (tokens: number) => ({ model: 'sim-model', messages: MESSAGES, max_tokens: tokens });

/** The same answer read live and read afterwards. */
async function both(opts: SimNodeOptions, tokens = 40): Promise<[StreamResult, StreamResult]> {
  const n = await startSimNode({ tokensPerSecond: 2000, ...opts });
  nodes.push(n);
  const live = await streamChat(n.url, body(tokens), { agent, timeoutMs: 10_000 });
  const raw = await fetchStream(n.url, body(tokens), { agent, timeoutMs: 10_000 });
  expect(raw.reads.length).toBe(raw.readTimes.length);
  return [live, readStream(raw)];
}

const shape = (r: StreamResult) => ({ status: r.status, done: r.done, content: r.content, chunks: r.chunkTimes.length, error: r.error?.replace(/\d+/g, 'N') });

describe('the load generator reads a stream the same live and afterwards', () => {
  it('a whole answer: content, every chunk timed in order, [DONE]', async () => {
    const [live, later] = await both({});
    expect(later.content).toBe(expectedAnswer(MESSAGES, 40));
    expect(shape(later)).toEqual(shape(live));
    expect(later.chunkTimes).toHaveLength(40);
    expect(later.chunkTimes.every((t, i) => i === 0 || t >= later.chunkTimes[i - 1])).toBe(true);
    expect(later.ttft).toBe(later.chunkTimes[0]);
    expect(later.ttft).toBeGreaterThan(0);
    expect(later.total).toBeGreaterThanOrEqual(later.chunkTimes[39]);
  });

  it('multi-byte UTF-8 split across reads, CRLF events', async () => {
    const [live, later] = await both({ splitUtf8: true, lineEnding: '\r\n' });
    expect(later.content).toBe(expectedAnswer(MESSAGES, 40, { splitUtf8: true }));
    expect(shape(later)).toEqual(shape(live));
  });

  it.each(['cut', 'malformed', 'no-done', '500'] as const)('fault %s: the same error and partial answer', async (type) => {
    const [live, later] = await both({ fault: { type } });
    expect(later.error ?? (later.done ? undefined : 'not done')).toBeTruthy();
    expect(shape(later)).toEqual(shape(live));
  });
});
