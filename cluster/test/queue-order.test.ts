import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Balancer, type Lease } from '../balancer.ts';
import { Registry } from '../registry.ts';

/** One node with one slot: every request after the first waits in Hearth's queue. */
function oneSlot(queueWaitMs: number) {
  const registry = new Registry();
  registry.upsert({ id: 'n1', baseUrl: 'http://127.0.0.1:1', kind: 'llama.cpp', models: ['m'], health: 'up', load: { slots: 1, busy: 0, at: Date.now() } }, 'static');
  return new Balancer(registry, { queueWaitMs, queueSize: 100 });
}

/** Frees the slot again and again, and says in which order the waiting requests got it. */
async function serveAll(first: Lease, waiting: { tokens: number; lease: Promise<Lease> }[]): Promise<number[]> {
  const order: number[] = [];
  const pending = new Map(waiting.map((w) => [w.lease, w.tokens]));
  let current = first;
  while (pending.size) {
    current.release({ ok: true });
    const [lease, tokens] = await Promise.race([...pending].map(([p, t]) => p.then((l) => [p, t, l] as const))).then(([p, t, l]) => {
      pending.delete(p);
      return [l, t] as const;
    });
    order.push(tokens);
    current = lease;
  }
  current.release({ ok: true });
  return order;
}

describe("Hearth's queue", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('serves the shortest expected answer first, whatever order the requests arrived in', async () => {
    const b = oneSlot(30_000);
    const first = await b.acquire({ model: 'm', tokens: 100 });
    const waiting: { tokens: number; lease: Promise<Lease> }[] = [];
    // Arrivals spread over 1.5 s, longest first: aging by the raw time waited would serve them
    // arrival order; their lengths must win.
    for (const tokens of [40, 30, 20, 10]) {
      waiting.push({ tokens, lease: b.acquire({ model: 'm', tokens }) });
      vi.advanceTimersByTime(500);
    }
    expect(await serveAll(first, waiting)).toEqual([10, 20, 30, 40]);
  });

  it('lets a long request that has used most of its allowed wait go before fresh short ones', async () => {
    const b = oneSlot(10_000);
    const first = await b.acquire({ model: 'm', tokens: 100 });
    const long = { tokens: 400, lease: b.acquire({ model: 'm', tokens: 400 }) };
    vi.advanceTimersByTime(9_800);
    const shorts = [20, 30].map((tokens) => ({ tokens, lease: b.acquire({ model: 'm', tokens }) }));
    expect(await serveAll(first, [long, ...shorts])).toEqual([400, 20, 30]);
  });
});
