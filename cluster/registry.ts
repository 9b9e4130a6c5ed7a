import { EventEmitter } from 'node:events';
import type { NodeInfo, NodeSource } from './node.ts';

export type RegistryEvent =
  | { type: 'added'; node: NodeInfo }
  | { type: 'updated'; node: NodeInfo }
  | { type: 'removed'; node: NodeInfo; reason: string };

export type NodeSeed = Pick<NodeInfo, 'id' | 'baseUrl' | 'kind'> & Partial<Omit<NodeInfo, 'sources'>>;

/**
 * Every node Hearth knows, from every source, one entry per identity. Sources add and withdraw
 * themselves; probes update health, models and load. A node leaves when its last source goes.
 */
export class Registry extends EventEmitter<{ change: [RegistryEvent] }> {
  private readonly nodes = new Map<string, NodeInfo>();

  list(): NodeInfo[] {
    return [...this.nodes.values()];
  }

  get(id: string): NodeInfo | undefined {
    return this.nodes.get(id);
  }

  /** The node whose API lives at this origin, however it was learned. */
  findByBaseUrl(baseUrl: string): NodeInfo | undefined {
    for (const n of this.nodes.values()) if (n.baseUrl === baseUrl) return n;
    return undefined;
  }

  /** Add a node, or record one more source for a known one (fields given here win). */
  upsert(seed: NodeSeed, source: NodeSource): NodeInfo {
    const now = Date.now();
    const known = this.nodes.get(seed.id);
    if (known) {
      const { id: _id, ...rest } = seed;
      Object.assign(known, stripUndefined(rest), { lastSeen: now });
      if (!known.sources.includes(source)) known.sources.push(source);
      this.emit('change', { type: 'updated', node: known });
      return known;
    }
    const node: NodeInfo = {
      name: seed.baseUrl.replace(/^https?:\/\//, ''),
      apiPath: '/v1',
      models: [],
      health: 'unknown',
      failedProbes: 0,
      lastSeen: now,
      ...stripUndefined(seed),
      id: seed.id,
      kind: seed.kind,
      baseUrl: seed.baseUrl,
      sources: [source],
    };
    this.nodes.set(node.id, node);
    this.emit('change', { type: 'added', node });
    return node;
  }

  /** Change what probes learned (health, models, load); unknown ids are ignored. */
  update(id: string, patch: Partial<Omit<NodeInfo, 'id' | 'sources'>>): NodeInfo | undefined {
    const node = this.nodes.get(id);
    if (!node) return undefined;
    Object.assign(node, stripUndefined(patch));
    this.emit('change', { type: 'updated', node });
    return node;
  }

  /** A source no longer sees the node; it leaves when no source is left. */
  withdraw(id: string, source: NodeSource, reason: string): void {
    const node = this.nodes.get(id);
    if (!node) return;
    node.sources = node.sources.filter((s) => s !== source);
    if (node.sources.length === 0) this.remove(id, reason);
    else this.emit('change', { type: 'updated', node });
  }

  remove(id: string, reason: string): void {
    const node = this.nodes.get(id);
    if (!node) return;
    this.nodes.delete(id);
    this.emit('change', { type: 'removed', node, reason });
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
