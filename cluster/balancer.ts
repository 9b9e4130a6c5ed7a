import type { CancelSignal } from './cancel.ts';
import { Breakers, type BreakerOptions } from './breaker.ts';
import { planFirst, type PlanSlot } from './plan.ts';
import { ClusterError } from './errors.ts';
import { isUsable, type NodeInfo } from './node.ts';
import type { Registry } from './registry.ts';
import { SpeedBook } from './speed.ts';

/** How a request on a node went; the balancer learns from it. */
export interface Outcome {
  ok: boolean;
  /** From sending the request to the first event of the answer. */
  firstByteMs?: number;
  /** Content events received (roughly tokens). */
  chunks?: number;
  /** From the first event to the end. */
  decodeMs?: number;
  /** Why it failed, when it did; `client` failures (4xx) and aborts say nothing about the node. */
  failure?: 'connect' | 'timeout' | 'reset' | 'status' | 'malformed' | 'client' | 'aborted';
  /** A node's 429 asked to wait this long. */
  retryAfterS?: number;
}

/** The right to send one request to one node; released exactly once when the request ends. */
export interface Lease {
  node: NodeInfo;
  release(outcome: Outcome): void;
}

export interface PickRequest {
  model: string;
  /** Nodes already tried for this request. */
  exclude?: ReadonlySet<string>;
  signal?: CancelSignal;
  /** Expected answer length in tokens (max_tokens), when the request says. */
  tokens?: number;
  /** Identifies the conversation, so a follow-up turn finds the node holding its prompt cache (may be a lazy getter). */
  readonly affinityKey?: string;
  /** Only nodes that pass (e.g. those that can continue a partial answer). */
  filter?: (n: NodeInfo) => boolean;
}

export type Policy = 'hearth' | 'round-robin' | 'least-connections';

export interface BalancerOptions {
  /** `hearth`: least expected completion time; the others exist as baselines for the bench. */
  policy: Policy;
  /** Requests that may wait in Hearth when every node for their model is full. */
  queueSize: number;
  queueWaitMs: number;
  affinity: boolean;
  /** A follow-up turn stays on its node unless that node has this many more requests in flight than the least loaded. */
  affinityMargin: number;
  breaker: BreakerOptions;
  /** Concurrency assumed for a node that does not say how many slots it has. */
  defaultSlots: number;
  /** Asks for a fresh read of a node's own load (the monitor's probe). */
  refresh?: (nodeId: string) => void;
}

export const DEFAULT_BALANCER: BalancerOptions = {
  policy: 'hearth',
  queueSize: 64,
  queueWaitMs: 30_000,
  affinity: true,
  affinityMargin: 1,
  breaker: { threshold: 3, coolDownMs: 2000, maxCoolDownMs: 30_000 },
  defaultSlots: 4,
};

interface Active {
  started: number;
  model: string;
  tokens: number;
}

interface Waiter {
  req: PickRequest;
  since: number;
  resolve(lease: Lease): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
  onAbort?: () => void;
}

const AFFINITY_ENTRIES = 2000;
/** A conversation whose last turn is older than this no longer counts as held in a node's cache. */
const LIVE_CONVERSATION_MS = 10 * 60_000;
/** A new conversation may go to a node whose expected completion is within this factor of the best. */
const NEAR_ENOUGH = 1.2;

/**
 * Chooses a node for each request. Among the usable nodes that serve the model it picks the one
 * that should finish the answer soonest: measured time to first token and decode speed, the
 * slots the node has, what it is running (from Hearth and from the node's own counters), and
 * whether the conversation's prompt is already cached there. When every node is full, requests
 * wait in a bounded queue here rather than in a node's unbounded one, and each freed slot gets
 * the request the whole queue's plan puts first on it (plan.ts): short answers first, slow nodes
 * only for what they serve well, long waits aged so nothing starves.
 */
export class Balancer {
  readonly speeds = new SpeedBook();
  private readonly breakers: Breakers;
  private readonly active = new Map<string, Set<Active>>();
  private readonly coolingUntil = new Map<string, number>();
  private readonly affinity = new Map<string, { nodeId: string; at: number }>();
  /** A counter value per node, from the last lease given on it. */
  private readonly lastPicked = new Map<string, number>();
  private picks = 0;
  private readonly refreshed = new Map<string, number>();
  /** Slots other clients held on each node at its last probe. */
  private readonly external = new Map<string, { at: number; busy: number }>();
  private readonly queue: Waiter[] = [];
  private wakeTimer?: NodeJS.Timeout;
  private rr = 0;
  private readonly opts: BalancerOptions;

  constructor(
    private readonly registry: Registry,
    opts: Partial<BalancerOptions> = {},
  ) {
    this.opts = { ...DEFAULT_BALANCER, ...opts };
    this.breakers = new Breakers(this.opts.breaker);
    registry.on('change', (e) => {
      if (e.type === 'removed') this.external.delete(e.node.id);
      else if (e.node.load && e.node.load.at !== this.external.get(e.node.id)?.at) {
        // What the node reports beyond Hearth's own requests is other clients' load.
        const l = e.node.load;
        this.external.set(e.node.id, { at: l.at, busy: Math.max(0, (l.busy ?? 0) + (l.deferred ?? 0) - this.load(e.node.id)) });
      }
      this.schedule();
    });
  }

  /** Every model some usable node serves now. */
  models(): string[] {
    const set = new Set<string>();
    for (const n of this.registry.list()) if (isUsable(n)) for (const m of n.models) set.add(m);
    return [...set].sort();
  }

  /** Nodes that serve `model`, usable or not. */
  nodesFor(model: string): NodeInfo[] {
    return this.registry.list().filter((n) => n.models.includes(model));
  }

  /** Requests Hearth has in flight on the node. */
  load(nodeId: string): number {
    return this.active.get(nodeId)?.size ?? 0;
  }

  /** A lease on the best node now, or after waiting in the queue; a ClusterError otherwise. */
  acquire(req: PickRequest): Promise<Lease> {
    const cands = this.candidates(req);
    if (cands.length === 0 && !this.mayRecover(req)) return Promise.reject(this.noNode(req));
    if (this.opts.policy !== 'hearth' && cands.length > 0) return Promise.resolve(this.lease(this.pickBaseline(req), req));
    if (this.queue.length === 0) {
      const node = this.pickNow(req, cands);
      if (node) return Promise.resolve(this.lease(node, req));
    }
    if (this.queue.length >= this.opts.queueSize) {
      return Promise.reject(
        new ClusterError('no_capacity', `Every node for '${req.model}' is busy and ${this.queue.length} requests are already waiting.`, {
          busy: true,
          retryAfterS: this.retryHint(req),
        }),
      );
    }
    return new Promise<Lease>((resolve, reject) => {
      const w: Waiter = {
        req,
        since: Date.now(),
        resolve,
        reject,
        timer: setTimeout(() => {
          this.dequeue(w);
          reject(
            new ClusterError('no_capacity', `Every node for '${req.model}' stayed busy for ${this.opts.queueWaitMs} ms.`, {
              busy: true,
              retryAfterS: this.retryHint(req),
            }),
          );
        }, this.opts.queueWaitMs),
      };
      if (req.signal) {
        w.onAbort = () => {
          this.dequeue(w);
          reject(new ClusterError('aborted', 'client went away'));
        };
        req.signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.queue.push(w);
      this.schedule();
    });
  }

  private dequeue(w: Waiter): void {
    const i = this.queue.indexOf(w);
    if (i >= 0) this.queue.splice(i, 1);
    clearTimeout(w.timer);
    if (w.onAbort) w.req.signal?.removeEventListener('abort', w.onAbort);
  }

  /** Nodes that could take this request at all (ignoring whether they are full now). */
  private candidates(req: PickRequest, now = Date.now()): NodeInfo[] {
    return this.nodesFor(req.model).filter(
      (n) =>
        isUsable(n) &&
        !req.exclude?.has(n.id) &&
        (!req.filter || req.filter(n)) &&
        this.breakers.allows(n.id, now) &&
        (this.coolingUntil.get(n.id) ?? 0) <= now,
    );
  }

  private slots(n: NodeInfo): number {
    return n.load?.slots && n.load.slots > 0 ? n.load.slots : this.opts.defaultSlots;
  }

  /**
   * Busy slots: Hearth's own requests, counted live, plus what other clients held at the last
   * probe. (Taking the node's own figure as is would make a slot Hearth just freed look busy
   * until the next probe.)
   */
  private busy(n: NodeInfo): number {
    const ext = this.external.get(n.id);
    const fresh = ext && Date.now() - ext.at < 5000;
    return this.load(n.id) + (fresh ? ext.busy : 0);
  }

  /**
   * A request is held back while other clients' load, read at the last probe, fills a node:
   * read the node again now rather than wait for the next probe (at most every 100 ms a node).
   */
  private refreshIfExternal(n: NodeInfo): void {
    const ext = this.external.get(n.id);
    if (!this.opts.refresh || !ext || ext.busy === 0) return;
    const now = Date.now();
    if (now - (this.refreshed.get(n.id) ?? 0) < 100) return;
    this.refreshed.set(n.id, now);
    this.opts.refresh(n.id);
  }

  private tokensOf(req: PickRequest): number {
    return req.tokens ?? this.speeds.typicalTokens(req.model);
  }

  /** Expected time until this request would be complete on `n`: at once on a free slot, else after the soonest one frees. */
  private eta(n: NodeInfo, req: PickRequest, now: number): number {
    const service = this.speeds.serviceMs(n.id, req.model, this.tokensOf(req));
    if (this.busy(n) < this.slots(n)) return service;
    let soonest = Infinity;
    for (const a of this.active.get(n.id) ?? []) soonest = Math.min(soonest, Math.max(0, this.speeds.serviceMs(n.id, a.model, a.tokens) - (now - a.started)));
    // Full with other clients' requests only: assume one typical answer's time.
    if (soonest === Infinity) soonest = this.speeds.serviceMs(n.id, req.model, this.speeds.typicalTokens(req.model));
    return soonest + service;
  }

  /**
   * The node with the least expected completion time, if it has a free slot now; `null` when the
   * request is better off waiting (for a faster node to free up, or for any slot at all).
   */
  private pickNow(req: PickRequest, cands: NodeInfo[]): NodeInfo | null {
    if (cands.length === 0) return null;
    const now = Date.now();
    // Kept for the affinity choice below, which only a choice between nodes needs.
    const etas = cands.length > 1 ? new Map<NodeInfo, number>() : undefined;
    let best: NodeInfo | undefined;
    let bestEta = Infinity;
    for (const n of cands) {
      const e = this.eta(n, req, now);
      etas?.set(n, e);
      if (e < bestEta || (e === bestEta && best && this.tieBreak(n, best) < 0)) {
        best = n;
        bestEta = e;
      }
    }
    if (best && cands.length > 1 && this.opts.affinity && req.affinityKey && !this.affinity.has(req.affinityKey)) {
      // A new conversation: among nodes nearly as good, the one holding the fewest live
      // conversations, since a node keeps only as many prompt caches as it has slots.
      const live = this.liveConversations(now);
      for (const n of cands) {
        if (etas!.get(n)! <= bestEta * NEAR_ENOUGH && (live.get(n.id) ?? 0) < (live.get(best.id) ?? 0)) best = n;
      }
    }
    const sticky = this.affineNode(req, cands);
    if (sticky && this.hasFreeSlot(sticky)) {
      const least = Math.min(...cands.map((n) => this.load(n.id)));
      if (this.load(sticky.id) - least <= this.opts.affinityMargin) return sticky;
    }
    if (best && this.hasFreeSlot(best)) return best;
    if (best) this.refreshIfExternal(best);
    return null;
  }

  /** Between equally good nodes: the less loaded, then the one picked least recently (spreads new conversations). */
  private tieBreak(a: NodeInfo, b: NodeInfo): number {
    return this.load(a.id) - this.load(b.id) || (this.lastPicked.get(a.id) ?? 0) - (this.lastPicked.get(b.id) ?? 0);
  }

  private hasFreeSlot(n: NodeInfo): boolean {
    return this.busy(n) < this.slots(n);
  }

  private affineNode(req: PickRequest, cands: NodeInfo[]): NodeInfo | undefined {
    if (cands.length < 2 || !this.opts.affinity || !req.affinityKey) return undefined;
    const id = this.affinity.get(req.affinityKey)?.nodeId;
    return id ? cands.find((n) => n.id === id) : undefined;
  }

  /** Conversations with a turn in the last few minutes, per node. */
  private liveConversations(now: number): Map<string, number> {
    const out = new Map<string, number>();
    for (const { nodeId, at } of this.affinity.values()) if (now - at < LIVE_CONVERSATION_MS) out.set(nodeId, (out.get(nodeId) ?? 0) + 1);
    return out;
  }

  private pickBaseline(req: PickRequest): NodeInfo {
    const cands = this.candidates(req).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (this.opts.policy === 'round-robin') return cands[this.rr++ % cands.length];
    let best = cands[0];
    for (const n of cands) if (this.load(n.id) < this.load(best.id)) best = n;
    return best;
  }

  /** Give waiting requests the nodes that freed up, oldest first. */
  private schedule(): void {
    if (this.queue.length === 0) return;
    const now = Date.now();
    const waiting: Waiter[] = [];
    for (const w of this.queue) {
      if (this.candidates(w.req, now).length === 0 && !this.mayRecover(w.req)) {
        this.dequeue(w);
        w.reject(this.noNode(w.req));
      } else waiting.push(w);
    }
    const slots = this.slotPlan(now);
    // Longest (aged) first: the planner fills each slot from the back.
    const jobs = this.byPriority(waiting).reverse().map((w) => {
      const allowed = new Set(this.candidates(w.req, now).map((n) => n.id));
      const tokens = this.tokensOf(w.req);
      return {
        item: w,
        serviceMs: (id: string) => (allowed.has(id) ? this.speeds.serviceMs(id, w.req.model, tokens) : undefined),
        preferred: this.opts.affinity && w.req.affinityKey ? this.affinity.get(w.req.affinityKey)?.nodeId : undefined,
      };
    });
    for (const [i, w] of planFirst(jobs, slots, NEAR_ENOUGH)) {
      const node = this.registry.get(slots[i].nodeId);
      if (!node) continue;
      this.dequeue(w);
      w.resolve(this.lease(node, w.req));
    }
    if (this.queue.length) for (const n of this.registry.list()) this.refreshIfExternal(n);
    this.armWake();
  }

  /** Every slot of every usable node, with the time until it frees (0: free now). */
  private slotPlan(now: number): PlanSlot[] {
    const out: PlanSlot[] = [];
    for (const n of this.registry.list()) {
      if (!isUsable(n) || !this.breakers.allows(n.id, now) || (this.coolingUntil.get(n.id) ?? 0) > now) continue;
      const total = this.slots(n);
      const mine = [...(this.active.get(n.id) ?? [])].map((a) => Math.max(1, this.speeds.serviceMs(n.id, a.model, a.tokens) - (now - a.started)));
      // Slots other clients hold: assume each frees after a typical answer's time.
      const theirs = Math.max(0, this.busy(n) - mine.length);
      const model = n.models[0] ?? '';
      const typical = Math.max(1, this.speeds.serviceMs(n.id, model, this.speeds.typicalTokens(model)));
      const busy = [...mine, ...Array<number>(theirs).fill(typical)].sort((a, b) => a - b);
      for (let i = 0; i < total; i++) out.push({ nodeId: n.id, readyInMs: i < total - busy.length ? 0 : busy[i - (total - busy.length)] });
    }
    return out;
  }

  /**
   * Waiting requests, the one to serve first first: shortest expected answer first (which
   * minimises the mean completion time of a burst), aged so that a long answer still gets its
   * turn under steady load: its expected time shrinks in proportion to how much of the longest
   * allowed wait it has used, reaching nothing at four fifths of it, before it would time out.
   * (Aging by the time waited itself let a burst's arrival order, spread over a second by the
   * time requests take to arrive, outweigh the answers' lengths.)
   */
  private byPriority(waiting: Waiter[]): Waiter[] {
    if (waiting.length < 2) return [...waiting];
    const now = Date.now();
    const limit = this.opts.queueWaitMs * 0.8;
    const key = new Map<Waiter, number>();
    for (const w of waiting) {
      let best = Infinity;
      for (const n of this.nodesFor(w.req.model)) best = Math.min(best, this.speeds.serviceMs(n.id, w.req.model, this.tokensOf(w.req)));
      key.set(w, limit > 0 ? best * Math.max(0, 1 - (now - w.since) / limit) : best);
    }
    return [...waiting].sort((a, b) => key.get(a)! - key.get(b)!);
  }

  /** A request whose nodes are all cooling down or behind an open breaker may still be served soon. */
  private mayRecover(req: PickRequest): boolean {
    return this.nodesFor(req.model).some((n) => isUsable(n) && !req.exclude?.has(n.id) && (!req.filter || req.filter(n)));
  }

  /** Re-run the queue when a cooling node or an open breaker lets requests through again. */
  private armWake(): void {
    clearTimeout(this.wakeTimer);
    if (this.queue.length === 0) return;
    const now = Date.now();
    let next = Infinity;
    for (const n of this.registry.list()) {
      for (const t of [this.coolingUntil.get(n.id) ?? 0, this.breakers.openUntil(n.id)]) if (t > now) next = Math.min(next, t);
    }
    if (next < Infinity) {
      this.wakeTimer = setTimeout(() => this.schedule(), next - now + 1);
      this.wakeTimer.unref();
    }
  }

  private lease(node: NodeInfo, req: PickRequest): Lease {
    const entry: Active = { started: Date.now(), model: req.model, tokens: this.tokensOf(req) };
    let set = this.active.get(node.id);
    if (!set) this.active.set(node.id, (set = new Set()));
    set.add(entry);
    this.breakers.onSend(node.id);
    this.lastPicked.set(node.id, ++this.picks);
    // With a single node for the model there is nothing to choose: skip hashing the conversation.
    if (this.opts.affinity && this.nodesFor(req.model).length > 1 && req.affinityKey) this.remember(req.affinityKey, node.id);
    let released = false;
    return {
      node,
      release: (o: Outcome) => {
        if (released) return;
        released = true;
        set!.delete(entry);
        this.learn(node, req, o);
        this.schedule();
      },
    };
  }

  private learn(node: NodeInfo, req: PickRequest, o: Outcome): void {
    if (o.ok) {
      this.breakers.onSuccess(node.id);
      this.speeds.record(node.id, req.model, o);
      return;
    }
    if (o.failure === 'client' || o.failure === 'aborted') return this.breakers.onNeutral(node.id);
    if (o.retryAfterS !== undefined) {
      // The node asked for a pause: honour it rather than hammer it, and say nothing bad of it.
      this.coolingUntil.set(node.id, Date.now() + o.retryAfterS * 1000);
      return this.breakers.onNeutral(node.id);
    }
    this.breakers.onFailure(node.id);
  }

  private remember(key: string, nodeId: string): void {
    this.affinity.delete(key);
    this.affinity.set(key, { nodeId, at: Date.now() });
    if (this.affinity.size > AFFINITY_ENTRIES) this.affinity.delete(this.affinity.keys().next().value!);
  }

  private retryHint(req: PickRequest): number {
    const now = Date.now();
    const etas = this.nodesFor(req.model)
      .filter(isUsable)
      .map((n) => this.eta(n, req, now) - this.speeds.serviceMs(n.id, req.model, this.tokensOf(req)));
    return Math.max(1, Math.ceil(Math.min(...etas, 60_000) / 1000));
  }

  private noNode(req: PickRequest): ClusterError {
    if (this.nodesFor(req.model).length === 0) {
      const available = this.models();
      return new ClusterError(
        'unknown_model',
        `The model '${req.model}' does not exist or no node serves it. Available: ${available.length ? available.join(', ') : '(none: no node is up)'}`,
        { available },
      );
    }
    return new ClusterError('no_capacity', `No node can take a request for '${req.model}' now; try again shortly.`, { retryAfterS: 2 });
  }
}
