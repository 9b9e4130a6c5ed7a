/**
 * Is the supervised server ready? Probes it every 500 ms until it answers healthy, then every few
 * seconds; a run of failed probes while it runs makes it unhealthy (and a success ready again).
 */
import { EventEmitter } from 'node:events';
import { detectNode, type ProbeOptions, type ProbeResult } from '../kinds.ts';

export interface HealthWatchOptions {
  /** e.g. `http://127.0.0.1:8080` */
  baseUrl: string;
  /** Probe interval until the first healthy answer (default 500 ms). */
  startIntervalMs?: number;
  /** Probe interval once ready (default 3000 ms). */
  intervalMs?: number;
  /** Consecutive failed probes that make a ready server unhealthy (default 3). */
  failures?: number;
  /** Time-out of one probe (default 2000 ms). */
  timeoutMs?: number;
  /** Injected for tests; default `detectNode`. */
  probe?: (baseUrl: string, o: ProbeOptions) => Promise<ProbeResult | null>;
}

export type Health = 'waiting' | 'ready' | 'unhealthy';

/** Emits `ready` (with what the probe saw; again when the models change), `unhealthy`, `probe`. */
export class HealthWatch extends EventEmitter<{ ready: [ProbeResult]; unhealthy: [string]; probe: [ProbeResult | null] }> {
  private readonly o: Required<Omit<HealthWatchOptions, 'probe'>>;
  private readonly probe: NonNullable<HealthWatchOptions['probe']>;
  private timer: NodeJS.Timeout | null = null;
  private readonly abort = new AbortController();
  private stopped = false;
  private failed = 0;
  private _health: Health = 'waiting';
  private _last: ProbeResult | null = null;

  constructor(opts: HealthWatchOptions) {
    super();
    this.o = {
      baseUrl: opts.baseUrl.replace(/\/+$/, ''),
      startIntervalMs: opts.startIntervalMs ?? 500,
      intervalMs: opts.intervalMs ?? 3000,
      failures: Math.max(1, opts.failures ?? 3),
      timeoutMs: opts.timeoutMs ?? 2000,
    };
    this.probe = opts.probe ?? detectNode;
  }

  get health(): Health {
    return this._health;
  }
  /** The last successful look at the server (kind, models). */
  get last(): ProbeResult | null {
    return this._last;
  }

  start(): this {
    this.schedule(0);
    return this;
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    // Once the kind is known, ask only its endpoints (one round trip, no guessing).
    const r = await this.probe(this.o.baseUrl, { timeoutMs: this.o.timeoutMs, signal: this.abort.signal, hint: this._last?.kind }).catch(() => null);
    if (this.stopped) return;
    this.emit('probe', r);
    if (r?.health === 'up') {
      this.failed = 0;
      const changed = this._health !== 'ready' || this._last?.kind !== r.kind || this._last?.models.join('\n') !== r.models.join('\n');
      this._last = r;
      this._health = 'ready';
      if (changed) this.emit('ready', r);
    } else if (this._health !== 'waiting') {
      // Before the first healthy answer a server may load for as long as it needs.
      this.failed++;
      if (this._health === 'ready' && this.failed >= this.o.failures) {
        this._health = 'unhealthy';
        this.emit('unhealthy', r ? `health ${r.health}` : 'no answer');
      }
    }
    this.schedule(this._health === 'waiting' ? this.o.startIntervalMs : this.o.intervalMs);
  }
}

/** Value of `--name VALUE` or `--name=VALUE` in a command line (the last one wins). */
export function optionValue(args: string[], ...names: string[]): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    for (const n of names) {
      if (a === n && i + 1 < args.length) v = args[i + 1];
      else if (a.startsWith(`${n}=`)) v = a.slice(n.length + 1);
    }
  }
  return v;
}

/** The port the server will listen on, from its own `--port` argument. */
export function portFromCommand(args: string[]): number | undefined {
  const v = optionValue(args, '--port');
  const n = v !== undefined && /^\d+$/.test(v) ? Number(v) : NaN;
  return n > 0 && n < 65536 ? n : undefined;
}

/** The address the server binds, from its own `--host` argument (undefined: not given). */
export function hostFromCommand(args: string[]): string | undefined {
  return optionValue(args, '--host');
}

/** Where to probe a server bound to `host`: wildcard and missing become loopback. */
export function probeUrl(host: string | undefined, port: number): string {
  const h = !host || host === '0.0.0.0' || host === '::' || host === '[::]' ? '127.0.0.1' : host.replace(/^\[|\]$/g, '');
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}
