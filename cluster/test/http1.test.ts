import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Error, Http1Pool, type Http1Request, type Http1Response, type PoolOptions } from '../http1.ts';

// The client against real sockets on 127.0.0.1. Most servers here are raw node:net servers, so
// each test decides the exact bytes and how they are cut into network reads.

const HOST = '127.0.0.1';

// ---- helpers -------------------------------------------------------------------------------

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** `p`, or a rejection once `ms` have passed: no wait in this file is unbounded. */
function within<T>(p: Promise<T>, ms = 2000, what = 'the awaited event'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** One turn of the event loop: bytes written before it reach the client in a read of their own. */
const turn = () => new Promise<void>((r) => setImmediate(r));

interface ServerRequest {
  method: string;
  path: string;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: Buffer;
}

/** One connection accepted by a test server. */
interface Peer {
  socket: net.Socket;
  /** Requests read on this connection so far. */
  requests: ServerRequest[];
  /** Resolves when the socket has closed. */
  closed: Promise<void>;
  isClosed: boolean;
}

interface TestServer {
  url: string;
  port: number;
  peers: Peer[];
  close(): Promise<void>;
}

type Answer = (req: ServerRequest, peer: Peer, n: number) => void | Promise<void>;

/**
 * A TCP server on 127.0.0.1 that reads each request (head plus Content-Length body) and calls
 * `answer`, which writes the raw response bytes itself; `n` counts requests on the connection.
 */
async function rawServer(answer: Answer, onConnect?: (peer: Peer) => void): Promise<TestServer> {
  const peers: Peer[] = [];
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    const peer: Peer = { socket, requests: [], closed: once(socket, 'close').then(() => undefined), isClosed: false };
    void peer.closed.then(() => (peer.isClosed = true));
    peers.push(peer);
    onConnect?.(peer);
    let buf = Buffer.alloc(0);
    socket.on('data', (b) => {
      buf = Buffer.concat([buf, b]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [start, ...lines] = buf.toString('latin1', 0, end).split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
        const length = Number(headers['content-length'] ?? 0);
        if (buf.length < end + 4 + length) return;
        const [method, path] = start.split(' ');
        const req = { method, path, headers, body: buf.subarray(end + 4, end + 4 + length) };
        buf = buf.subarray(end + 4 + length);
        peer.requests.push(req);
        void answer(req, peer, peer.requests.length);
      }
    });
  });
  server.listen(0, HOST);
  await within(once(server, 'listening'));
  const port = (server.address() as net.AddressInfo).port;
  const close = async () => {
    for (const p of peers) p.socket.destroy();
    server.close();
    await within(once(server, 'close'), 2000, 'server close').catch(() => {});
  };
  cleanups.push(close);
  return { url: `http://${HOST}:${port}`, port, peers, close };
}

/** A server that answers every request with the same bytes, written at once. */
const fixedServer = (bytes: string | Buffer) => rawServer((_req, peer) => void peer.socket.write(bytes));

/** Writes `pieces` one per event-loop turn, so that each lands in a client read of its own. */
async function writeApart(socket: net.Socket, pieces: (string | Buffer)[]): Promise<void> {
  for (let i = 0; i < pieces.length; i++) {
    if (i) await turn();
    if (socket.destroyed) return;
    socket.write(pieces[i]);
  }
}

/** Writes `pieces` 15 ms apart: each lands in a read of its own even while nobody reads the body yet. */
async function writeSpaced(socket: net.Socket, pieces: string[]): Promise<void> {
  for (const piece of pieces) {
    if (socket.destroyed) return;
    socket.write(piece);
    await sleep(15);
  }
}

function pool(url: string, opts?: PoolOptions): Http1Pool {
  const p = new Http1Pool(url, opts);
  cleanups.push(() => p.close());
  return p;
}

/** A GET with short limits; resolves at the response head. */
function get(p: Http1Pool, over: Partial<Http1Request> = {}, signal?: AbortSignal): Promise<Http1Response> {
  return within(p.request({ method: 'GET', path: '/', headers: {}, connectTimeoutMs: 1000, headTimeoutMs: 1000, ...over }, signal), 3000, 'the response head');
}

interface Body {
  body: Buffer;
  /** How many times `data` was called. */
  calls: number;
}

/** Reads `res` into a list of its pieces, then 'END' or 'ERROR <message>'; `onPiece` runs after each is listed. */
/** Waits until the whole body has been read off the connection (queued, as nobody reads it yet). */
async function untilComplete(res: Http1Response): Promise<void> {
  for (let i = 0; i < 400 && !res.complete; i++) await sleep(5);
  expect(res.complete).toBe(true);
}

function record(res: Http1Response, onPiece?: () => void): string[] {
  const events: string[] = [];
  res.read({
    data(b) {
      events.push(b.toString());
      onPiece?.();
    },
    end: () => events.push('END'),
    error: (e) => events.push(`ERROR ${e.message}`),
  });
  return events;
}

/** Reads the whole body (copying each piece, as the client requires); rejects with the handler's error. */
function readAll(res: Http1Response, ms = 2000): Promise<Body> {
  return within(
    new Promise<Body>((resolve, reject) => {
      const parts: Buffer[] = [];
      res.read({
        data: (b) => void parts.push(Buffer.from(b)),
        end: () => resolve({ body: Buffer.concat(parts), calls: parts.length }),
        error: reject,
      });
    }),
    ms,
    'the end of the body',
  );
}

const text = async (res: Http1Response) => (await readAll(res)).body.toString('latin1');

/** The Http1Error code `p` rejects with. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(e).toBeInstanceOf(Http1Error);
  return (e as Http1Error).code;
}

/** A response head: status line, the given header lines, blank line. */
const head = (status: number, ...lines: string[]) => `HTTP/1.1 ${status} Whatever\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
/** A chunked body of `parts`, each one chunk, with lower-case hex sizes. */
const chunked = (...parts: string[]) => parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('') + '0\r\n\r\n';
const TE = 'Transfer-Encoding: chunked';

/** A port on 127.0.0.1 where nothing listens. */
async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, HOST);
  await within(once(s, 'listening'));
  const port = (s.address() as net.AddressInfo).port;
  s.close();
  await within(once(s, 'close'));
  return port;
}

/**
 * A listening socket on 127.0.0.1 that completes no more handshakes: its accept queue (backlog
 * 1) is filled and the worker owning it blocks its event loop, so it never accepts. Linux drops
 * the SYNs that follow, so a connect to it hangs, entirely on loopback.
 */
async function unansweringListener(): Promise<{ port: number; close(): Promise<void> }> {
  const wake = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const net = require('node:net');
     const { parentPort, workerData } = require('node:worker_threads');
     const server = net.createServer((s) => s.destroy());
     server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(workerData, 0, 0, 10000);
       server.close();
     });`,
    { eval: true, workerData: wake },
  );
  const [port] = (await within(once(worker, 'message'))) as [number];
  const fillers = Array.from({ length: 4 }, () => net.connect(port, HOST).on('error', () => {}));
  // Give the fillers time to take the queue (the ones past it stay in SYN-SENT).
  await within(
    (async () => {
      while (fillers.filter((f) => !f.connecting).length < 2) await sleep(5);
    })(),
    2000,
    'the accept queue filling up',
  );
  const close = async () => {
    Atomics.store(wake, 0, 1);
    Atomics.notify(wake, 0);
    for (const f of fillers) f.destroy();
    await worker.terminate();
  };
  cleanups.push(close);
  return { port, close };
}

// ---- framing -------------------------------------------------------------------------------

describe('response framing', () => {
  it('reads a chunked body from one read: chunk extensions, upper-case hex, trailers, header fields', async () => {
    const big = 'abcdefghijklmnopqrstuvwxyz'; // 0x1A bytes
    const answer =
      head(200, TE, 'X-Twice: a', 'x-twice: b', 'Content-Type: text/plain') +
      '5;foo=bar\r\nHello\r\n' +
      `1A\r\n${big}\r\n` +
      '3 ; name="q;v"\r\n, w\r\n' +
      '0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n';
    const srv = await fixedServer(answer);
    const res = await get(pool(srv.url));
    expect(res.status).toBe(200);
    expect(res.headers['x-twice']).toBe('a, b');
    expect(res.headers['content-type']).toBe('text/plain');
    expect(await text(res)).toBe(`Hello${big}, w`);
    expect(res.complete).toBe(true);
  });

  it('chunked answer split in two at every byte boundary gives the same body, on one connection', async () => {
    const body = ['Hello', ' ', 'chunked', ' world', '!'.repeat(17)];
    const bytes = Buffer.from(head(200, TE, 'X-A: 1') + '5;foo=bar\r\nHello\r\n1\r\n \r\n7\r\nchunked\r\n6\r\n world\r\n11\r\n' + '!'.repeat(17) + '\r\n0\r\nTrailer: t\r\n\r\n');
    let cut = 0;
    const srv = await rawServer((_req, peer) => writeApart(peer.socket, [bytes.subarray(0, cut), bytes.subarray(cut)]));
    const p = pool(srv.url);
    for (cut = 1; cut < bytes.length; cut++) {
      const res = await get(p);
      expect((await readAll(res)).body.toString(), `cut at ${cut}`).toBe(body.join(''));
    }
    expect(srv.peers.length).toBe(1);
  });

  it('chunked answer written byte by byte gives the same body', async () => {
    const bytes = Buffer.from(head(200, TE) + '5;foo=bar\r\nHello\r\nA\r\n, chunked!\r\n0\r\nX-T: 1\r\n\r\n');
    const srv = await rawServer((_req, peer) => writeApart(peer.socket, [...bytes].map((b) => Buffer.of(b))));
    const res = await get(pool(srv.url));
    const { body, calls } = await readAll(res);
    expect(body.toString()).toBe('Hello, chunked!');
    // About one call per body byte: the reads really were split (the kernel may merge a few).
    expect(calls).toBeGreaterThan(body.length / 2);
  });

  it('chunked answer after 100 Continue, split at every byte boundary, keeps the interim head out of the body', async () => {
    const bytes = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n' + head(201, TE) + chunked('abc', 'defg'));
    let cut = 0;
    const srv = await rawServer((_req, peer) => writeApart(peer.socket, [bytes.subarray(0, cut), bytes.subarray(cut)]));
    const p = pool(srv.url);
    for (cut = 1; cut < bytes.length; cut++) {
      const res = await get(p);
      expect(res.status, `cut at ${cut}`).toBe(201);
      expect(await text(res), `cut at ${cut}`).toBe('abcdefg');
    }
    expect(srv.peers.length).toBe(1);
  });

  it('Content-Length body in one read and split at every byte boundary', async () => {
    const payload = 'x'.repeat(40) + '\r\n\r\n0\r\n' + 'y'.repeat(20);
    const bytes = Buffer.from(head(200, `Content-Length: ${payload.length}`) + payload);
    let cut = bytes.length;
    const srv = await rawServer((_req, peer) => writeApart(peer.socket, [bytes.subarray(0, cut), bytes.subarray(cut)]));
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe(payload);
    for (cut = 1; cut < bytes.length; cut++) expect(await text(await get(p)), `cut at ${cut}`).toBe(payload);
    expect(srv.peers.length).toBe(1);
  });

  it('Content-Length: 0, 204 and 304 end at the head, and the connection is reused', async () => {
    const answers = [head(200, 'Content-Length: 0'), head(204), head(304, 'Content-Length: 99'), head(200, 'Content-Length: 2') + 'ok'];
    const srv = await rawServer((_req, peer, n) => void peer.socket.write(answers[n - 1]));
    const p = pool(srv.url);
    for (const status of [200, 204, 304]) {
      const res = await get(p);
      expect(res.status).toBe(status);
      expect(res.complete).toBe(true);
      expect(await readAll(res)).toEqual({ body: Buffer.alloc(0), calls: 0 });
    }
    expect(await text(await get(p))).toBe('ok');
    expect(srv.peers.length).toBe(1);
  });

  it('reads a body delimited by the end of the connection, and does not reuse that connection', async () => {
    const srv = await rawServer(async (_req, peer) => {
      await writeApart(peer.socket, [head(200, 'Content-Type: text/plain'), 'first ', 'second ', 'third']);
      await turn();
      peer.socket.end();
    });
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe('first second third');
    expect(await text(await get(p))).toBe('first second third');
    expect(srv.peers.length).toBe(2);
  });

  it('skips interim answers (100, 103 with headers) in one read and in separate reads', async () => {
    const interim = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n';
    const real = head(200, 'Content-Length: 5', 'X-Real: yes') + 'hello';
    const layouts = [[interim + real], [interim, real], ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Early Hints\r\n\r\n', real], ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Real: yes\r\n\r\nhel', 'lo']];
    let layout: string[] = [];
    const srv = await rawServer((_req, peer) => writeApart(peer.socket, layout));
    const p = pool(srv.url);
    for (layout of layouts) {
      const res = await get(p);
      expect(res.status).toBe(200);
      expect(res.headers['x-real']).toBe('yes');
      expect(res.headers.link).toBeUndefined();
      expect(await text(res)).toBe('hello');
    }
    expect(srv.peers.length).toBe(1);
  });

  it('sends method, path, Host, keep-alive, the given headers, Content-Length and the body', async () => {
    const srv = await fixedServer(head(200, 'Content-Length: 0'));
    const body = Buffer.from('{"a":"é"}');
    const res = await get(pool(srv.url), { method: 'POST', path: '/v1/chat/completions?x=1', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer k' }, body });
    expect(res.status).toBe(200);
    const [req] = srv.peers[0].requests;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/v1/chat/completions?x=1');
    expect(req.headers).toMatchObject({ host: `${HOST}:${srv.port}`, connection: 'keep-alive', 'content-type': 'application/json', authorization: 'Bearer k', 'content-length': String(body.length) });
    expect(req.body.equals(body)).toBe(true);
  });

  it('talks to a node:http server: POST bodies echoed over one kept-alive connection', async () => {
    let connections = 0;
    const server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (b: Buffer) => parts.push(b));
      req.on('end', () => {
        res.setHeader('Content-Type', 'text/plain');
        // Alternately chunked (no length) and with a length.
        if (req.url === '/len') res.setHeader('Content-Length', Buffer.concat(parts).length);
        res.write(Buffer.concat(parts).subarray(0, 3));
        res.end(Buffer.concat(parts).subarray(3));
      });
    });
    server.on('connection', () => connections++);
    server.listen(0, HOST);
    await within(once(server, 'listening'));
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const p = pool(`http://${HOST}:${(server.address() as net.AddressInfo).port}`);
    for (const path of ['/chunked', '/len', '/chunked', '/len']) {
      const res = await get(p, { method: 'POST', path, body: Buffer.from(`body for ${path}`) });
      expect(res.headers['transfer-encoding']).toBe(path === '/chunked' ? 'chunked' : undefined);
      expect(await text(res)).toBe(`body for ${path}`);
    }
    expect(connections).toBe(1);
  });
});

// ---- keep-alive ----------------------------------------------------------------------------

describe('keep-alive pool', () => {
  it('two sequential requests reuse one TCP connection', async () => {
    const srv = await fixedServer(head(200, TE) + chunked('hi'));
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe('hi');
    expect(await text(await get(p))).toBe('hi');
    expect(srv.peers.length).toBe(1);
    expect(srv.peers[0].requests.length).toBe(2);
  });

  it('closes and does not reuse a connection answered with Connection: close', async () => {
    const srv = await fixedServer(head(200, 'Content-Length: 2', 'Connection: close') + 'ok');
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe('ok');
    await within(srv.peers[0].closed, 1000, 'the client closing the connection');
    expect(await text(await get(p))).toBe('ok');
    expect(srv.peers.length).toBe(2);
  });

  it('does not reuse an HTTP/1.0 answer, unless it says keep-alive', async () => {
    const srv = await rawServer((req, peer) => {
      const keep = req.path === '/keep' ? 'Connection: keep-alive\r\n' : '';
      peer.socket.write(`HTTP/1.0 200 OK\r\n${keep}Content-Length: 2\r\n\r\nok`);
    });
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe('ok');
    expect(await text(await get(p, { path: '/keep' }))).toBe('ok');
    expect(await text(await get(p, { path: '/keep' }))).toBe('ok');
    expect(srv.peers.map((c) => c.requests.length)).toEqual([1, 2]);
    expect(srv.peers[0].isClosed).toBe(true);
  });

  it('closes an idle connection after idleMs, and the next request opens a new one', async () => {
    const srv = await fixedServer(head(200, 'Content-Length: 2') + 'ok');
    const p = pool(srv.url, { maxIdle: 4, idleMs: 80 });
    await text(await get(p));
    const t0 = performance.now();
    await within(srv.peers[0].closed, 1000, 'the idle connection closing');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(60);
    await text(await get(p));
    expect(srv.peers.length).toBe(2);
  });

  it('keeps at most maxIdle connections', async () => {
    let release!: () => void;
    const go = new Promise<void>((r) => (release = r));
    const srv = await rawServer(async (_req, peer) => {
      await go;
      peer.socket.write(head(200, 'Content-Length: 1') + 'x');
    });
    const p = pool(srv.url, { maxIdle: 1, idleMs: 5000 });
    const heads = [get(p), get(p), get(p)];
    await within((async () => {
      while (srv.peers.flatMap((c) => c.requests).length < 3) await sleep(5);
    })());
    release();
    for (const res of await Promise.all(heads)) await readAll(res);
    await within((async () => {
      while (srv.peers.filter((c) => c.isClosed).length < 2) await sleep(5);
    })(), 1000, 'the surplus connections closing');
    expect(srv.peers.length).toBe(3);
    await text(await get(p));
    expect(srv.peers.length).toBe(3);
  });

  it('does not reuse a connection that sent bytes past the end of an answer', async () => {
    const answers = [
      head(200, 'Content-Length: 2') + 'okEXTRA',
      head(200, TE) + chunked('ok') + 'EXTRA',
      head(204) + 'EXTRA',
    ];
    for (const answer of answers) {
      const srv = await fixedServer(answer);
      const p = pool(srv.url);
      expect(await text(await get(p)), answer).toBe(answer.includes('204') ? '' : 'ok');
      await within(srv.peers[0].closed, 1000, `the client dropping the connection after ${JSON.stringify(answer)}`);
      expect(await text(await get(p))).toBe(answer.includes('204') ? '' : 'ok');
      expect(srv.peers.length).toBe(2);
    }
  });

  it('drops an idle connection that receives bytes, and the next request uses a new one', async () => {
    const srv = await rawServer((_req, peer, n) => {
      peer.socket.write(head(200, 'Content-Length: 2') + 'ok');
      if (n === 1) setTimeout(() => peer.socket.write('HTTP/1.1 200 OK\r\n'), 20);
    });
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe('ok');
    await within(srv.peers[0].closed, 1000, 'the client dropping the connection');
    expect(await text(await get(p))).toBe('ok');
    expect(srv.peers.length).toBe(2);
  });
});

// ---- stale and closed connections ----------------------------------------------------------

describe('stale and closed connections', () => {
  it("rejects with 'stale' when a kept-alive connection closes at the next request; fresh: true then works", async () => {
    const srv = await rawServer((_req, peer, n) => {
      if (n === 1) peer.socket.write(head(200, 'Content-Length: 2') + 'ok');
      else peer.socket.destroy();
    });
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe('ok');
    expect(await codeOf(get(p))).toBe('stale');
    expect(await text(await get(p, { fresh: true }))).toBe('ok');
    expect(srv.peers.length).toBe(2);
  });

  it("rejects with 'stale' when the server closed right after its answer and the request went out before the close was seen", async () => {
    const srv = await rawServer((_req, peer, n) => void (n === 1 && peer.socket.end(head(200, 'Content-Length: 2') + 'ok')));
    const p = pool(srv.url);
    const res = await get(p);
    // `end` comes in the read that completes the body and the FIN in a read of its own; a
    // microtask runs between the two, once the connection is back in the pool.
    const next = await within(
      new Promise<{ head: Promise<Http1Response> }>((resolve, reject) =>
        res.read({ data() {}, end: () => queueMicrotask(() => resolve({ head: get(p) })), error: reject }),
      ),
    );
    expect(await codeOf(next.head)).toBe('stale');
    expect(srv.peers.length).toBe(1);
    expect(await text(await get(p, { fresh: true }))).toBe('ok');
  });

  it('opens a new connection when the close of an idle one was seen before the next request', async () => {
    const srv = await rawServer((_req, peer) => void peer.socket.end(head(200, 'Content-Length: 2') + 'ok'));
    const p = pool(srv.url);
    expect(await text(await get(p))).toBe('ok');
    await within(srv.peers[0].closed);
    await sleep(10);
    expect(await text(await get(p))).toBe('ok');
    expect(srv.peers.length).toBe(2);
  });

  it("rejects with 'closed', not 'stale', when a new connection closes without an answer", async () => {
    for (const close of [(s: net.Socket) => s.end(), (s: net.Socket) => s.destroy(), (s: net.Socket) => s.resetAndDestroy()]) {
      const srv = await rawServer((_req, peer) => void close(peer.socket));
      expect(await codeOf(get(pool(srv.url)))).toBe('closed');
    }
  });

  it("rejects with 'closed', not 'stale', when a reused connection closes after part of the head", async () => {
    const srv = await rawServer((_req, peer, n) => {
      if (n === 1) peer.socket.write(head(200, 'Content-Length: 2') + 'ok');
      else peer.socket.end('HTTP/1.1 200 OK\r\nContent-');
    });
    const p = pool(srv.url);
    await text(await get(p));
    expect(await codeOf(get(p))).toBe('closed');
  });
});

// ---- connecting and time limits ------------------------------------------------------------

describe('connect and time limits', () => {
  it("rejects with 'connect' when the connection is refused", async () => {
    const p = pool(`http://${HOST}:${await closedPort()}`);
    const e = await get(p).catch((e: Http1Error) => e);
    expect(e).toBeInstanceOf(Http1Error);
    expect((e as Http1Error).code).toBe('connect');
    expect((e as Http1Error).errno).toBe('ECONNREFUSED');
  });

  it('says which server failed in its message, and what failed without the host in detail (IPv6 too)', async (ctx) => {
    // A server on the IPv6 loopback that hangs up on every connection (skipped without ::1).
    const server = net.createServer((sock) => sock.destroy());
    const listening = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(0, '::1', () => resolve(true));
    });
    if (!listening) return ctx.skip();
    cleanups.push(() => server.close());
    const { port } = server.address() as net.AddressInfo;
    const e = (await get(pool(`http://[::1]:${port}`)).catch((e: Http1Error) => e)) as Http1Error;
    expect(e.code).toBe('closed');
    expect(e.message.startsWith(`[::1]:${port}: `)).toBe(true);
    expect(e.detail).toMatch(/^connection (lost|closed)/);
    expect(e.message).toBe(`[::1]:${port}: ${e.detail}`);
  });

  it("rejects with 'connect' when the handshake does not complete within connectTimeoutMs", async () => {
    const { port } = await unansweringListener();
    const p = pool(`http://${HOST}:${port}`);
    const t0 = performance.now();
    const e = await get(p, { connectTimeoutMs: 150, headTimeoutMs: 5000 }).catch((e: Http1Error) => e);
    expect(e).toBeInstanceOf(Http1Error);
    expect((e as Http1Error).code).toBe('connect');
    expect((e as Http1Error).message).toMatch(/timed out/);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it("rejects with 'timeout' when a server accepts and says nothing, new or reused connection", async () => {
    const srv = await rawServer((req, peer) => void (req.path === '/answered' && peer.socket.write(head(200, 'Content-Length: 0'))));
    const p = pool(srv.url);
    let t0 = performance.now();
    expect(await codeOf(get(p, { headTimeoutMs: 100 }))).toBe('timeout');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    expect(performance.now() - t0).toBeLessThan(600);
    await within(srv.peers[0].closed, 1000, 'the client closing the silent connection');

    await readAll(await get(p, { path: '/answered' }));
    t0 = performance.now();
    expect(await codeOf(get(p, { headTimeoutMs: 100 }))).toBe('timeout');
    expect(performance.now() - t0).toBeLessThan(600);
    expect(srv.peers.length).toBe(2);
  });

  it("the head limit is a silence limit: a slow head that keeps coming is not cut off", async () => {
    const bytes = head(200, 'Content-Length: 2', 'X-A: 1', 'X-B: 2') + 'ok';
    const srv = await rawServer(async (_req, peer) => {
      for (let i = 0; i < bytes.length; i += 8) {
        await sleep(15);
        peer.socket.write(bytes.slice(i, i + 8));
      }
    });
    expect(await text(await get(pool(srv.url), { headTimeoutMs: 60 }))).toBe('ok');
  });

  it('setIdleTimeout fires after silence in the middle of a body', async () => {
    const srv = await fixedServer(head(200, TE) + '3\r\nabc\r\n');
    const res = await get(pool(srv.url));
    const got: string[] = [];
    const t0 = performance.now();
    const fired = within(new Promise<number>((resolve) => res.setIdleTimeout(80, () => resolve(performance.now() - t0))), 1000, 'the idle callback');
    res.read({ data: (b) => void got.push(b.toString()), end: () => got.push('END'), error: () => got.push('ERROR') });
    const after = await fired;
    expect(after).toBeGreaterThanOrEqual(70);
    expect(after).toBeLessThan(500);
    expect(got).toEqual(['abc']);
  });

  it('setIdleTimeout does not fire while bytes keep coming more often than the limit', async () => {
    const srv = await rawServer(async (_req, peer) => {
      peer.socket.write(head(200, TE));
      for (let i = 0; i < 12; i++) {
        await sleep(20);
        peer.socket.write(`1\r\n${i % 10}\r\n`);
      }
      peer.socket.write('0\r\n\r\n');
    });
    const res = await get(pool(srv.url));
    let idle = 0;
    res.setIdleTimeout(100, () => idle++);
    expect(await text(res)).toBe('012345678901');
    await sleep(150);
    expect(idle).toBe(0);
  });

  it('the silence limit restarts on resume: time spent paused is not the server\'s silence', async () => {
    const srv = await rawServer(async (_req, peer) => {
      peer.socket.write(head(200, TE) + '3\r\nabc\r\n');
      // 150 ms paused + 110 ms after the resume: more than the limit since the last byte,
      // well under it since the reader asked for more.
      await sleep(260);
      peer.socket.write(chunked('def'));
    });
    const res = await get(pool(srv.url));
    let idle = 0;
    res.setIdleTimeout(200, () => idle++);
    const got: string[] = [];
    const ended = new Promise<void>((resolve) =>
      res.read({
        data: (b) => {
          got.push(b.toString());
          if (got.length === 1) {
            res.pause();
            setTimeout(() => res.resume(), 150);
          }
        },
        end: () => resolve(),
        error: () => got.push('ERROR'),
      }),
    );
    await within(ended, 1000, 'the end of the body');
    expect(got).toEqual(['abc', 'def']);
    expect(idle).toBe(0);
  });
});

// ---- flow control --------------------------------------------------------------------------

describe('pause and resume', () => {
  it('delivers the chunks that arrive in one read as one piece, framing removed', async () => {
    let more!: () => void;
    const later = new Promise<void>((r) => (more = r));
    const srv = await rawServer(async (_req, peer) => {
      peer.socket.write(head(200, TE) + chunked('one', 'two', 'three').replace('0\r\n\r\n', ''));
      await later;
      peer.socket.write(chunked('four'));
    });
    const res = await get(pool(srv.url));
    const events = record(res, () => more());
    await sleep(50);
    expect(events).toEqual(['onetwothree', 'four', 'END']);
  });

  it('holds back later reads while paused, then delivers all in order, end last', async () => {
    let more!: () => void;
    const later = new Promise<void>((r) => (more = r));
    let paused!: () => void;
    const wasPaused = new Promise<void>((r) => (paused = r));
    const srv = await rawServer(async (_req, peer) => {
      peer.socket.write(head(200, TE) + chunked('one').replace('0\r\n\r\n', ''));
      await wasPaused;
      peer.socket.write(chunked('two', 'three').replace('0\r\n\r\n', ''));
      await later;
      peer.socket.write(chunked('four', 'five'));
    });
    const res = await get(pool(srv.url));
    const events: string[] = [];
    const ended = new Promise<void>((resolve, reject) =>
      res.read({
        data(b) {
          events.push(b.toString());
          if (events.length === 1) {
            res.pause();
            paused();
          }
        },
        end() {
          events.push('END');
          resolve();
        },
        error: reject,
      }),
    );
    await sleep(30);
    more();
    await sleep(50);
    expect(events).toEqual(['one']);
    res.resume();
    await within(ended);
    expect(events[0]).toBe('one');
    expect(events.at(-1)).toBe('END');
    expect(events.slice(1, -1).join('')).toBe('twothreefourfive');
  });

  it('holds a body that arrived whole while paused, end included, until resume', async () => {
    const srv = await fixedServer(head(200, 'Content-Length: 6') + 'abcdef');
    const res = await get(pool(srv.url));
    res.pause();
    const events = record(res);
    await sleep(30);
    expect(events).toEqual([]);
    res.resume();
    expect(events).toEqual(['abcdef', 'END']);
  });

  it('a body delimited by the close, paused across the close, ends after all of it on resume', async () => {
    let ended!: () => void;
    const serverEnded = new Promise<void>((r) => (ended = r));
    const srv = await rawServer(async (_req, peer) => {
      await writeApart(peer.socket, [head(200), 'one ', 'two']);
      await sleep(20);
      peer.socket.end(' three', ended);
    });
    const res = await get(pool(srv.url));
    const events: string[] = [];
    const bodyEnded = new Promise<void>((resolve, reject) =>
      res.read({
        data(b) {
          events.push(b.toString());
          if (events.length === 1) res.pause();
        },
        end: () => resolve(void events.push('END')),
        error: reject,
      }),
    );
    await within(serverEnded, 1000, 'the server ending the body');
    await sleep(20);
    expect(events).toEqual(['one ']);
    res.resume();
    await within(bodyEnded);
    expect(events.join('')).toBe('one two threeEND');
  });

  it('pausing again inside a data call made by resume stops the delivery there', async () => {
    // Pieces read before the consumer starts reading are queued one per read.
    const srv = await rawServer((_req, peer) => void writeSpaced(peer.socket, [head(200, TE), chunked('a').replace('0\r\n\r\n', ''), chunked('b').replace('0\r\n\r\n', ''), chunked('c')]));
    const res = await get(pool(srv.url));
    await untilComplete(res);
    res.pause();
    const events = record(res, () => res.pause());
    await sleep(30);
    for (const expected of [['a'], ['a', 'b'], ['a', 'b', 'c'], ['a', 'b', 'c', 'END']]) {
      res.resume();
      expect(events).toEqual(expected);
    }
  });

  it('pause and resume after the body is complete leave the reused connection alone', async () => {
    let n = 0;
    const srv = await rawServer((_req, peer) =>
      void (n++ === 0 ? writeSpaced(peer.socket, [head(200, TE), chunked('a').replace('0\r\n\r\n', ''), chunked('b')]) : peer.socket.write(head(200, TE) + chunked('a', 'b'))),
    );
    const p = pool(srv.url);
    const first = await get(p);
    await untilComplete(first);
    first.pause();
    // A consumer whose sink is full pauses again, though the body is complete by now.
    const events = record(first, () => first.pause());
    await sleep(20);
    first.resume();
    expect(events).toEqual(['a']);
    // The connection went back to the pool when the body was complete: the next request on it
    // must be read even though the first response is paused.
    expect(await text(await get(p, { headTimeoutMs: 500 }))).toBe('ab');
    first.resume();
    first.resume();
    expect(events).toEqual(['a', 'b', 'END']);
    expect(srv.peers.length).toBe(1);
  });
});

// ---- destroy, discard, abort ---------------------------------------------------------------

describe('destroy, discard and abort', () => {
  it('destroy(err) reaches a paused handler whose body arrived whole but is still queued', async () => {
    const srv = await fixedServer(head(200, TE) + chunked('one', 'two'));
    const res = await get(pool(srv.url));
    res.pause();
    const events = record(res);
    await sleep(30);
    expect(res.complete).toBe(true);
    expect(events).toEqual([]);
    res.destroy(new Error('client went away'));
    expect(events).toEqual(['ERROR client went away']);
    res.resume();
    expect(events).toEqual(['ERROR client went away']);
  });

  it('refuses a header value or path with a line break before opening a connection', async () => {
    const srv = await fixedServer(head(200, 'Content-Length: 0'));
    const p = pool(srv.url);
    expect(await codeOf(get(p, { headers: { Authorization: 'Bearer key\r\nX-Injected: 1' } }))).toBe('malformed');
    expect(await codeOf(get(p, { path: '/v1/models HTTP/1.1\r\nX: y' }))).toBe('malformed');
    await sleep(20);
    expect(srv.peers.length).toBe(0);
  });

  it('destroy(err) mid-body hands err to the body handler and closes the connection', async () => {
    let destroyed!: () => void;
    const wasDestroyed = new Promise<void>((r) => (destroyed = r));
    const srv = await rawServer(async (_req, peer) => {
      peer.socket.write(head(200, TE) + chunked('one').replace('0\r\n\r\n', ''));
      await wasDestroyed;
      if (!peer.socket.destroyed) peer.socket.write(chunked('two').replace('0\r\n\r\n', ''));
    });
    const p = pool(srv.url);
    const res = await get(p);
    const boom = new Error('enough');
    const events: string[] = [];
    const err = await within(
      new Promise<Error>((resolve) =>
        res.read({
          data(b) {
            events.push(b.toString());
            res.destroy(boom);
            destroyed();
          },
          end: () => events.push('END'),
          error: resolve,
        }),
      ),
    );
    expect(err).toBe(boom);
    expect(events).toEqual(['one']);
    await within(srv.peers[0].closed, 1000, 'the server seeing the close');
    await sleep(10);
    expect(events).toEqual(['one']);
    expect(res.complete).toBe(false);
  });

  it('destroy() without an error silences the handler; a later request opens a new connection', async () => {
    const srv = await rawServer((_req, peer) => void peer.socket.write(head(200, 'Content-Length: 10') + 'abc'));
    const p = pool(srv.url);
    const res = await get(p);
    const events = record(res);
    await sleep(10);
    res.destroy();
    await within(srv.peers[0].closed);
    await sleep(10);
    expect(events).toEqual(['abc']);
    await get(p);
    expect(srv.peers.length).toBe(2);
  });

  it('destroy and setIdleTimeout after the body ended leave the connection alone for the next request', async () => {
    const srv = await rawServer((_req, peer) => void peer.socket.write(head(200, TE) + chunked('x')));
    const p = pool(srv.url);
    const first = await get(p);
    await readAll(first);
    first.destroy(new Error('late cleanup'));
    first.setIdleTimeout(10, () => {});
    expect(await text(await get(p))).toBe('x');
    expect(srv.peers.length).toBe(1);
    expect(srv.peers[0].isClosed).toBe(false);
  });

  it('discard(limit) reads the rest of the body away and the connection is reused', async () => {
    let rest!: () => void;
    const later = new Promise<void>((r) => (rest = r));
    const srv = await rawServer(async (_req, peer, n) => {
      if (n > 1) return void peer.socket.write(head(200, 'Content-Length: 4') + 'next');
      peer.socket.write(head(200, TE) + chunked('data: [DONE]').replace('0\r\n\r\n', ''));
      await later;
      peer.socket.write('6\r\nignore\r\n0\r\n\r\n');
    });
    const p = pool(srv.url);
    const res = await get(p);
    const events = record(res, () => res.discard(1000));
    await sleep(20);
    rest();
    await within((async () => {
      while (!res.complete) await sleep(5);
    })(), 1000, 'the discarded body to end');
    expect(await text(await get(p))).toBe('next');
    expect(events).toEqual(['data: [DONE]']);
    expect(srv.peers.length).toBe(1);
  });

  it('discard(limit) while paused resumes reading, and the queued part is dropped', async () => {
    const srv = await rawServer(async (_req, peer, n) => {
      if (n > 1) return void peer.socket.write(head(200, 'Content-Length: 4') + 'next');
      peer.socket.write(head(200, TE) + '1\r\na\r\n1\r\nb\r\n');
      await sleep(20);
      peer.socket.write('1\r\nc\r\n0\r\n\r\n');
    });
    const p = pool(srv.url);
    const res = await get(p);
    res.pause();
    const events = record(res);
    await sleep(10);
    res.discard(1000);
    await within((async () => {
      while (!res.complete) await sleep(5);
    })(), 1000, 'the discarded body to end');
    expect(events).toEqual([]);
    expect(await text(await get(p))).toBe('next');
    expect(srv.peers.length).toBe(1);
  });

  it('discard(limit) drops the connection when the rest does not come within the limit', async () => {
    const srv = await rawServer((_req, peer) => void peer.socket.write(head(200, 'Content-Length: 100') + 'partial'));
    const p = pool(srv.url);
    const res = await get(p);
    const t0 = performance.now();
    res.discard(60);
    await within(srv.peers[0].closed, 1000, 'the discarded connection closing');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(50);
    await get(p);
    expect(srv.peers.length).toBe(2);
  });

  it("an abort signal rejects a pending request with 'aborted' and closes its connection", async () => {
    const srv = await rawServer(() => {});
    const ac = new AbortController();
    const pending = get(pool(srv.url), { headTimeoutMs: 5000 }, ac.signal);
    setTimeout(() => ac.abort(), 20);
    expect(await codeOf(pending)).toBe('aborted');
    await within(srv.peers[0].closed, 1000, 'the server seeing the close');
  });

  it("an already aborted signal rejects with 'aborted' and neither opens nor spends a connection", async () => {
    const srv = await fixedServer(head(200, 'Content-Length: 2') + 'ok');
    const p = pool(srv.url);
    expect(await codeOf(get(p, {}, AbortSignal.abort()))).toBe('aborted');
    await sleep(20);
    expect(srv.peers.length).toBe(0);
    await text(await get(p));
    expect(await codeOf(get(p, {}, AbortSignal.abort()))).toBe('aborted');
    expect(await text(await get(p))).toBe('ok');
    expect(srv.peers.length).toBe(1);
  });

  it('an abort after the head does not touch the response', async () => {
    const srv = await fixedServer(head(200, 'Content-Length: 2') + 'ok');
    const ac = new AbortController();
    const res = await get(pool(srv.url), {}, ac.signal);
    ac.abort();
    expect(await text(res)).toBe('ok');
  });
});

// ---- malformed and broken answers ----------------------------------------------------------

describe('malformed and broken answers', () => {
  it.each([
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.6\r\nsome banner\r\n\r\n'],
    ['HTTP/2 status line', 'HTTP/2 200\r\n\r\n'],
    ['a status that is not three digits', 'HTTP/1.1 2000 OK\r\n\r\n'],
    ['an unsupported transfer-encoding', head(200, 'Transfer-Encoding: gzip') + 'xx'],
    ['a bad Content-Length', head(200, 'Content-Length: 12abc') + 'xx'],
    ['a negative Content-Length', head(200, 'Content-Length: -1') + 'xx'],
  ])("rejects with 'malformed' for %s", async (_name, answer) => {
    const srv = await fixedServer(answer);
    expect(await codeOf(get(pool(srv.url)))).toBe('malformed');
    await within(srv.peers[0].closed, 1000, 'the client dropping the connection');
  });

  it.each([
    ['a server that speaks first and then waits', (s: net.Socket) => void s.write('220 smtp.example ESMTP ready\r\n')],
    ['garbage followed by a close', (s: net.Socket) => void s.end('<html>oops</html>\n')],
  ])("rejects a non-HTTP answer without a blank line with 'malformed' at once: %s", async (_name, act) => {
    const srv = await rawServer((_req, peer) => act(peer.socket));
    const t0 = performance.now();
    expect(await codeOf(get(pool(srv.url), { headTimeoutMs: 2000 }))).toBe('malformed');
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it("rejects a head over 64 KB with 'malformed', whether it ever ends or not", async () => {
    const filler = `X-Filler: ${'f'.repeat(1000)}`;
    for (const answer of [head(200, 'Content-Length: 2', ...Array(100).fill(filler)) + 'ok', 'HTTP/1.1 200 OK\r\n' + `${filler}\r\n`.repeat(200)]) {
      const srv = await rawServer((_req, peer) => void peer.socket.write(answer));
      expect(await codeOf(get(pool(srv.url)))).toBe('malformed');
    }
  });

  it('accepts a head just under 64 KB', async () => {
    const filler = `X-Filler: ${'f'.repeat(1000)}`;
    const srv = await fixedServer(head(200, 'Content-Length: 2', ...Array(60).fill(filler)) + 'ok');
    expect(await text(await get(pool(srv.url)))).toBe('ok');
  });

  it.each([
    ['a bad chunk size', head(200, TE) + '3\r\nabc\r\nzz\r\nxx\r\n0\r\n\r\n', 'abc'],
    ['a chunk size line over the limit', head(200, TE) + '3\r\nabc\r\n' + '1'.repeat(5000), 'abc'],
    ['chunk data longer than its size', head(200, TE) + '3\r\nabcdef\r\n0\r\n\r\n', 'abc'],
    ['a chunk size with a sign', head(200, TE) + '-3\r\nabc\r\n0\r\n\r\n', ''],
  ])("hands 'malformed' to the body handler for %s", async (_name, answer, before) => {
    const srv = await rawServer((_req, peer) => void peer.socket.write(answer));
    const res = await get(pool(srv.url));
    expect(res.status).toBe(200);
    const parts: string[] = [];
    const err = await within(new Promise<unknown>((resolve) => res.read({ data: (b) => void parts.push(b.toString()), end: () => resolve('ended'), error: resolve })));
    expect(err).toBeInstanceOf(Http1Error);
    expect((err as Http1Error).code).toBe('malformed');
    expect(parts.join('')).toBe(before);
    await within(srv.peers[0].closed, 1000, 'the client dropping the connection');
  });

  it.each([
    ['mid-chunked body', head(200, TE) + '5\r\nhello\r\n6\r\nwor', 'hellowor'],
    ['between chunks', head(200, TE) + '5\r\nhello\r\n', 'hello'],
    ['in the trailers', head(200, TE) + '5\r\nhello\r\n0\r\nX-T: 1\r\n', 'hello'],
    ['mid Content-Length body', head(200, 'Content-Length: 10') + 'hello', 'hello'],
  ])("hands 'closed' to the body handler when the server closes %s", async (_name, answer, before) => {
    const srv = await rawServer((_req, peer) => void writeApart(peer.socket, [answer]).then(turn).then(() => peer.socket.end()));
    const res = await get(pool(srv.url));
    const parts: string[] = [];
    const err = await within(new Promise<unknown>((resolve) => res.read({ data: (b) => void parts.push(b.toString()), end: () => resolve('ended'), error: resolve })));
    expect((err as Http1Error).code).toBe('closed');
    expect(parts.join('')).toBe(before);
    expect(res.complete).toBe(false);
  });

  it('settles every truncated or corrupted answer: a rejection, a body error or a body, never a hang', async () => {
    const good = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n' + head(200, TE, 'X-A: b') + '5;e=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n');
    // Deterministic variations: every truncation, and a byte replaced at every position.
    const answers: Buffer[] = [];
    for (let i = 0; i < good.length; i++) answers.push(good.subarray(0, i));
    for (let i = 0; i < good.length; i++) answers.push(Buffer.concat([good.subarray(0, i), Buffer.from([[0x00, 0x0a, 0x0d, 0x3a, 0x7a, 0xff][i % 6]]), good.subarray(i + 1)]));
    let current: Buffer = Buffer.alloc(0);
    const srv = await rawServer((_req, peer) => void peer.socket.end(current));
    const p = pool(srv.url);
    const outcomes = new Map<string, number>();
    for (current of answers) {
      let outcome: string;
      try {
        const res = await get(p, { fresh: true, headTimeoutMs: 300 });
        outcome = await readAll(res, 1000).then(
          () => 'body',
          (e: Http1Error) => `body error ${e.code}`,
        );
      } catch (e) {
        expect(e, JSON.stringify(current.toString('latin1'))).toBeInstanceOf(Http1Error);
        outcome = `rejected ${(e as Http1Error).code}`;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    expect([...outcomes.keys()].every((o) => /^(body|body error (closed|malformed)|rejected (closed|malformed))$/.test(o)), JSON.stringify([...outcomes])).toBe(true);
  });
});

describe('https', () => {
  /** A self-signed certificate for 127.0.0.1, made with openssl; undefined where openssl is missing. */
  function selfSigned(): { key: string; cert: string } | undefined {
    const dir = mkdtempSync(join(tmpdir(), 'hearth-tls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    } catch {
      return undefined;
    }
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  }

  async function httpsServer(pair: { key: string; cert: string }, handler: http.RequestListener): Promise<{ url: string; connections(): number }> {
    let connections = 0;
    const srv = https.createServer(pair, handler);
    srv.on('secureConnection', () => connections++);
    srv.listen(0, HOST);
    await once(srv, 'listening');
    cleanups.push(() => new Promise((r) => srv.close(r)), () => srv.closeAllConnections());
    return { url: `https://${HOST}:${(srv.address() as net.AddressInfo).port}`, connections: () => connections };
  }

  const pair = selfSigned();

  it.skipIf(!pair)('streams a chunked answer over TLS, with pause and resume, and reuses the connection', async () => {
    const srv = await httpsServer(pair!, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let i = 0;
      const tick = () => (i < 5 ? (res.write(`data: ${i++}\n\n`), setTimeout(tick, 5)) : res.end('data: [DONE]\n\n'));
      tick();
    });
    const p = pool(srv.url, { maxIdle: 4, idleMs: 2000, tls: { ca: pair!.cert } });
    for (let round = 0; round < 2; round++) {
      const res = await get(p);
      res.pause();
      setTimeout(() => res.resume(), 30);
      expect((await readAll(res)).body.toString()).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: [DONE]\n\n');
      await sleep(5);
    }
    expect(srv.connections()).toBe(1);
  });

  it.skipIf(!pair)('fails with a clear connect error when the certificate is not trusted', async () => {
    const srv = await httpsServer(pair!, (_req, res) => res.end('hi'));
    const err = await within(get(pool(srv.url)).then(() => undefined, (e: Http1Error) => e));
    expect(err).toBeInstanceOf(Http1Error);
    expect(err!.code).toBe('connect');
    expect(err!.message).toMatch(/SELF_SIGNED|certificate/i);
  });
});
