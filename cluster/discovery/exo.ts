import dgram from 'node:dgram';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { execFile } from 'node:child_process';
import { detectNode } from '../kinds.ts';
import type { ProbeFound } from './host-prober.ts';
import { ipv4ToInt, isPrivateAddress, localAddresses } from './addresses.ts';

export const EXO_GROUP = 'ff12::e0a1:de89';
export const EXO_DISCOVERY_PORT = 52413;
export const EXO_API_PORT = 52415;

export interface ExoHello {
  /** Sender, usually link-local with its zone: `fe80::1%eth0`. */
  address: string;
  iface?: string;
  nonce: string;
  /** Namespace hash (hex): the nodes of one cluster share it. */
  namespace: string;
}

/**
 * Parse exo's 20-byte Hello: 'EXO', kind 0, 8-byte nonce, 8-byte namespace hash (the first 8
 * bytes of blake3 of the namespace, which defaults to exo's version, so any value is accepted).
 * Checked against exo's rust/networking/src/discovery.rs: the other kind, WhatsUp (1, 30 bytes),
 * is a node's unicast answer to a Hello and never reaches the group, so it is ignored here.
 */
export function parseExoHello(buf: Buffer): { nonce: string; namespace: string } | null {
  if (buf.length !== 20 || buf.toString('latin1', 0, 3) !== 'EXO' || buf[3] !== 0) return null;
  return { nonce: buf.subarray(4, 12).toString('hex'), namespace: buf.subarray(12, 20).toString('hex') };
}

export function makeExoHello(nonce: Buffer, namespace: Buffer): Buffer {
  return Buffer.concat([Buffer.from('EXO', 'latin1'), Buffer.from([0]), nonce.subarray(0, 8), namespace.subarray(0, 8)]);
}

/** MAC address from an EUI-64 link-local address (`fe80::0211:22ff:fe33:4455`), else null. */
export function macFromEui64(ip: string): string | null {
  const bare = ip.replace(/%.*$/, '');
  const m = /^fe80::([0-9a-f]{1,4}):([0-9a-f]{1,4}):([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(bare);
  if (!m) return null;
  const w = m.slice(1).map((h) => parseInt(h, 16));
  if ((w[1] & 0xff) !== 0xff || w[2] >> 8 !== 0xfe) return null;
  const b = [(w[0] >> 8) ^ 0x02, w[0] & 0xff, w[1] >> 8, w[2] & 0xff, w[3] >> 8, w[3] & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Joins exo's discovery group on every IPv6-capable interface and reports Hello datagrams. */
export class ExoListener extends EventEmitter<{ hello: [ExoHello]; warning: [Error] }> {
  private sock?: dgram.Socket;
  constructor(private readonly opts: { port?: number; group?: string; interfaces?: string[] } = {}) {
    super();
  }

  async start(): Promise<void> {
    const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true });
    this.sock = sock;
    sock.on('error', (e) => this.emit('warning', e));
    sock.on('message', (msg, rinfo) => {
      const h = parseExoHello(msg);
      if (!h) return;
      const iface = /%(.+)$/.exec(rinfo.address)?.[1];
      this.emit('hello', { address: rinfo.address, iface, ...h });
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(this.opts.port ?? EXO_DISCOVERY_PORT, '::', () => {
        sock.off('error', reject);
        resolve();
      });
    });
    const names = this.opts.interfaces ?? [...new Set(localAddresses().filter((a) => a.family === 6).map((a) => a.iface))];
    for (const name of names) {
      try {
        sock.addMembership(this.opts.group ?? EXO_GROUP, `::%${name}`);
      } catch (e) {
        this.emit('warning', e as Error);
      }
    }
  }

  stop(): void {
    try {
      this.sock?.close();
    } catch {
      /* already closed */
    }
    this.sock = undefined;
  }
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: 2000 }, (err, out) => resolve(err ? '' : String(out))));
}

interface Neighbour {
  dst: string;
  lladdr?: string;
}

async function neighbours(iface?: string): Promise<Neighbour[]> {
  const out = await run('ip', ['-j', 'neigh', 'show', ...(iface ? ['dev', iface] : [])]);
  try {
    return (JSON.parse(out || '[]') as Neighbour[]).filter((n) => typeof n.dst === 'string');
  } catch {
    return [];
  }
}

/** A TCP connection attempt makes the kernel resolve the neighbour (NDP) so `ip neigh` has its MAC. */
function touch(address: string, port: number, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    // The zone stays in the host string (`fe80::1%eth0`): link-local needs it.
    const s = net.connect({ host: address, port });
    const done = () => {
      s.destroy();
      resolve();
    };
    s.on('error', done);
    s.on('connect', done);
    setTimeout(done, ms).unref();
  }).catch(() => undefined) as Promise<void>;
}

export interface ExoResolverOptions {
  timeoutMs?: number;
  /** IPv4 addresses already seen on the network (mDNS), tried before a sweep. */
  knownHosts?: () => string[];
  /** A Hello from a namespace already resolved is ignored for this long. */
  recheckMs?: number;
  /** Sweep the interface's IPv4 subnet (up to a /24) when nothing else gives the address. */
  sweep?: boolean;
  sweepConcurrency?: number;
  detect?: typeof detectNode;
}

/**
 * Turns exo Hellos (heard from a link-local IPv6 sender) into the IPv4 API address of the node:
 * the neighbour table (same MAC), the hosts seen on mDNS, and as a last resort a bounded sweep
 * of the interface's private IPv4 subnet on port 52415, stopping at the first exo answer.
 */
export class ExoResolver extends EventEmitter<{ found: [ProbeFound] }> {
  private readonly last = new Map<string, number>();
  private readonly abort = new AbortController();
  constructor(private readonly o: ExoResolverOptions = {}) {
    super();
  }

  stop(): void {
    this.abort.abort();
  }

  async hello(h: ExoHello): Promise<ProbeFound | null> {
    const now = Date.now();
    if (now - (this.last.get(h.namespace) ?? 0) < (this.o.recheckMs ?? 60_000)) return null;
    this.last.set(h.namespace, now);
    const found = await this.resolve(h);
    if (!found) this.last.set(h.namespace, now - (this.o.recheckMs ?? 60_000) + 10_000); // retry in 10 s
    return found;
  }

  private async tryHost(ip: string): Promise<ProbeFound | null> {
    if (this.abort.signal.aborted || !isPrivateAddress(ip)) return null;
    const baseUrl = `http://${ip}:${EXO_API_PORT}`;
    const r = await (this.o.detect ?? detectNode)(baseUrl, { timeoutMs: this.o.timeoutMs ?? 1500, hint: 'exo', signal: this.abort.signal }).catch(() => null);
    if (!r || r.kind !== 'exo' || r.health === 'down') return null;
    const f = { ip, port: EXO_API_PORT, baseUrl, result: r };
    this.emit('found', f);
    return f;
  }

  private async resolve(h: ExoHello): Promise<ProbeFound | null> {
    const tried = new Set<string>();
    const attempt = async (ips: string[]) => {
      for (const ip of ips) {
        if (tried.has(ip) || ipv4ToInt(ip) === null) continue;
        tried.add(ip);
        const f = await this.tryHost(ip);
        if (f) return f;
      }
      return null;
    };
    // 1. Same MAC in the neighbour table (NDP first, so the IPv6 entry exists).
    await touch(h.address, EXO_API_PORT, 500);
    const table = await neighbours(h.iface);
    const bare = h.address.replace(/%.*$/, '').toLowerCase();
    const mac = table.find((n) => n.dst.toLowerCase() === bare)?.lladdr ?? macFromEui64(bare);
    if (mac) {
      const f = await attempt(table.filter((n) => n.lladdr === mac).map((n) => n.dst));
      if (f) return f;
    }
    // 2. Hosts seen on mDNS, then IPv4 neighbours of that interface.
    let f = await attempt(this.o.knownHosts?.() ?? []);
    if (f) return f;
    f = await attempt(table.map((n) => n.dst));
    if (f || this.o.sweep === false) return f;
    // 3. Sweep the interface's subnet (at most a /24 around our address), nearest first.
    const mine = localAddresses().filter((a) => a.family === 4 && !a.internal && (!h.iface || a.iface === h.iface));
    for (const a of mine) {
      const me = ipv4ToInt(a.address)!;
      const maskBits = ipv4ToInt(a.netmask) ?? 0xffffff00;
      const mask = Math.max(maskBits >>> 0, 0xffffff00) >>> 0;
      const net = (me & mask) >>> 0;
      const size = 2 ** 32 - mask;
      const ips: string[] = [];
      for (let i = 1; i < size - 1; i++) {
        const n = net + i;
        if (n !== me) ips.push([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'));
      }
      ips.sort((x, y) => Math.abs(ipv4ToInt(x)! - me) - Math.abs(ipv4ToInt(y)! - me));
      const conc = this.o.sweepConcurrency ?? 8;
      let hit: ProbeFound | null = null;
      let i = 0;
      await Promise.all(
        Array.from({ length: conc }, async () => {
          while (!hit && i < ips.length && !this.abort.signal.aborted) {
            const ip = ips[i++];
            if (tried.has(ip)) continue;
            tried.add(ip);
            const ok = await this.portOpen(ip, EXO_API_PORT, 1000);
            if (ok && !hit) hit = await this.tryHost(ip);
          }
        }),
      );
      if (hit) return hit;
    }
    return null;
  }

  /** A bare TCP connect first: cheaper and politer than five HTTP requests per address. */
  private portOpen(ip: string, port: number, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const s = net.connect({ host: ip, port });
      const t = setTimeout(() => finish(false), ms);
      const finish = (ok: boolean) => {
        clearTimeout(t);
        s.destroy();
        resolve(ok);
      };
      s.on('connect', () => finish(true));
      s.on('error', () => finish(false));
    });
  }
}
