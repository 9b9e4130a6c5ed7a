import { describe, expect, it } from 'vitest';
import { planFirst, type PlanJob } from '../plan.ts';

const speeds = { slow: 100, mid: 200, fast: 400 };

function jobs(lengths: number[], allowed?: (node: string) => boolean): PlanJob<number>[] {
  return lengths
    .map((len, i) => ({ len, i }))
    .sort((a, b) => b.len - a.len)
    .map(({ len, i }) => ({ item: i, serviceMs: (node: string) => (allowed && !allowed(node) ? undefined : (len / speeds[node as keyof typeof speeds]) * 1000) }));
}

describe('planFirst', () => {
  it('with every slot free, starts what the optimal schedule starts on each slot', () => {
    const lengths = [300, 20, 150, 80, 400, 60, 10, 220, 90, 35];
    const slots = (['slow', 'mid', 'fast'] as const).map((nodeId) => ({ nodeId, readyInMs: 0 }));
    const first = planFirst(jobs(lengths), slots);
    // The optimum (positions k-th from the end cost k/speed; the 10 cheapest positions are fast
    // k=1..6, mid k=1..3, slow k=1) runs fast: 10 first, mid: 20 first, and one job alone on the
    // slow slot, the 7th longest: 90.
    expect(lengths[first.get(2)!]).toBe(10);
    expect(lengths[first.get(1)!]).toBe(20);
    expect(lengths[first.get(0)!]).toBe(90);
  });

  it('starts nothing on a busy slot, and leaves a free slow slot idle when waiting for a fast one is better', () => {
    const slots = [
      { nodeId: 'slow', readyInMs: 0 },
      { nodeId: 'fast', readyInMs: 50 },
    ];
    // One long job: 4 s on the slow node, 1 s (+50 ms wait) on the fast one.
    const first = planFirst(jobs([400]), slots);
    expect(first.size).toBe(0);
  });

  it('respects where a job may go, and prefers a nearly-as-good node holding its cache', () => {
    const slots = [
      { nodeId: 'fast', readyInMs: 0 },
      { nodeId: 'mid', readyInMs: 0 },
    ];
    expect([...planFirst(jobs([100], (n) => n === 'mid'), slots).keys()]).toEqual([1]);
    const sticky: PlanJob<string>[] = [{ item: 'turn', serviceMs: (n) => (n === 'fast' ? 100 : 115), preferred: 'mid' }];
    expect([...planFirst(sticky, slots, 1.2).keys()]).toEqual([1]);
    expect([...planFirst(sticky, slots, 1.1).keys()]).toEqual([0]);
  });
});
