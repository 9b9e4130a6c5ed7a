/**
 * Which waiting request each free slot should start now, planned for the least total completion
 * time over the whole queue. The rule that solves this exactly when every slot is free and every
 * length known (uniform machines, no preemption): a request placed k-th from the end of a slot
 * adds k times its service time there to the sum, so requests are placed longest first, each
 * where that cost (plus the time until the slot frees) is least. The shortest requests end up
 * first in line, and a slow slot gets only the requests it serves well.
 */
export interface PlanSlot {
  nodeId: string;
  /** Until the slot is free: 0 for a free slot. */
  readyInMs: number;
}

export interface PlanJob<T> {
  item: T;
  /** Service time of the request on a node, or undefined where it may not go. */
  serviceMs(nodeId: string): number | undefined;
  /** A node where the request would rather go (its prompt cache), when nearly as good. */
  preferred?: string;
}

/** Slots are given best-first per node is not required; returns, per free slot index, the job to start now. */
export function planFirst<T>(jobsLongestFirst: PlanJob<T>[], slots: PlanSlot[], nearEnough = 1.2): Map<number, T> {
  const depth = slots.map(() => 0);
  const first = new Map<number, T>();
  for (const job of jobsLongestFirst) {
    let best = -1;
    let bestCost = Infinity;
    let preferred = -1;
    let preferredCost = Infinity;
    for (let i = 0; i < slots.length; i++) {
      const s = job.serviceMs(slots[i].nodeId);
      if (s === undefined) continue;
      const cost = (depth[i] + 1) * s + slots[i].readyInMs;
      if (cost < bestCost) {
        best = i;
        bestCost = cost;
      }
      if (job.preferred === slots[i].nodeId && cost < preferredCost) {
        preferred = i;
        preferredCost = cost;
      }
    }
    if (preferred >= 0 && preferredCost <= bestCost * nearEnough) best = preferred;
    if (best < 0) continue;
    depth[best]++;
    // Placed later means shorter and nearer the front: the last one placed on a slot runs first.
    if (slots[best].readyInMs === 0) first.set(best, job.item);
  }
  return first;
}
