/**
 * The node agent: supervises one inference server, watches its health, and advertises it over
 * mDNS only while it is healthy (goodbye as soon as it is not, and when the agent stops).
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { MdnsSocket, type MdnsOptions } from '../discovery/mdns.ts';
import { createAdvertiser, type Advertiser, type Published } from '../discovery/advertise.ts';
import type { ProbeResult } from '../kinds.ts';
import { HealthWatch, probeUrl, type HealthWatchOptions } from './readiness.ts';
import { Supervisor, type StateChange, type SupervisorOptions, type SupervisorState } from './supervisor.ts';
import { nodeTxt } from './txt.ts';

export const DEFAULT_SERVICE_TYPES = ['_hearth-node._tcp', '_openai._tcp'];

export interface NodeAgentOptions {
  /** The server command: executable and arguments. */
  command: string[];
  /** Port the server listens on (probed and advertised). */
  port: number;
  /** Address the server binds (from its `--host`); probes go to loopback for wildcards. */
  bindHost?: string;
  /** DNS-SD instance name. */
  name: string;
  /** Service types advertised (default `_hearth-node._tcp`, `_openai._tcp`). */
  serviceTypes?: string[];
  /** False: supervise only. */
  advertise?: boolean;
  /** mDNS socket options (interface; port and group in tests). */
  mdns?: MdnsOptions;
  /** TTL of advertised records, seconds (default 120). */
  ttl?: number;
  /** Host name of the SRV target (default `<hostname>-hearth-node`). */
  hostname?: string;
  supervisor?: Omit<SupervisorOptions, 'file' | 'args'>;
  health?: Omit<HealthWatchOptions, 'baseUrl'>;
  /** Warn when the server is not ready this long after a start (default 30 000 ms). */
  slowStartMs?: number;
}

export interface AgentStatus {
  state: SupervisorState;
  pid: number | null;
  restarts: number;
  uptimeMs: number | null;
  port: number;
  server: { kind: string; models: string[] } | null;
  advertised: string[];
  advertising: 'on' | 'off' | 'failed';
  lastExit: { exitCode?: number; signal?: number; at: number } | null;
  output: string[];
}

export class NodeAgent extends EventEmitter<{
  state: [StateChange];
  line: [string];
  advertised: [Published[]];
  withdrawn: [string];
  warning: [string];
}> {
  readonly supervisor: Supervisor;
  private readonly o: NodeAgentOptions;
  private watch: HealthWatch | null = null;
  private slowTimer: NodeJS.Timeout | null = null;
  private mdns: MdnsSocket | null = null;
  private advertiser: Advertiser | null = null;
  private published: Published[] = [];
  private advertising: AgentStatus['advertising'];
  private server: ProbeResult | null = null;
  private lastExit: AgentStatus['lastExit'] = null;
  private stopping: Promise<void> | null = null;

  constructor(opts: NodeAgentOptions) {
    super();
    if (opts.command.length === 0) throw new Error('no server command given');
    this.o = opts;
    this.advertising = opts.advertise === false ? 'off' : 'on';
    this.supervisor = new Supervisor({ ...opts.supervisor, file: opts.command[0], args: opts.command.slice(1) });
    this.supervisor.on('line', (l) => this.emit('line', l));
    this.supervisor.on('state', (c) => this.onState(c));
  }

  async start(): Promise<void> {
    if (this.advertising === 'on') {
      try {
        this.mdns = new MdnsSocket(this.o.mdns);
        this.mdns.on('warning', (e) => this.emit('warning', `mDNS: ${e.message}`));
        await this.mdns.ready;
        const bind = this.o.bindHost;
        const specific = bind && !['0.0.0.0', '::', '[::]', 'localhost'].includes(bind) ? bind.replace(/^\[|\]$/g, '') : undefined;
        this.advertiser = createAdvertiser(this.mdns, {
          ttl: this.o.ttl,
          hostname: this.o.hostname ?? `${os.hostname()}-hearth-node`,
          // A server bound to one address is reachable only there.
          addresses: specific ? () => [specific] : undefined,
        });
      } catch (e) {
        this.advertising = 'failed';
        this.emit('warning', `cannot open the mDNS socket, supervising without advertising: ${(e as Error).message}`);
        await this.mdns?.close().catch(() => {});
        this.mdns = null;
      }
    }
    this.supervisor.start();
  }

  /** Goodbye, stop the server, close the mDNS socket. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.slowTimer) clearTimeout(this.slowTimer);
      this.watch?.stop();
      this.watch = null;
      await this.withdraw('agent stopping');
      await this.supervisor.stop();
      await this.advertiser?.close().catch(() => {});
      await this.mdns?.close().catch(() => {});
    })();
    return this.stopping;
  }

  status(outputLines = 50): AgentStatus {
    const s = this.supervisor.status();
    return {
      state: s.state,
      pid: s.pid,
      restarts: s.restarts,
      uptimeMs: s.startedAt === null ? null : Date.now() - s.startedAt,
      port: this.o.port,
      server: this.server ? { kind: this.server.kind, models: this.server.models } : null,
      advertised: this.published.map((p) => p.fqdn),
      advertising: this.advertising,
      lastExit: this.lastExit,
      output: this.supervisor.output.lines(outputLines),
    };
  }

  private onState(c: StateChange): void {
    this.emit('state', c);
    switch (c.state) {
      case 'starting':
        this.watchHealth();
        break;
      case 'exited':
      case 'crashed':
        this.lastExit = { exitCode: c.exitCode, signal: c.signal, at: c.at };
        this.unwatch(`server ${c.state}`);
        break;
      case 'stopping':
      case 'stopped':
        this.unwatch('agent stopping');
        break;
      default:
        break;
    }
  }

  private unwatch(reason: string): void {
    if (this.slowTimer) clearTimeout(this.slowTimer);
    this.watch?.stop();
    this.watch = null;
    void this.withdraw(reason);
  }

  private watchHealth(): void {
    this.watch?.stop();
    const baseUrl = probeUrl(this.o.bindHost, this.o.port);
    const w = new HealthWatch({ ...this.o.health, baseUrl });
    this.watch = w;
    if (this.slowTimer) clearTimeout(this.slowTimer);
    const slowMs = this.o.slowStartMs ?? 30_000;
    this.slowTimer = setTimeout(() => {
      if (this.watch === w && w.health === 'waiting') this.emit('warning', `the server is not ready after ${Math.round(slowMs / 1000)} s: nothing healthy answers at ${baseUrl} (is the port right? still loading?)`);
    }, slowMs);
    this.slowTimer.unref();
    w.on('ready', (r) => {
      if (this.watch !== w || this.stopping) return;
      this.server = r;
      this.supervisor.setHealth('ready');
      this.publish(r);
    });
    w.on('unhealthy', (why) => {
      if (this.watch !== w || this.stopping) return;
      this.supervisor.setHealth('unhealthy');
      void this.withdraw(`unhealthy: ${why}`);
    });
    w.start();
  }

  private publish(r: ProbeResult): void {
    if (!this.advertiser) return;
    const txt = nodeTxt(r);
    const types = this.o.serviceTypes?.length ? this.o.serviceTypes : DEFAULT_SERVICE_TYPES;
    // Publishing the same instance again replaces its records (new TXT when the models change).
    this.published = types.map((type) => this.advertiser!.publish({ name: this.o.name, type, port: this.o.port, txt }));
    this.emit('advertised', this.published);
  }

  private async withdraw(reason: string): Promise<void> {
    const pubs = this.published;
    if (pubs.length === 0 || !this.advertiser) return;
    this.published = [];
    await Promise.all(pubs.map((p) => this.advertiser!.unpublish(p).catch(() => {})));
    this.emit('withdrawn', reason);
  }
}
