/**
 * The load generator's client: streamed OpenAI chat completions over node:http with a keep-alive
 * agent, timing every content chunk, read as they come (`streamChat`) or afterwards
 * (`fetchStream` + `readStream`). Parsing is minimal on purpose (split events on blank lines,
 * JSON.parse each `data:`): the client must cost the same whatever is behind the URL.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';

export interface StreamResult {
  status: number;
  /** ms from sending the request to the first non-empty content delta. */
  ttft: number;
  /** ms from sending the request to the end of the response. */
  total: number;
  /** Arrival time (ms since the request was sent) of each content event. */
  chunkTimes: number[];
  content: string;
  /** `data: [DONE]` arrived. */
  done: boolean;
  /** An `error` event, a bad status or a broken connection. */
  error?: string;
  /** llama-server's `timings` (last chunk), when sent. */
  timings?: Record<string, number>;
  usage?: Record<string, number>;
  /** When the request was sent (performance.now()). */
  t0: number;
}

export function keepAliveAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
}

export interface StreamOptions {
  agent: http.Agent;
  /** Abort after this long (every load loop is bounded in time). */
  timeoutMs?: number;
  /** Called once, at the first content delta. */
  onFirst?: () => void;
  /** Keep every chunk's arrival time (default true). */
  keepChunkTimes?: boolean;
}

/**
 * Reads one stream's SSE text as it arrives, read by read, into a StreamResult: an event's time is
 * the time of the read that completed it.
 */
class EventReader {
  private buf = '';
  constructor(
    readonly result: StreamResult,
    private readonly keep: boolean,
    private readonly onFirst?: () => void,
  ) {}

  push(s: string, now: number): void {
    const r = this.result;
    this.buf += s;
    let cut: number;
    // Events end with a blank line; CRLF is tolerated.
    while ((cut = this.buf.search(/\r?\n\r?\n/)) >= 0) {
      const ev = this.buf.slice(0, cut);
      this.buf = this.buf.slice(cut + (this.buf[cut] === '\r' ? 4 : 2));
      let data = '';
      for (const line of ev.split(/\r?\n/)) if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(line[5] === ' ' ? 6 : 5);
      if (!data) continue;
      if (data === '[DONE]') {
        r.done = true;
        continue;
      }
      let j: any;
      try {
        j = JSON.parse(data);
      } catch {
        r.error ??= `malformed event: ${data.slice(0, 80)}`;
        continue;
      }
      if (j.error) {
        r.error ??= `error event: ${j.error.message ?? JSON.stringify(j.error)}`;
        continue;
      }
      if (r.status !== 200) continue;
      const c = j.choices?.[0]?.delta?.content;
      if (typeof c === 'string' && c.length > 0) {
        if (r.chunkTimes.length === 0) {
          r.ttft = now;
          this.onFirst?.();
        }
        if (this.keep || r.chunkTimes.length === 0) r.chunkTimes.push(now);
        r.content += c;
      }
      if (j.timings) r.timings = j.timings;
      if (j.usage) r.usage = j.usage;
    }
  }

  /** What is left unread (a body that is not SSE: an error answer). */
  get rest(): string {
    return this.buf;
  }
}

/** A stream as it arrived, not yet read: its bytes and when each read came (ms since sent). */
export interface RawStream {
  status: number;
  t0: number;
  total: number;
  reads: Buffer[];
  readTimes: number[];
  error?: string;
}

/**
 * POST `body` (stream forced on) to `${base}/v1/chat/completions` and keep the answer's reads
 * with their times, parsing nothing: `readStream` parses them afterwards. The overhead bench
 * uses this so that the client's parsing, which a real client does on its own machine, does not
 * compete for this machine's cores with the proxy under test and the node. The figures are the
 * same as `streamChat`'s; only when the parsing runs differs.
 */
export function fetchStream(base: string, body: Record<string, unknown>, o: Pick<StreamOptions, 'agent' | 'timeoutMs'>): Promise<RawStream> {
  return request(base, body, o, (raw) => (b, now) => {
    raw.reads.push(b);
    raw.readTimes.push(now);
  });
}

/** A result with nothing read yet, for the answer `raw` is receiving. */
const emptyResult = (raw: RawStream): StreamResult => ({ status: raw.status, ttft: NaN, total: raw.total, chunkTimes: [], content: '', done: false, t0: raw.t0 });

/** The StreamResult of a stream read by `fetchStream`: the same as `streamChat` would have given. */
export function readStream(raw: RawStream, keepChunkTimes = true): StreamResult {
  const events = new EventReader(emptyResult(raw), keepChunkTimes);
  const text = new StringDecoder('utf8');
  raw.reads.forEach((b, i) => events.push(text.write(b), raw.readTimes[i]));
  return finish(events, raw, text);
}

/** POST `body` (stream forced on) to `${base}/v1/chat/completions` and read the whole stream as it comes. */
export async function streamChat(base: string, body: Record<string, unknown>, o: StreamOptions): Promise<StreamResult> {
  const text = new StringDecoder('utf8');
  const reader = (raw: RawStream) => new EventReader(emptyResult(raw), o.keepChunkTimes ?? true, o.onFirst);
  let events: EventReader | undefined;
  const raw = await request(base, body, o, (raw) => {
    const e = (events = reader(raw));
    return (b, now) => e.push(text.write(b), now);
  });
  // No answer came (a refused connection, a time-out before the head): nothing was read.
  return finish(events ?? reader(raw), raw, text);
}

/** The result once the answer has ended: its last bytes read, its total time and its error. */
function finish(events: EventReader, raw: RawStream, text: StringDecoder): StreamResult {
  const r = events.result;
  r.total = raw.total;
  events.push(text.end(), raw.total);
  settle(r, raw.error, events.rest);
  return r;
}

/** The stream's error: the transport's, or a bad status with the start of its body. */
function settle(r: StreamResult, error: string | undefined, rest: string): void {
  const e = error ?? (r.status !== 200 ? `status ${r.status}: ${rest.slice(0, 200)}` : undefined);
  if (e && !r.error) r.error = e;
}

/** Sends the request and hands each read of the answer to the reader made once its head (and status) came. */
function request(base: string, body: Record<string, unknown>, o: Pick<StreamOptions, 'agent' | 'timeoutMs'>, reader: (raw: RawStream) => (b: Buffer, now: number) => void): Promise<RawStream> {
  const payload = Buffer.from(JSON.stringify({ ...body, stream: true }));
  const url = new URL(base + '/v1/chat/completions');
  return new Promise((resolve) => {
    const t0 = performance.now();
    const raw: RawStream = { status: 0, t0, total: NaN, reads: [], readTimes: [] };
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      raw.total = performance.now() - t0;
      if (error) raw.error = error;
      resolve(raw);
    };
    const timer = setTimeout(() => {
      req.destroy();
      finish(`timed out after ${o.timeoutMs} ms`);
    }, o.timeoutMs ?? 120_000);
    const req = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: o.agent, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
      (res) => {
        raw.status = res.statusCode ?? 0;
        const onRead = reader(raw);
        res.on('data', (b: Buffer) => onRead(b, performance.now() - t0));
        res.on('end', () => finish());
        res.on('error', (e) => finish(`response error: ${e.message}`));
        res.on('close', () => finish(res.complete ? undefined : 'connection closed mid-answer'));
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) => finish(`request error: ${e.code ?? e.message}`));
    req.end(payload);
  });
}

/** Run `fn(i)` for i in [0, n) with at most `concurrency` at a time; results in index order. */
export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

/** A small seeded PRNG (mulberry32): the same lengths and prompts every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mean gap between consecutive content chunks of one stream (ms), NaN under two chunks. */
export function meanGap(r: StreamResult): number {
  const t = r.chunkTimes;
  return t.length >= 2 ? (t[t.length - 1] - t[0]) / (t.length - 1) : NaN;
}
