import net from 'node:net';
import { createRequire } from 'node:module';
import type tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { CancelSignal } from './cancel.ts';

// node:tls and its share of OpenSSL are loaded only for an https node: most homes have none.
let tlsModule: typeof tls | undefined;
const loadTls = (): typeof tls => (tlsModule ??= createRequire(import.meta.url)('node:tls') as typeof tls);

/**
 * A small HTTP/1.1 client with a keep-alive pool per node, for the requests Hearth forwards.
 *
 * Written by hand because it is the hottest path in Hearth: every streamed token of every
 * answer passes through it. node:http costs a parser callback, a Readable stream and a fresh
 * Buffer per network read; here a read lands in one reusable buffer and the chunked framing is
 * taken off in place, which makes a streamed answer about a fifth cheaper than through a bare
 * node:http pipe. It speaks only what Hearth needs: one request at a time per connection, a
 * body sent whole, responses framed by chunked encoding, Content-Length or the end of the
 * connection. Body bytes handed to a consumer are valid only during the call: copy to keep.
 */

export type Http1ErrorCode =
  /** The connection was refused or could not be opened in time. */
  | 'connect'
  /** A kept-alive connection was closed by the server before any byte of the answer: resend. */
  | 'stale'
  /** The connection broke or closed before the answer was complete. */
  | 'closed'
  /** The answer is not HTTP/1.x as this client reads it. */
  | 'malformed'
  /** Nothing arrived for longer than allowed. */
  | 'timeout'
  /** The request was abandoned by its caller. */
  | 'aborted';

export class Http1Error extends Error {
  constructor(
    readonly code: Http1ErrorCode,
    message: string,
    readonly errno?: string,
    /** The message without the node's host, for callers that name the node their own way. */
    readonly detail = message,
  ) {
    super(message);
  }
}

export interface Http1Request {
  method: 'GET' | 'POST';
  /** Path and query, e.g. `/v1/chat/completions`. */
  path: string;
  /** Extra header lines (name to value); Host, Content-Length and Connection are set here. */
  headers: Record<string, string>;
  body?: Buffer;
  connectTimeoutMs: number;
  /** Longest silence before the response head is complete. */
  headTimeoutMs: number;
  /** Open a new connection even when a pooled one is idle. */
  fresh?: boolean;
}

export interface BodyHandler {
  /** A piece of the body, framing removed. Valid only during the call. */
  data(bytes: Buffer): void;
  /** The body is complete. */
  end(): void;
  /** The body broke off: the connection closed, timed out or sent bad framing, or `destroy(err)`. */
  error(err: Error): void;
}

const MAX_HEAD = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
// One read buffer for every plain connection: reads are handled synchronously and nothing
// keeps a view of it past the call.
let shared: Buffer | undefined;
const readBuffer = () => (shared ??= Buffer.allocUnsafe(64 * 1024));

const enum Frame {
  Chunked,
  Length,
  UntilClose,
  None,
}
const enum Chunk {
  Size,
  Data,
  DataEnd,
  Trailer,
}

/** A response whose head has arrived; its body is read through `read`. */
export class Http1Response {
  /** The body has been read to its end. */
  complete = false;
  private handler: BodyHandler | undefined;
  private queued: Buffer[] = [];
  private paused = false;
  /** Finished or failed: the connection may already carry another request, so leave it alone. */
  private ended = false;
  private dropped = false;
  private failed: Error | undefined;

  constructor(
    readonly status: number,
    /** Lower-case names; repeated headers joined with ", ". */
    readonly headers: Record<string, string>,
    private readonly conn: Connection,
  ) {}

  /** Start receiving the body (once). Bytes that came with the head are delivered first. */
  read(h: BodyHandler): void {
    this.handler = h;
    this.flush();
  }

  pause(): void {
    this.paused = true;
    if (!this.ended) this.conn.socket.pause();
  }

  /** Reading again; the silence limit counts from now, as a pause is the reader's silence, not the server's. */
  resume(): void {
    this.paused = false;
    this.conn.restartIdle();
    this.flush();
    if (!this.paused && !this.ended) this.conn.socket.resume();
  }

  /** Calls `onIdle` after `ms` without a byte from the server (0: never). */
  setIdleTimeout(ms: number, onIdle: () => void): void {
    if (!this.ended) this.conn.setIdle(ms, onIdle);
  }

  /** Drop the connection (it is not reused); with `err`, the body handler receives it now. */
  destroy(err?: Error): void {
    const h = this.dropped ? undefined : this.handler;
    this.dropped = true;
    this.handler = undefined;
    this.queued = [];
    if (!this.ended) this.conn.destroy();
    // A handler still set has not heard the end yet (the body may be complete but queued).
    if (err && h) h.error(err);
  }

  /**
   * No more interest in the body: the rest is read and thrown away so the connection can be
   * reused, or the connection is dropped after `limitMs` without a byte.
   */
  discard(limitMs: number): void {
    this.dropped = true;
    this.handler = undefined;
    this.queued = [];
    if (this.ended) return;
    if (this.paused) this.resume();
    this.conn.setIdle(limitMs, () => this.conn.destroy());
  }

  /** @internal */ deliver(bytes: Buffer): void {
    if (this.dropped) return;
    if (this.handler && !this.paused && this.queued.length === 0) this.handler.data(bytes);
    else this.queued.push(Buffer.from(bytes));
  }

  /** @internal */ finish(err?: Error): void {
    if (err) this.failed = err;
    else this.complete = true;
    this.ended = true;
    this.flush();
  }

  private flush(): void {
    const h = this.handler;
    if (!h) return;
    while (this.queued.length && !this.paused && this.handler === h) h.data(this.queued.shift()!);
    if (this.ended && !this.paused && this.queued.length === 0 && this.handler === h) {
      this.handler = undefined;
      if (this.failed) h.error(this.failed);
      else h.end();
    }
  }
}

/** One socket to one server, carrying one request at a time. */
class Connection {
  readonly socket: net.Socket;
  private connected = false;
  /** Served at least one request before: a failure before any byte may be a stale socket. */
  reused = false;
  private dead = false;
  private gotBytes = false;
  private head: Buffer | undefined;
  private res: Http1Response | undefined;
  private pending: { resolve(r: Http1Response): void; reject(e: Http1Error): void } | undefined;
  private frame = Frame.None;
  private left = 0;
  private chunk = Chunk.Size;
  private line = '';
  private keepAlive = true;
  private idleMs = 0;
  private onIdle: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  private lastRead = 0;
  private headTimeoutMs = 0;
  private readonly connectTimer: NodeJS.Timeout;

  constructor(
    private readonly origin: URL,
    connectTimeoutMs: number,
    private readonly onFree: (c: Connection) => void,
    private readonly onGone: (c: Connection) => void,
    tlsOptions?: tls.ConnectionOptions,
  ) {
    const host = origin.hostname.replace(/^\[|\]$/g, '');
    const port = Number(origin.port) || (origin.protocol === 'https:' ? 443 : 80);
    if (origin.protocol === 'https:') {
      this.socket = loadTls().connect({ ...tlsOptions, host, port, servername: net.isIP(host) ? undefined : host });
      this.socket.on('data', (b: Buffer) => this.bytes(b));
    } else {
      this.socket = net.connect({
        host,
        port,
        onread: {
          // The buffer itself, not a function that returns it: Node would call that after every read.
          buffer: readBuffer(),
          callback: (n: number, buf: Uint8Array) => {
            this.bytes((buf as Buffer).subarray(0, n));
            return true;
          },
        },
      } as net.NetConnectOpts);
    }
    this.socket.setNoDelay(true);
    this.socket.once(origin.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
      this.connected = true;
      clearTimeout(this.connectTimer);
      if (this.pending && !this.gotBytes) this.armHeadLimit();
    });
    this.connectTimer = setTimeout(() => this.fail(this.error('connect', `connect timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs);
    this.socket.on('error', (e: NodeJS.ErrnoException) => this.fail(this.errorFor(e)));
    this.socket.on('end', () => this.closed());
    this.socket.on('close', () => this.closed());
  }

  send(r: Http1Request): Promise<Http1Response> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.gotBytes = false;
      this.res = undefined;
      this.head = undefined;
      this.keepAlive = true;
      let text = `${r.method} ${r.path} HTTP/1.1\r\nHost: ${this.origin.host}\r\nConnection: keep-alive\r\n`;
      for (const k in r.headers) text += `${k}: ${r.headers[k]}\r\n`;
      if (r.body) text += `Content-Length: ${r.body.length}\r\n`;
      text += '\r\n';
      const headBytes = Buffer.from(text, 'latin1');
      this.headTimeoutMs = r.headTimeoutMs;
      this.socket.write(r.body ? Buffer.concat([headBytes, r.body]) : headBytes);
      // Until connected, the connect limit runs; after that, the head limit.
      if (this.connected) this.armHeadLimit();
      else this.setIdle(0, undefined);
    });
  }

  private armHeadLimit(): void {
    const ms = this.headTimeoutMs;
    this.setIdle(ms, () => this.fail(this.error('timeout', `sent nothing for ${ms} ms`)));
  }

  /**
   * Arms (or with 0 disarms) the silence limit; every read restarts it. One timer, re-armed
   * lazily when it fires, so a read costs a clock reading rather than a timer update.
   */
  setIdle(ms: number, onIdle: (() => void) | undefined): void {
    this.idleMs = ms;
    this.onIdle = onIdle;
    this.lastRead = performance.now();
    if (!(ms > 0 && onIdle)) return;
    if (this.timer && this.timerDue <= this.lastRead + ms) return;
    clearTimeout(this.timer);
    this.arm(ms);
  }

  /** The silence limit counts from now. */
  restartIdle(): void {
    this.lastRead = performance.now();
  }

  private arm(ms: number): void {
    this.timerDue = performance.now() + ms;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.idleMs || !this.onIdle || this.dead) return;
      const quiet = performance.now() - this.lastRead;
      if (quiet >= this.idleMs - 1) this.onIdle();
      // Whole milliseconds: Node keeps a timer list per distinct duration.
      else this.arm(Math.ceil(this.idleMs - quiet));
    }, ms);
    this.timer.unref?.();
  }

  /** An error about this connection's server: "HOST: detail". */
  private error(code: Http1ErrorCode, detail: string, errno?: string): Http1Error {
    return new Http1Error(code, `${this.origin.host}: ${detail}`, errno, detail);
  }

  /** Close the connection; whoever waits on it hears `err`. */
  destroy(err: Http1Error = new Http1Error('aborted', 'connection dropped')): void {
    this.fail(err);
  }

  private errorFor(e: NodeJS.ErrnoException): Http1Error {
    const code = e.code ?? '';
    if (!this.connected) return this.error('connect', code || e.message, code);
    if (this.reused && !this.gotBytes && (code === 'ECONNRESET' || code === 'EPIPE')) return new Http1Error('stale', 'kept-alive connection was closed', code);
    return this.error('closed', `connection lost (${code || e.message})`, code);
  }

  private closed(): void {
    if (this.dead) return;
    if (this.res && !this.res.complete && this.frame === Frame.UntilClose) {
      this.frame = Frame.None;
      this.keepAlive = false;
      this.done();
    }
    if (this.pending && this.reused && !this.gotBytes) return this.fail(new Http1Error('stale', 'kept-alive connection was closed'));
    this.fail(this.error('closed', 'connection closed before the answer was complete'));
  }

  /** The connection is unusable: drop it, then tell whoever waits on it. */
  private fail(err: Http1Error): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.timer);
    clearTimeout(this.connectTimer);
    this.socket.destroy();
    this.onGone(this);
    const p = this.pending;
    const res = this.res;
    this.pending = undefined;
    this.res = undefined;
    if (p) p.reject(err);
    else if (res && !res.complete) res.finish(err);
  }

  private bytes(b: Buffer): void {
    if (this.dead) return;
    this.lastRead = performance.now();
    if (!this.pending && !this.res) return this.fail(new Http1Error('malformed', 'bytes from an idle connection'));
    this.gotBytes = true;
    let at = 0;
    if (!this.res) {
      at = this.readHead(b);
      if (at < 0) return;
    }
    if (at < b.length) this.body(b, at);
  }

  /** Returns where the body starts in `b`, or -1 when the head is not complete yet (or failed). */
  private readHead(b: Buffer): number {
    const prev = this.head?.length ?? 0;
    const all = prev ? Buffer.concat([this.head!, b]) : b;
    const end = all.indexOf('\r\n\r\n', Math.max(0, prev - 3), 'latin1');
    // A read can cross the limit and hold the blank line too: `end` is checked, not just `all`.
    if (end < 0 || end > MAX_HEAD) {
      // What does not begin like a status line fails now rather than at the head limit.
      if (!'HTTP/'.startsWith(all.toString('latin1', 0, 5))) this.fail(this.error('malformed', 'did not answer in HTTP/1.x'));
      else if (all.length > MAX_HEAD) this.fail(this.error('malformed', `sent a response head over ${MAX_HEAD} bytes`));
      else this.head = Buffer.from(all);
      return -1;
    }
    this.head = undefined;
    const lines = all.toString('latin1', 0, end).split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0]);
    if (!m) {
      this.fail(this.error('malformed', 'did not answer in HTTP/1.x'));
      return -1;
    }
    const status = Number(m[2]);
    const bodyAt = end + 4 - prev;
    if (status >= 100 && status < 200) {
      // An interim answer (100 Continue, 103 Early Hints): the real one follows.
      if (bodyAt >= b.length) return -1;
      const at = this.readHead(Buffer.from(b.subarray(bodyAt)));
      return at < 0 ? -1 : at + bodyAt;
    }
    const headers: Record<string, string> = {};
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':');
      if (colon <= 0) continue;
      const k = lines[i].slice(0, colon).trim().toLowerCase();
      const v = lines[i].slice(colon + 1).trim();
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
    const conn = (headers.connection ?? '').toLowerCase();
    this.keepAlive = m[1] === '1' ? !/\bclose\b/.test(conn) : /\bkeep-alive\b/.test(conn);
    const te = (headers['transfer-encoding'] ?? '').toLowerCase();
    if (status === 204 || status === 304) this.frame = Frame.None;
    else if (te) {
      if (!/(^|,)\s*chunked\s*$/.test(te)) {
        this.fail(this.error('malformed', `sent a transfer-encoding this client cannot read: ${te}`));
        return -1;
      }
      this.frame = Frame.Chunked;
      this.chunk = Chunk.Size;
      this.line = '';
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (!/^\d+$/.test(headers['content-length']) || !Number.isSafeInteger(n)) {
        this.fail(this.error('malformed', 'sent a bad content-length'));
        return -1;
      }
      this.frame = n ? Frame.Length : Frame.None;
      this.left = n;
    } else {
      this.frame = Frame.UntilClose;
      this.keepAlive = false;
    }
    const res = new Http1Response(status, headers, this);
    this.res = res;
    const p = this.pending!;
    this.pending = undefined;
    // The head limit no longer applies; the consumer sets its own.
    this.setIdle(0, undefined);
    p.resolve(res);
    if (this.frame === Frame.None) this.done();
    return bodyAt;
  }

  private body(b: Buffer, at: number): void {
    const res = this.res;
    // Bytes after an answer without a body (204, 304, length 0): out of step, not reused.
    if (!res) return this.destroy();
    if (this.frame === Frame.UntilClose) return res.deliver(at ? b.subarray(at) : b);
    if (this.frame === Frame.Length) {
      const n = Math.min(this.left, b.length - at);
      this.left -= n;
      res.deliver(b.subarray(at, at + n));
      if (this.left === 0 && this.res === res) this.done();
      // Bytes beyond the answer: the connection is out of step, so it is not reused.
      if (at + n < b.length) this.destroy();
      return;
    }
    // Chunked: size line, data, CRLF; a zero size ends it, after optional trailer lines. The
    // data of every chunk in this read is handed on in one piece: a streamed answer's events
    // often arrive several to a read, and one delivery means one parse and one write to the
    // client for all of them. The first chunk's data stays where it is (most reads hold one
    // event); the data of later ones is moved up in place to follow it.
    let from = -1;
    let out = -1;
    let bad: string | undefined;
    let complete = false;
    while (at < b.length) {
      if (this.chunk === Chunk.Data) {
        const n = Math.min(this.left, b.length - at);
        if (from < 0) from = out = at;
        else if (out !== at) b.copy(b, out, at, at + n);
        out += n;
        at += n;
        this.left -= n;
        if (this.left === 0) this.chunk = Chunk.DataEnd;
        continue;
      }
      const past = this.line === '' ? this.frameLineFast(b, at) : -1;
      if (past >= 0) {
        at = past;
        continue;
      }
      const nl = b.indexOf(10, at);
      const piece = b.toString('latin1', at, nl < 0 ? b.length : nl);
      if (nl < 0) {
        this.line += piece;
        if (this.line.length > MAX_CHUNK_LINE) bad = 'sent a bad chunk';
        break;
      }
      const line = (this.line + piece).replace(/\r$/, '');
      this.line = '';
      at = nl + 1;
      if (this.chunk === Chunk.DataEnd) {
        if (line !== '') {
          bad = 'sent a bad chunk';
          break;
        }
        this.chunk = Chunk.Size;
      } else if (this.chunk === Chunk.Size) {
        const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
        if (!m) {
          bad = 'sent a bad chunk size';
          break;
        }
        this.left = parseInt(m[1], 16);
        this.chunk = this.left === 0 ? Chunk.Trailer : Chunk.Data;
      } else if (line === '') {
        // The blank line after the trailers: the answer is complete.
        complete = true;
        break;
      }
    }
    if (from >= 0 && out > from) {
      res.deliver(b.subarray(from, out));
      if (this.res !== res) return;
    }
    if (bad) this.fail(this.error('malformed', bad));
    else if (complete) {
      this.done();
      if (at < b.length) this.destroy();
    }
  }

  /**
   * The common framing lines (a data chunk's closing CRLF, a bare hex size and CRLF) read
   * straight from the bytes, as this runs for every streamed event; anything else (extensions,
   * a line split across reads, trailers) takes the general path. Returns the offset past the
   * line, or -1 for the general path.
   */
  private frameLineFast(b: Buffer, at: number): number {
    if (this.chunk === Chunk.DataEnd) {
      if (b[at] !== 13 || b[at + 1] !== 10) return -1;
      this.chunk = Chunk.Size;
      return at + 2;
    }
    if (this.chunk !== Chunk.Size) return -1;
    let n = 0;
    let i = at;
    for (; i < b.length && i - at < 12; i++) {
      const c = b[i];
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) break;
      n = n * 16 + d;
    }
    if (i === at || b[i] !== 13 || b[i + 1] !== 10) return -1;
    this.left = n;
    this.chunk = n === 0 ? Chunk.Trailer : Chunk.Data;
    return i + 2;
  }

  /** The answer is complete: hand the connection back for reuse, or close it. */
  private done(): void {
    const res = this.res;
    if (!res) return;
    this.res = undefined;
    this.setIdle(0, undefined);
    res.finish();
    if (this.dead) return;
    this.reused = true;
    if (this.keepAlive && !this.socket.destroyed) {
      this.socket.resume();
      this.onFree(this);
    } else this.destroy();
  }
}

export interface PoolOptions {
  /**
   * Idle connections kept per origin. As many as node:http's agent keeps by default: fewer
   * makes every wave of concurrent streams open new connections (about 8% more CPU at 64
   * streams). A server can only have as many idle ones as it accepted at once anyway.
   */
  maxIdle: number;
  /** An idle connection is closed after this long (servers close theirs after a few seconds). */
  idleMs: number;
  /** For https origins: extra TLS options, such as the CA of a node's own certificate. */
  tls?: tls.ConnectionOptions;
}

/** Keep-alive connections to one origin, reused most-recent first. */
export class Http1Pool {
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly origin: URL;

  constructor(
    origin: string,
    private readonly opts: PoolOptions = { maxIdle: 256, idleMs: 4000 },
  ) {
    this.origin = new URL(origin);
  }

  /**
   * Send a request; resolves at the response head. Rejects with an Http1Error; `stale` means a
   * reused connection was found closed before any answer, and the request may be sent again
   * with `fresh`.
   */
  request(r: Http1Request, signal?: CancelSignal): Promise<Http1Response> {
    if (signal?.aborted) return Promise.reject(new Http1Error('aborted', 'client went away'));
    // A line break in the path or a header would end it early and let the rest pose as headers.
    const badHeader = Object.keys(r.headers).find((k) => /[\r\n\0:]/.test(k) || /[\r\n\0]/.test(r.headers[k]));
    const bad = /[\r\n\0 ]/.test(r.path) ? 'path' : badHeader !== undefined ? `header ${badHeader}` : undefined;
    if (bad) return Promise.reject(new Http1Error('malformed', `the request's ${bad} holds a line break, NUL or other character not allowed there`));
    const c = (!r.fresh && this.idle.pop()) || this.open(r.connectTimeoutMs);
    const p = c.send(r);
    if (!signal) return p;
    const onAbort = () => c.destroy(new Http1Error('aborted', 'client went away'));
    signal.addEventListener('abort', onAbort, { once: true });
    return p.then(
      (res) => {
        signal.removeEventListener('abort', onAbort);
        return res;
      },
      (e: Http1Error) => {
        signal.removeEventListener('abort', onAbort);
        throw signal.aborted ? new Http1Error('aborted', 'client went away') : e;
      },
    );
  }

  close(): void {
    for (const c of [...this.all]) c.destroy();
  }

  private open(connectTimeoutMs: number): Connection {
    const c = new Connection(
      this.origin,
      connectTimeoutMs,
      (free) => {
        if (this.idle.length >= this.opts.maxIdle) return free.destroy();
        this.idle.push(free);
        free.setIdle(this.opts.idleMs, () => free.destroy());
      },
      (gone) => {
        this.all.delete(gone);
        const i = this.idle.indexOf(gone);
        if (i >= 0) this.idle.splice(i, 1);
      },
      this.opts.tls,
    );
    this.all.add(c);
    return c;
  }
}
