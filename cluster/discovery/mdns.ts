import { EventEmitter } from 'node:events';
import type { RemoteInfo } from 'node:dgram';
import makeMdns from 'multicast-dns';
import type { Answer, Question } from 'dns-packet';

export interface MdnsOptions {
  /** IPv4 address of the interface to use (membership and outgoing multicast); default: all. */
  interface?: string;
  /** UDP port; 5353 except in tests. */
  port?: number;
  /** Multicast group; 224.0.0.251 except in tests. */
  group?: string;
}

/** A resource record as this code reads and writes it (dns-packet's union type, loosened). */
export interface RR {
  name: string;
  type: string;
  ttl?: number;
  flush?: boolean;
  class?: string;
  data?: any;
}

export type MdnsPacket = makeMdns.ResponsePacket | makeMdns.QueryPacket;

/**
 * One IPv4 mDNS socket shared by the browser and the advertiser (port 5353 with address reuse,
 * so it runs beside avahi-daemon). Re-emits `query` and `response` packets with their sender.
 */
export class MdnsSocket extends EventEmitter<{
  query: [makeMdns.QueryPacket, RemoteInfo];
  response: [makeMdns.ResponsePacket, RemoteInfo];
  warning: [Error];
}> {
  readonly port: number;
  private readonly raw: makeMdns.MulticastDNS;
  private closed = false;
  readonly ready: Promise<void>;

  constructor(opts: MdnsOptions = {}) {
    super();
    this.port = opts.port ?? 5353;
    this.raw = makeMdns({
      port: this.port,
      ip: opts.group,
      interface: opts.interface,
      // Binding to a unicast address would hide multicast datagrams on Linux: bind the wildcard.
      bind: '0.0.0.0',
      reuseAddr: true,
      loopback: true,
    });
    this.ready = new Promise((resolve, reject) => {
      this.raw.once('ready', () => resolve());
      this.raw.once('error', (err: Error) => reject(err));
    });
    this.ready.catch(() => {});
    this.raw.on('query', (q, r) => this.emit('query', q, r));
    this.raw.on('response', (p, r) => this.emit('response', p, r));
    this.raw.on('warning', (e: Error) => this.emit('warning', e));
    this.raw.on('error', (e: Error) => this.emit('warning', e));
  }

  query(questions: Question[], knownAnswers: RR[] = []): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      this.raw.query({ questions, answers: knownAnswers as Answer[] }, () => resolve());
    });
  }

  /** Multicast a response, or unicast it to `to` (legacy unicast queries). */
  respond(answers: RR[], additionals: RR[] = [], to?: RemoteInfo, id = 0, questions: Question[] = []): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || answers.length === 0) return resolve();
      const packet = { id, answers, additionals, questions } as makeMdns.ResponseOutgoingPacket;
      const done = () => resolve();
      if (to) this.raw.respond(packet, { port: to.port, address: to.address }, done);
      else this.raw.respond(packet, done);
    });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => this.raw.destroy(() => resolve()));
  }
}
