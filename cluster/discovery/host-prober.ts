import { EventEmitter } from 'node:events';
import { detectNode, type ProbeResult } from '../kinds.ts';
import type { NodeKind } from '../node.ts';
import { isIPv4, isPrivateAddress, stripZone } from './addresses.ts';

/** Ports inference servers listen on by default, with the kind each one suggests. */
export const KNOWN_PORTS: ReadonlyArray<{ port: number; hint: NodeKind }> = [
  { port: 8080, hint: 'llama.cpp' },
  { port: 9931, hint: 'llama.cpp' },
  { port: 11434, hint: 'ollama' },
  { port: 52415, hint: 'exo' },
  { port: 1234, hint: 'lmstudio' },
];

export interface ProbeFound {
  ip: string;
  port: number;
  /** `http://ip:port` */
  baseUrl: string;
  result: ProbeResult;
}

export interface HostProberOptions {
  ports?: number[];
  /** Probes in flight at once, all hosts together. */
  concurrency?: number;
  timeoutMs?: number;
  /** A host that answered is probed again at most this often (new servers get found). */
  rescanMs?: number;
  /** A silent host waits `silentBaseMs * 2^(n-1)` after n silent rounds, at most `silentMaxMs`. */
  silentBaseMs?: number;
  silentMaxMs?: number;
  /** Skip an address/port (this gateway itself, nodes already known from elsewhere). */
  skip?: (ip: string, port: number) => boolean;
  detect?: typeof detectNode;
}

interface HostState {
  nextAt: number;
  silentRounds: number;
}

/**
 * Politely probes hosts seen on the network for inference servers on the known ports: IPv4
 * private, link-local and loopback addresses only (never a public address), bounded
 * concurrency, short time-outs, exponential back-off for hosts that answer nothing.
 * Emits `found` for every server that answers; the monitor watches it after that.
 */
export class HostProber extends EventEmitter<{ found: [ProbeFound] }> {
  private readonly hosts = new Map<string, HostState>();
  private readonly queue: Array<() => Promise<void>> = [];
  private running = 0;
  private readonly abort = new AbortController();
  private readonly o: Required<Omit<HostProberOptions, 'skip'>> & Pick<HostProberOptions, 'skip'>;

  constructor(opts: HostProberOptions = {}) {
    super();
    this.o = {
      ports: opts.ports ?? KNOWN_PORTS.map((p) => p.port),
      concurrency: opts.concurrency ?? 4,
      timeoutMs: opts.timeoutMs ?? 1500,
      rescanMs: opts.rescanMs ?? 5 * 60_000,
      silentBaseMs: opts.silentBaseMs ?? 60_000,
      silentMaxMs: opts.silentMaxMs ?? 60 * 60_000,
      skip: opts.skip,
      detect: opts.detect ?? detectNode,
    };
  }

  /** A host was seen (any mDNS record with its address, a neighbour entry, ...). */
  seen(address: string, ports: number[] = this.o.ports): void {
    const ip = stripZone(address);
    // IPv4 only: servers here listen on IPv4 (exo only there), and URLs cannot carry IPv6 zones.
    if (this.abort.signal.aborted || !isIPv4(ip) || !isPrivateAddress(ip)) return;
    const now = Date.now();
    const st = this.hosts.get(ip) ?? { nextAt: 0, silentRounds: 0 };
    if (now < st.nextAt) return;
    this.hosts.set(ip, st);
    const todo = ports.filter((p) => !this.o.skip?.(ip, p));
    st.nextAt = now + this.o.rescanMs;
    if (todo.length === 0) return;
    let pending = todo.length;
    let answered = false;
    for (const port of todo) {
      this.enqueue(async () => {
        try {
          if (await this.probe(ip, port)) answered = true;
        } finally {
          if (--pending === 0) {
            st.silentRounds = answered ? 0 : st.silentRounds + 1;
            const wait = answered ? this.o.rescanMs : Math.min(this.o.silentBaseMs * 2 ** (st.silentRounds - 1), this.o.silentMaxMs);
            st.nextAt = Date.now() + wait;
          }
        }
      });
    }
  }

  /** Forget a host's back-off (e.g. it announced itself again after a goodbye). */
  forget(address: string): void {
    this.hosts.delete(stripZone(address));
  }

  stop(): void {
    this.abort.abort();
    this.queue.length = 0;
  }

  private async probe(ip: string, port: number): Promise<boolean> {
    if (this.o.skip?.(ip, port)) return true;
    const baseUrl = `http://${ip}:${port}`;
    const hint = KNOWN_PORTS.find((k) => k.port === port)?.hint;
    const result = await this.o.detect(baseUrl, { timeoutMs: this.o.timeoutMs, hint, signal: this.abort.signal }).catch(() => null);
    if (!result || this.abort.signal.aborted) return false;
    this.emit('found', { ip, port, baseUrl, result });
    return true;
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue.push(task);
    this.pump();
  }

  private pump(): void {
    while (this.running < this.o.concurrency && this.queue.length > 0) {
      const task = this.queue.shift()!;
      this.running++;
      void task().finally(() => {
        this.running--;
        this.pump();
      });
    }
  }
}
