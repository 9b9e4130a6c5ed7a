import { EventEmitter } from 'node:events';
import type { RemoteInfo } from 'node:dgram';
import type { Question } from 'dns-packet';
import type makeMdns from 'multicast-dns';
import type { MdnsSocket, RR } from './mdns.ts';
import { isIPv4 } from './addresses.ts';

export const DEFAULT_SERVICE_TYPES = [
  '_openai._tcp',
  '_llama._tcp',
  '_llamacpp._tcp',
  '_ollama._tcp',
  '_llm._tcp',
  '_lmstudio._tcp',
  '_vllm._tcp',
  '_hearth-node._tcp',
];

/** A DNS-SD service instance resolved down to addresses. */
export interface FoundService {
  /** `Instance._type._tcp.local` */
  fqdn: string;
  /** Instance label, e.g. `llama on box`. */
  name: string;
  /** `_openai._tcp` */
  type: string;
  /** SRV target, e.g. `box.local`. */
  host: string;
  port: number;
  /** TXT keys in lower case. */
  txt: Record<string, string>;
  /** IPv4 first, then IPv6. */
  addresses: string[];
}

export interface BrowserOptions {
  types?: string[];
  /** First re-query interval of the PTR browse (ms); doubles up to `maxQueryIntervalMs`. */
  minQueryIntervalMs?: number;
  maxQueryIntervalMs?: number;
}

interface Cached {
  rr: RR;
  received: number;
  expires: number;
  /** How many of the RFC 6762 5.2 refresh queries (80/85/90/95 % of TTL) went out. */
  refreshes: number;
}

const REFRESH_AT = [0.8, 0.85, 0.9, 0.95];
const MAX_CACHE = 2048;
const lower = (s: string) => s.toLowerCase().replace(/\.$/, '');

function dataKey(rr: RR): string {
  const d = rr.data as unknown;
  if (Buffer.isBuffer(d)) return d.toString('hex');
  if (Array.isArray(d)) return d.map((b) => (Buffer.isBuffer(b) ? b.toString('hex') : String(b))).join(',');
  if (typeof d === 'string') return lower(d);
  return JSON.stringify(d);
}

function parseTxt(rr: RR | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const d = rr?.data as unknown;
  const items = Array.isArray(d) ? d : d ? [d] : [];
  for (const item of items) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : String(item);
    if (!s) continue;
    const eq = s.indexOf('=');
    const k = (eq < 0 ? s : s.slice(0, eq)).toLowerCase();
    if (k && !(k in out)) out[k] = eq < 0 ? '' : s.slice(eq + 1);
  }
  return out;
}

/**
 * DNS-SD browser (RFC 6763 over RFC 6762): asks for PTR records of the configured service types
 * with growing intervals, caches every answer for its TTL, re-asks at 80-95 % of a TTL, drops
 * records on expiry or goodbye (TTL 0), and resolves instances via SRV, TXT and A/AAAA.
 * Events: `found`/`updated`/`lost` for resolved services, `host` for every address seen in any
 * record or as the sender of any mDNS packet (the host prober's input).
 */
export class ServiceBrowser extends EventEmitter<{
  found: [FoundService];
  updated: [FoundService];
  lost: [FoundService, string];
  host: [string];
}> {
  readonly types: string[];
  private readonly cache = new Map<string, Cached>();
  private readonly current = new Map<string, FoundService>();
  /** Per name: when it was last asked for, and how long to wait before asking again. */
  private readonly asked = new Map<string, { at: number; gap: number }>();
  private readonly minInterval: number;
  private readonly maxInterval: number;
  private interval: number;
  private browseTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  private stopped = false;
  private lastReason = 'expired';
  private readonly onResponse = (p: makeMdns.ResponsePacket, r: RemoteInfo) => this.handle(p, r);
  private readonly onQuery = (_q: makeMdns.QueryPacket, r: RemoteInfo) => this.emit('host', r.address);

  constructor(private readonly mdns: MdnsSocket, opts: BrowserOptions = {}) {
    super();
    this.types = (opts.types ?? DEFAULT_SERVICE_TYPES).map((t) => lower(t).replace(/\.local$/, ''));
    this.minInterval = opts.minQueryIntervalMs ?? 1000;
    this.maxInterval = opts.maxQueryIntervalMs ?? 60_000;
    this.interval = this.minInterval;
  }

  start(): void {
    this.mdns.on('response', this.onResponse);
    this.mdns.on('query', this.onQuery);
    void this.mdns.ready.then(() => this.browse(), () => {});
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.browseTimer);
    clearTimeout(this.sweepTimer);
    this.mdns.off('response', this.onResponse);
    this.mdns.off('query', this.onQuery);
  }

  services(): FoundService[] {
    return [...this.current.values()];
  }

  /** Start the PTR query schedule again from the shortest interval (e.g. after a network change). */
  rescan(): void {
    this.interval = this.minInterval;
    clearTimeout(this.browseTimer);
    this.browse();
  }

  private browse(): void {
    if (this.stopped) return;
    const now = Date.now();
    const questions: Question[] = this.types.map((t) => ({ name: `${t}.local`, type: 'PTR' }));
    // Known-answer suppression (RFC 6762 7.1): list PTRs we hold with more than half their TTL left.
    const known = [...this.cache.values()]
      .filter((c) => c.rr.type === 'PTR' && c.expires - now > ((c.rr.ttl ?? 0) * 1000) / 2)
      .map((c) => ({ ...c.rr, ttl: Math.floor((c.expires - now) / 1000) }) as RR);
    void this.mdns.query(questions, known);
    this.browseTimer = setTimeout(() => this.browse(), this.interval);
    this.browseTimer.unref();
    this.interval = Math.min(this.interval * 2, this.maxInterval);
  }

  private typeOfInstance(fqdn: string): string | undefined {
    const n = lower(fqdn);
    return this.types.find((t) => n.endsWith(`.${t}.local`));
  }

  private relevant(rr: RR): boolean {
    const name = lower(rr.name);
    if (rr.type === 'PTR') return this.types.some((t) => name === `${t}.local`);
    if (rr.type === 'SRV' || rr.type === 'TXT') return this.typeOfInstance(name) !== undefined;
    return rr.type === 'A' || rr.type === 'AAAA';
  }

  private handle(packet: makeMdns.ResponsePacket, rinfo: RemoteInfo): void {
    if (this.stopped) return;
    this.emit('host', rinfo.address);
    const now = Date.now();
    const rrs = [...(packet.answers ?? []), ...(packet.additionals ?? [])] as RR[];
    const flushed = new Set<string>();
    // Most packets on a busy network only refresh records already known: the services are
    // recomputed only when a record came or went.
    let changed = false;
    for (const rr of rrs) {
      if ((rr.type === 'A' || rr.type === 'AAAA') && typeof rr.data === 'string' && (rr.ttl ?? 0) > 0) this.emit('host', rr.data);
      if (!this.relevant(rr)) continue;
      const nt = `${lower(rr.name)}|${rr.type}`;
      // Cache-flush bit (RFC 6762 10.2): this packet holds the whole set for name+type.
      if (rr.flush) flushed.add(nt);
      const key = `${nt}|${dataKey(rr)}`;
      const ttl = rr.ttl ?? 0;
      if (ttl === 0) {
        if (this.cache.delete(key)) {
          this.lastReason = 'goodbye';
          changed = true;
        }
        continue;
      }
      const known = this.cache.get(key);
      if (known) {
        Object.assign(known, { rr, received: now, expires: now + ttl * 1000, refreshes: 0 });
        continue;
      }
      if (this.cache.size >= MAX_CACHE) continue;
      this.cache.set(key, { rr, received: now, expires: now + ttl * 1000, refreshes: 0 });
      this.asked.delete(lower(rr.name)); // answered: a later question starts from a second again
      changed = true;
    }
    // What a flushed set no longer holds goes, unless it arrived within the last second.
    if (flushed.size > 0) {
      for (const [k, c] of this.cache) {
        if (now - c.received <= 1000) continue;
        for (const nt of flushed) {
          if (!k.startsWith(`${nt}|`)) continue;
          this.cache.delete(k);
          changed = true;
          break;
        }
      }
    }
    if (changed) this.update();
    this.lastReason = 'expired';
  }

  private records(name: string, type: string): Cached[] {
    const prefix = `${lower(name)}|${type}|`;
    const out: Cached[] = [];
    for (const [k, c] of this.cache) if (k.startsWith(prefix)) out.push(c);
    return out;
  }

  /** Recompute resolved services, emit differences, ask for what is missing, schedule the sweep. */
  private update(): void {
    const now = Date.now();
    const next = new Map<string, FoundService>();
    const interested = new Set<Cached>();
    let retryAt = Infinity;
    for (const type of this.types) {
      for (const ptr of this.records(`${type}.local`, 'PTR')) {
        interested.add(ptr);
        const fqdn = String(ptr.rr.data);
        const srv = this.records(fqdn, 'SRV')[0];
        const txt = this.records(fqdn, 'TXT')[0];
        if (!srv || !txt) retryAt = Math.min(retryAt, this.ask(fqdn, [{ name: fqdn, type: 'SRV' }, { name: fqdn, type: 'TXT' }], now));
        if (!srv) continue;
        interested.add(srv);
        const { target, port } = srv.rr.data as { target: string; port: number };
        const addrs = [...this.records(target, 'A'), ...this.records(target, 'AAAA')];
        if (addrs.length === 0) {
          retryAt = Math.min(retryAt, this.ask(target, [{ name: target, type: 'A' }, { name: target, type: 'AAAA' }], now));
          continue;
        }
        addrs.forEach((a) => interested.add(a));
        const addresses = addrs.map((a) => String(a.rr.data)).sort((a, b) => Number(isIPv4(b)) - Number(isIPv4(a)));
        const label = fqdn.slice(0, fqdn.length - `.${type}.local`.length);
        next.set(lower(fqdn), { fqdn, name: label, type, host: lower(target), port, txt: parseTxt(txt?.rr), addresses });
      }
    }
    for (const [k, old] of this.current) {
      if (!next.has(k)) {
        this.current.delete(k);
        this.emit('lost', old, this.lastReason);
      }
    }
    for (const [k, svc] of next) {
      const old = this.current.get(k);
      this.current.set(k, svc);
      if (!old) this.emit('found', svc);
      else if (JSON.stringify(old) !== JSON.stringify(svc)) this.emit('updated', svc);
    }
    this.schedule(interested, now, retryAt);
  }

  /**
   * Asks for a name's records, at most once a second at first and then ever less often (up to
   * once a minute) while no answer comes. Returns when it may ask again.
   */
  private ask(name: string, questions: Question[], now: number): number {
    const key = lower(name);
    const last = this.asked.get(key);
    if (last && now - last.at < last.gap) return last.at + last.gap;
    // Long unasked (the name went quiet, then came back): start again from a second.
    const gap = last && now - last.at < 2 * last.gap ? Math.min(last.gap * 2, 60_000) : 1000;
    if (this.asked.size >= MAX_CACHE) this.asked.clear();
    this.asked.set(key, { at: now, gap });
    void this.mdns.query(questions);
    return now + gap;
  }

  /** The next sweep: at the first expiry or refresh, or when a missing answer may be asked for again. */
  private schedule(interested: Set<Cached>, now: number, retryAt: number): void {
    clearTimeout(this.sweepTimer);
    if (this.stopped) return;
    let at = retryAt;
    for (const c of this.cache.values()) {
      at = Math.min(at, c.expires);
      if (interested.has(c) && c.refreshes < REFRESH_AT.length) {
        const ttlMs = (c.rr.ttl ?? 0) * 1000;
        at = Math.min(at, c.received + ttlMs * REFRESH_AT[c.refreshes]);
      }
    }
    if (at === Infinity) return;
    this.sweepTimer = setTimeout(() => this.sweep(interested), Math.max(10, at - now + 5));
    this.sweepTimer.unref();
  }

  private sweep(interested: Set<Cached>): void {
    const now = Date.now();
    const ask: Question[] = [];
    for (const [k, c] of this.cache) {
      if (c.expires <= now) {
        this.cache.delete(k);
        continue;
      }
      const ttlMs = (c.rr.ttl ?? 0) * 1000;
      if (interested.has(c) && c.refreshes < REFRESH_AT.length && now >= c.received + ttlMs * REFRESH_AT[c.refreshes]) {
        while (c.refreshes < REFRESH_AT.length && now >= c.received + ttlMs * REFRESH_AT[c.refreshes]) c.refreshes++;
        if (!ask.some((q) => lower(q.name) === lower(c.rr.name) && q.type === c.rr.type)) ask.push({ name: c.rr.name, type: c.rr.type } as Question);
      }
    }
    if (ask.length > 0) void this.mdns.query(ask);
    this.lastReason = 'expired';
    this.update();
  }
}
