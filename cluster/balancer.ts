import { ClusterError } from './errors.ts';
import { isUsable, type NodeInfo } from './node.ts';
import type { Registry } from './registry.ts';

/** How a request on a node went; the balancer learns from it. */
export interface Outcome {
  ok: boolean;
  /** From sending the request to the first event of the answer. */
  firstByteMs?: number;
  /** Content events received (roughly tokens). */
  chunks?: number;
  /** From the first event to the end. */
  decodeMs?: number;
  /** Why it failed, when it did; `client` failures (4xx) say nothing about the node. */
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
  signal?: AbortSignal;
}

/**
 * Chooses a node for each request among the usable nodes that serve its model: the one with
 * the fewest requests in flight from Hearth.
 */
export class Balancer {
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly registry: Registry) {}

  /** Every model some usable node serves now. */
  models(): string[] {
    const set = new Set<string>();
    for (const n of this.registry.list()) if (isUsable(n)) for (const m of n.models) set.add(m);
    return [...set].sort();
  }

  /** Nodes that serve `model` now, usable or not (for error messages and retries). */
  nodesFor(model: string): NodeInfo[] {
    return this.registry.list().filter((n) => n.models.includes(model));
  }

  load(nodeId: string): number {
    return this.inFlight.get(nodeId) ?? 0;
  }

  async acquire(req: PickRequest): Promise<Lease> {
    const candidates = this.nodesFor(req.model).filter((n) => isUsable(n) && !req.exclude?.has(n.id));
    if (candidates.length === 0) throw this.noNode(req);
    let best = candidates[0];
    for (const n of candidates) if (this.load(n.id) < this.load(best.id)) best = n;
    return this.lease(best);
  }

  protected lease(node: NodeInfo): Lease {
    this.inFlight.set(node.id, this.load(node.id) + 1);
    let released = false;
    return {
      node,
      release: () => {
        if (released) return;
        released = true;
        this.inFlight.set(node.id, this.load(node.id) - 1);
      },
    };
  }

  protected noNode(req: PickRequest): ClusterError {
    if (this.nodesFor(req.model).length === 0) {
      const available = this.models();
      return new ClusterError(
        'unknown_model',
        `The model '${req.model}' does not exist or no node serves it. Available: ${available.length ? available.join(', ') : '(none: no node is up)'}`,
        { available },
      );
    }
    return new ClusterError('no_capacity', `No node can take a request for '${req.model}' now; try again shortly.`, {
      retryAfterS: 2,
    });
  }
}
