import { detectNode, pollKind } from './kinds.ts';
import type { NodeInfo } from './node.ts';
import type { Registry } from './registry.ts';

export interface MonitorOptions {
  /** How often every node is read (health, models, load). */
  intervalMs: number;
  timeoutMs: number;
  /** Failed probes in a row after which a discovered (not configured) node is forgotten. */
  maxFailures: number;
}

/**
 * Keeps the registry true: reads every node on a timer and records health, models and load.
 * A configured node stays known while down; a discovered one leaves after `maxFailures`.
 */
export class NodeMonitor {
  private timer?: NodeJS.Timeout;
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly onChange: (e: { type: string; node: NodeInfo }) => void;

  constructor(
    private readonly registry: Registry,
    private readonly opts: MonitorOptions,
  ) {
    // A newly found node is read at once, not at the next tick.
    this.onChange = (e) => {
      if (e.type === 'added') void this.poll(e.node.id);
    };
  }

  start(): void {
    this.registry.on('change', this.onChange);
    for (const n of this.registry.list()) void this.poll(n.id);
    this.timer = setInterval(() => this.pollAll(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.registry.off('change', this.onChange);
  }

  pollAll(): Promise<void> {
    return Promise.all(this.registry.list().map((n) => this.poll(n.id))).then(() => undefined);
  }

  /** Read one node now; concurrent calls for the same node share one probe. */
  poll(id: string): Promise<void> {
    const running = this.inFlight.get(id);
    if (running) return running;
    const p = this.probe(id).finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, p);
    return p;
  }

  private async probe(id: string): Promise<void> {
    const node = this.registry.get(id);
    if (!node) return;
    const o = { apiKey: node.apiKey, apiPath: node.apiPath, timeoutMs: this.opts.timeoutMs };
    const r = await (node.kindUnconfirmed ? detectNode(node.baseUrl, o) : pollKind(node.kind, node.baseUrl, o)).catch(() => null);
    if (!this.registry.get(id)) return;
    if (!r || r.health === 'down') {
      const failedProbes = node.failedProbes + 1;
      // One missed probe on a busy network is not a dead node (request failures feed the
      // circuit breaker meanwhile); two in a row are.
      const health = r?.health === 'down' || failedProbes >= 2 || node.health !== 'up' ? 'down' : 'up';
      this.registry.update(id, { health, failedProbes });
      if (failedProbes >= this.opts.maxFailures && !node.sources.includes('static')) {
        this.registry.remove(id, `failed ${failedProbes} probes in a row`);
      }
      return;
    }
    this.registry.update(id, {
      kind: r.kind,
      kindUnconfirmed: node.kindUnconfirmed ? r.health === 'loading' : undefined,
      health: r.health,
      models: r.models,
      load: r.load,
      failedProbes: 0,
      lastSeen: Date.now(),
    });
  }
}
