/**
 * The load generator's client: streamed OpenAI chat completions over node:http with a keep-alive
 * agent, timing every content chunk. Parsing is minimal on purpose (split events on blank lines,
 * JSON.parse each `data:`): the client must cost the same whatever is behind the URL.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

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

/** POST `body` (stream forced on) to `${base}/v1/chat/completions` and read the whole stream. */
export function streamChat(base: string, body: Record<string, unknown>, o: StreamOptions): Promise<StreamResult> {
  const payload = Buffer.from(JSON.stringify({ ...body, stream: true }));
  const url = new URL(base + '/v1/chat/completions');
  const keep = o.keepChunkTimes ?? true;
  return new Promise((resolve) => {
    const t0 = performance.now();
    const r: StreamResult = { status: 0, ttft: NaN, total: NaN, chunkTimes: [], content: '', done: false, t0 };
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.total = performance.now() - t0;
      if (error && !r.error) r.error = error;
      resolve(r);
    };
    const timer = setTimeout(() => {
      req.destroy();
      finish(`timed out after ${o.timeoutMs} ms`);
    }, o.timeoutMs ?? 120_000);
    const req = http.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent: o.agent, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
      (res) => {
        r.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (s: string) => {
          const now = performance.now() - t0;
          buf += s;
          let cut: number;
          // Events end with a blank line; CRLF is tolerated.
          while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
            const ev = buf.slice(0, cut);
            buf = buf.slice(cut + (buf[cut] === '\r' ? 4 : 2));
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
                o.onFirst?.();
              }
              if (keep || r.chunkTimes.length === 0) r.chunkTimes.push(now);
              r.content += c;
            }
            if (j.timings) r.timings = j.timings;
            if (j.usage) r.usage = j.usage;
          }
        });
        res.on('end', () => finish(r.status !== 200 ? `status ${r.status}: ${buf.slice(0, 200)}` : undefined));
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
