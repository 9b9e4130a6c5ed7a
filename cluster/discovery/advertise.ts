import os from 'node:os';
import type { RemoteInfo } from 'node:dgram';
import type { Question } from 'dns-packet';
import type makeMdns from 'multicast-dns';
import type { MdnsSocket, RR } from './mdns.ts';
import { localAddresses, localIPv4For } from './addresses.ts';

export interface ServiceSpec {
  /** Instance name shown to people, e.g. `Hearth on pi`. Dots are replaced (one DNS label). */
  name: string;
  /** Service type, e.g. `_openai._tcp`. */
  type: string;
  port: number;
  /** TXT keys, e.g. `{ path: '/v1' }`. Never put secrets here: anyone on the LAN reads them. */
  txt?: Record<string, string>;
  /** Target host name (`x.local`); default: the advertiser's own host name. */
  host?: string;
}

export interface Published {
  readonly name: string;
  readonly type: string;
  /** `name._type._tcp.local` */
  readonly fqdn: string;
  readonly port: number;
  readonly host: string;
  readonly txt: Record<string, string>;
}

export interface AdvertiserOptions {
  /** TTL of every record in seconds (RFC 6762 recommends 120 for host-bound records). */
  ttl?: number;
  /**
   * Host name (`.local` added) for the SRV target and A records. Default `<hostname>-hearth`: a
   * name of our own, so the host record never fights avahi-daemon's record for `<hostname>.local`.
   */
  hostname?: string;
  /** Addresses answered for the host name; default: this machine's IPv4 addresses. */
  addresses?: () => string[];
}

export interface Advertiser {
  publish(svc: ServiceSpec): Published;
  /** Withdraw one service with a goodbye (TTL 0). */
  unpublish(p: Published): Promise<void>;
  /** Goodbye for every published service; the socket stays open (its owner closes it). */
  close(): Promise<void>;
  /** The host name the advertiser answers for (`x.local`). */
  readonly hostname: string;
  /** True when an instance name (`fqdn`) belongs to this advertiser. */
  owns(fqdn: string): boolean;
}

const SERVICES = '_services._dns-sd._udp.local';
const lower = (s: string) => s.toLowerCase();

function defaultAddresses(): string[] {
  const v4 = localAddresses().filter((a) => a.family === 4);
  const external = v4.filter((a) => !a.internal).map((a) => a.address);
  return external.length > 0 ? external : v4.map((a) => a.address);
}

/** Publish DNS-SD services on an mDNS socket: answers queries, announces, says goodbye. */
export function createAdvertiser(mdns: MdnsSocket, opts: AdvertiserOptions = {}): Advertiser {
  const ttl = opts.ttl ?? 120;
  const hostname = `${(opts.hostname ?? `${os.hostname()}-hearth`).replace(/\.local\.?$/i, '').replace(/\./g, '-')}.local`;
  const addressesFor = opts.addresses ?? defaultAddresses;
  const services = new Map<string, { pub: Published; timers: NodeJS.Timeout[] }>();

  const typeName = (type: string) => `${type.replace(/\.local\.?$/i, '')}.local`;

  function records(pub: Published, t: number) {
    const txt = Object.entries(pub.txt).map(([k, v]) => Buffer.from(`${k}=${v}`));
    const ptr: RR = { name: typeName(pub.type), type: 'PTR', ttl: t, data: pub.fqdn };
    const srv: RR = { name: pub.fqdn, type: 'SRV', ttl: t, flush: true, data: { target: pub.host, port: pub.port, priority: 0, weight: 0 } };
    const txtRr: RR = { name: pub.fqdn, type: 'TXT', ttl: t, flush: true, data: txt.length ? txt : [Buffer.alloc(0)] };
    const meta: RR = { name: SERVICES, type: 'PTR', ttl: t, data: typeName(pub.type) };
    return { ptr, srv, txt: txtRr, meta };
  }

  function hostRecords(host: string, peer: string | undefined, t: number): RR[] {
    const near = peer ? localIPv4For(peer) : undefined;
    const addrs = near && !opts.addresses ? [near.address] : addressesFor();
    return addrs.map((a) => ({ name: host, type: a.includes(':') ? 'AAAA' : 'A', ttl: t, flush: true, data: a }) as RR);
  }

  function announce(pub: Published) {
    const r = records(pub, ttl);
    void mdns.respond([r.ptr, r.srv, r.txt, ...hostRecords(pub.host, undefined, ttl)], [r.meta]);
  }

  /** Known-answer suppression (RFC 6762 7.1): the asker already holds this record at >= half TTL. */
  function known(q: makeMdns.QueryPacket, a: RR): boolean {
    return ((q.answers ?? []) as RR[]).some(
      (k) => lower(k.name) === lower(a.name) && k.type === a.type && (k.ttl ?? 0) >= ttl / 2 &&
        (typeof k.data === 'string' && typeof a.data === 'string' ? lower(k.data) === lower(a.data) : false),
    );
  }

  function onQuery(q: makeMdns.QueryPacket, rinfo: RemoteInfo) {
    const legacy = rinfo.port !== mdns.port;
    const t = legacy ? Math.min(ttl, 10) : ttl;
    const answers: RR[] = [];
    const extra: RR[] = [];
    const answered: Question[] = [];
    const add = (list: RR[], a: RR) => {
      if (!known(q, a) && ![...answers, ...extra].some((x) => x.name === a.name && x.type === a.type && JSON.stringify(x.data) === JSON.stringify(a.data))) list.push(a);
    };
    for (const question of q.questions ?? []) {
      const name = lower(question.name);
      const qt = question.type as string;
      let hit = false;
      if (name === SERVICES && (qt === 'PTR' || qt === 'ANY')) {
        for (const { pub } of services.values()) add(answers, records(pub, t).meta);
        hit = services.size > 0;
      }
      for (const { pub } of services.values()) {
        const r = records(pub, t);
        if (name === lower(typeName(pub.type)) && (qt === 'PTR' || qt === 'ANY')) {
          add(answers, r.ptr);
          add(extra, r.srv);
          add(extra, r.txt);
          for (const h of hostRecords(pub.host, rinfo.address, t)) add(extra, h);
          hit = true;
        } else if (name === lower(pub.fqdn) && (qt === 'SRV' || qt === 'TXT' || qt === 'ANY')) {
          if (qt !== 'TXT') add(answers, r.srv);
          if (qt !== 'SRV') add(answers, r.txt);
          for (const h of hostRecords(pub.host, rinfo.address, t)) add(extra, h);
          hit = true;
        } else if (name === lower(pub.host) && (qt === 'A' || qt === 'ANY')) {
          for (const h of hostRecords(pub.host, rinfo.address, t)) add(answers, h);
          hit = true;
        }
      }
      if (hit) answered.push(question);
    }
    if (answers.length === 0) return;
    if (legacy) void mdns.respond(answers, extra, rinfo, q.id, answered);
    else void mdns.respond(answers, extra);
  }
  mdns.on('query', onQuery);

  function publish(svc: ServiceSpec): Published {
    const name = svc.name.replace(/\./g, '-').slice(0, 63);
    const type = svc.type.replace(/\.local\.?$/i, '');
    const pub: Published = Object.freeze({
      name,
      type,
      fqdn: `${name}.${type}.local`,
      port: svc.port,
      host: svc.host ? `${svc.host.replace(/\.local\.?$/i, '')}.local` : hostname,
      txt: { ...(svc.txt ?? {}) },
    });
    const old = services.get(lower(pub.fqdn));
    if (old) old.timers.forEach(clearTimeout);
    const entry = { pub, timers: [] as NodeJS.Timeout[] };
    services.set(lower(pub.fqdn), entry);
    // Announce twice, one second apart (RFC 6762 8.3). Conflict probing (8.1) is not done:
    // instance names carry the host name, which is unique on a home network.
    void mdns.ready.then(() => { if (services.get(lower(pub.fqdn)) === entry) announce(pub); }, () => {});
    const t = setTimeout(() => { if (services.get(lower(pub.fqdn)) === entry) announce(pub); }, 1000);
    t.unref();
    entry.timers.push(t);
    return pub;
  }

  async function unpublish(p: Published): Promise<void> {
    const entry = services.get(lower(p.fqdn));
    if (!entry) return;
    entry.timers.forEach(clearTimeout);
    services.delete(lower(p.fqdn));
    // Host records are not withdrawn: other services (or other programs) may share the name.
    const r = records(p, 0);
    await mdns.respond([r.ptr, r.srv, r.txt]);
  }

  return {
    publish,
    unpublish,
    hostname,
    owns: (fqdn) => services.has(lower(fqdn)),
    async close() {
      mdns.off('query', onQuery);
      await Promise.all([...services.values()].map((e) => unpublish(e.pub)));
    },
  };
}
