import { BlockList, isIP } from 'node:net';
import os from 'node:os';

/** Parse a dotted IPv4 address into a 32-bit unsigned number (null when not IPv4). */
export function ipv4ToInt(ip: string): number | null {
  if (isIP(ip) !== 4) return null;
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

/** Strip an IPv6 zone (`fe80::1%eth0`) and brackets. */
export function stripZone(ip: string): string {
  return ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
}

/**
 * Private networks: RFC 1918, loopback, link-local, carrier-grade NAT 100.64/10 (VPNs such as
 * Tailscale), IPv6 unique-local and link-local. Hearth probes only these, and without an API key
 * serves only clients from these.
 */
const privateNets = new BlockList();
privateNets.addSubnet('127.0.0.0', 8, 'ipv4');
privateNets.addSubnet('10.0.0.0', 8, 'ipv4');
privateNets.addSubnet('172.16.0.0', 12, 'ipv4');
privateNets.addSubnet('192.168.0.0', 16, 'ipv4');
privateNets.addSubnet('169.254.0.0', 16, 'ipv4');
privateNets.addSubnet('100.64.0.0', 10, 'ipv4');
privateNets.addAddress('::1', 'ipv6');
privateNets.addSubnet('fc00::', 7, 'ipv6');
privateNets.addSubnet('fe80::', 10, 'ipv6');

// Asked for every API request and chat page; a home network has few peers, and the BlockList
// lookup allocates, so each answer is remembered.
const privateCache = new Map<string, boolean>();

/** True for private addresses (also IPv4-mapped ones); anything else, or unparsable, is public. */
export function isPrivateAddress(ip: string | undefined): boolean {
  if (!ip) return false;
  let ok = privateCache.get(ip);
  if (ok === undefined) {
    if (privateCache.size >= 1024) privateCache.clear();
    privateCache.set(ip, (ok = checkPrivate(ip)));
  }
  return ok;
}

function checkPrivate(ip: string): boolean {
  const bare = stripZone(ip);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  const addr = mapped ? mapped[1] : bare;
  const family = isIP(addr);
  return family !== 0 && privateNets.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}

export function isIPv4(ip: string): boolean {
  return isIP(ip) === 4;
}

/** `host:port` for a URL authority (brackets IPv6, drops the zone, which URLs cannot carry). */
export function hostPort(ip: string, port: number): string {
  return isIP(stripZone(ip)) === 6 ? `[${stripZone(ip)}]:${port}` : `${ip}:${port}`;
}

export interface LocalAddress {
  address: string;
  family: 4 | 6;
  netmask: string;
  iface: string;
  internal: boolean;
}

/** Every address of this machine (per network interface). */
export function localAddresses(): LocalAddress[] {
  const out: LocalAddress[] = [];
  for (const [iface, list] of Object.entries(os.networkInterfaces())) {
    for (const a of list ?? []) {
      const family = a.family === 'IPv4' || (a.family as unknown) === 4 ? 4 : 6;
      out.push({ address: a.address, family, netmask: a.netmask, iface, internal: a.internal });
    }
  }
  return out;
}

/** True when ip is one of this machine's own addresses. */
export function isLocalAddress(ip: string): boolean {
  const bare = stripZone(ip);
  if (bare === '::1' || bare.startsWith('127.')) return true;
  return localAddresses().some((a) => stripZone(a.address) === bare);
}

/** The local IPv4 address on the same subnet as `peer`, if any. */
export function localIPv4For(peer: string): LocalAddress | undefined {
  const p = ipv4ToInt(peer);
  if (p === null) return undefined;
  return localAddresses().find((a) => {
    if (a.family !== 4) return false;
    const m = ipv4ToInt(a.netmask) ?? 0xffffffff;
    const me = ipv4ToInt(a.address)!;
    return ((p & m) >>> 0) === ((me & m) >>> 0);
  });
}
