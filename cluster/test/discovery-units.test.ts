import { EventEmitter } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { ServiceBrowser } from '../discovery/browse.ts';
import { isPrivateAddress } from '../discovery/addresses.ts';
import { macFromEui64, makeExoHello, parseExoHello } from '../discovery/exo.ts';
import { HostProber } from '../discovery/host-prober.ts';

describe('isPrivateAddress', () => {
  it.each(['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.10', '127.0.0.1', '169.254.3.4', '100.64.0.1', '100.127.255.254', 'fd00::1', 'fc12::3', 'fe80::1%eth0', '::1', '::ffff:192.168.0.2'])('%s is private', (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });
  it.each(['8.8.8.8', '172.32.0.1', '100.128.0.1', '192.169.0.1', '2001:db8::1', '2a00:1450::1', '::ffff:8.8.8.8', 'not-an-ip', '', '224.0.0.251'])('%s is not', (ip) => {
    expect(isPrivateAddress(ip)).toBe(false);
  });
});

describe('exo Hello', () => {
  it('round-trips the 20-byte datagram and rejects others', () => {
    const b = makeExoHello(Buffer.alloc(8, 1), Buffer.from('a1b2c3d4e5f60718', 'hex'));
    expect(b.length).toBe(20);
    expect(parseExoHello(b)).toEqual({ nonce: '0101010101010101', namespace: 'a1b2c3d4e5f60718' });
    expect(parseExoHello(Buffer.from('EXO'))).toBeNull();
    const other = Buffer.from(b);
    other[3] = 1;
    expect(parseExoHello(other)).toBeNull();
  });
  it('derives a MAC from an EUI-64 link-local address only', () => {
    expect(macFromEui64('fe80::14a2:38ff:feb1:d30c%eth0')).toBe('16:a2:38:b1:d3:0c');
    expect(macFromEui64('fe80::1234:5678:9abc:def0')).toBeNull();
  });
});

describe('HostProber politeness', () => {
  it('never probes public addresses, bounds concurrency and backs off silent hosts', async () => {
    const calls: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const prober = new HostProber({
      concurrency: 2,
      silentBaseMs: 60_000,
      detect: async (url) => {
        calls.push(url);
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        return null;
      },
    });
    prober.seen('8.8.8.8');
    prober.seen('2001:db8::1');
    prober.seen('192.168.7.7');
    await new Promise((r) => setTimeout(r, 200));
    expect(calls.length).toBe(5);
    expect(calls.every((u) => u.startsWith('http://192.168.7.7:'))).toBe(true);
    expect(maxInFlight).toBe(2);
    prober.seen('192.168.7.7'); // silent: backed off, not probed again
    await new Promise((r) => setTimeout(r, 50));
    expect(calls.length).toBe(5);
    prober.stop();
  });
});

describe('ServiceBrowser', () => {
  // A socket that records questions and lets the test deliver answers, on fake time.
  function fakeSocket() {
    const asked: { at: number; type: string; name: string }[] = [];
    const sock = Object.assign(new EventEmitter(), {
      ready: Promise.resolve(),
      query: async (qs: { name: string; type: string }[]) => void qs.forEach((q) => asked.push({ at: Date.now(), ...q })),
    });
    const answer = (answers: object[]) => sock.emit('response', { answers, additionals: [] }, { address: '10.0.0.9' });
    return { sock, asked, answer };
  }
  const ptr = { name: '_llm._tcp.local', type: 'PTR', ttl: 4500, data: 'desk._llm._tcp.local' };
  const srv = { name: 'desk._llm._tcp.local', type: 'SRV', ttl: 120, flush: true, data: { target: 'desk.local', port: 8080 } };
  const txt = { name: 'desk._llm._tcp.local', type: 'TXT', ttl: 4500, flush: true, data: [Buffer.from('path=/v1')] };
  const a = { name: 'desk.local', type: 'A', ttl: 120, flush: true, data: '10.0.0.9' };

  it('asks again for a missing record ever less often, and no more once answered', async () => {
    vi.useFakeTimers({ now: 0 });
    try {
      const { sock, asked, answer } = fakeSocket();
      const b = new ServiceBrowser(sock as never, { types: ['_llm._tcp'] });
      const found: string[] = [];
      b.on('found', (s) => found.push(s.name));
      b.start();
      await vi.advanceTimersByTimeAsync(0);
      answer([ptr]);
      await vi.advanceTimersByTimeAsync(20_000);
      const srvAsks = () => asked.filter((q) => q.type === 'SRV').map((q) => q.at);
      const gaps = srvAsks().map((t, i, all) => (i ? t - all[i - 1] : t));
      expect(gaps.map((g) => Math.round(g / 100) * 100)).toEqual([0, 1000, 2000, 4000, 8000]);
      answer([srv, txt, a]);
      expect(found).toEqual(['desk']);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(srvAsks()).toHaveLength(5);
      b.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps a service through refreshes and drops what a flushed set no longer holds', async () => {
    vi.useFakeTimers({ now: 0 });
    try {
      const { sock, answer } = fakeSocket();
      const b = new ServiceBrowser(sock as never, { types: ['_llm._tcp'] });
      const events: string[] = [];
      b.on('found', (s) => events.push(`found ${s.addresses}`));
      b.on('updated', (s) => events.push(`updated ${s.addresses}`));
      b.on('lost', (s) => events.push(`lost ${s.name}`));
      b.start();
      answer([ptr, srv, txt, a]);
      for (let i = 0; i < 5; i++) {
        await vi.advanceTimersByTimeAsync(30_000);
        answer([ptr, srv, txt, a]); // the same records again, new lifetimes
      }
      await vi.advanceTimersByTimeAsync(2000);
      answer([{ ...a, data: '10.0.0.10' }]); // the host moved: the flushed A set holds only the new address
      expect(events).toEqual(['found 10.0.0.9', 'updated 10.0.0.10']);
      b.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
