import http from 'node:http';
import type https from 'node:https';
import { createRequire } from 'node:module';

export interface GetOptions {
  timeoutMs: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** Larger answers are refused: a probe never needs much (exo's /state is the largest). */
const MAX_BYTES = 8 * 1024 * 1024;

export interface GetResult {
  status: number;
  text: string;
}

// Probes run every few seconds per node, so their connections are kept open between polls.
const AGENT_OPTIONS = { keepAlive: true, maxFreeSockets: 4, scheduling: 'lifo', timeout: 5000 } as const;
const httpAgent = new http.Agent(AGENT_OPTIONS);
// node:https (node:tls and its share of OpenSSL with it) is loaded for the first https node only.
let secure: { mod: typeof https; agent: https.Agent } | undefined;
function loadHttps(): { mod: typeof https; agent: https.Agent } {
  if (!secure) {
    const mod = createRequire(import.meta.url)('node:https') as typeof https;
    secure = { mod, agent: new mod.Agent(AGENT_OPTIONS) };
  }
  return secure;
}

/**
 * A GET for the node probes, over node:http rather than fetch: the first fetch in a process
 * loads undici, which costs about 15 MB of resident memory for good and a 40 MB peak, a third of
 * what Hearth may use on a 512 MB board. Redirects are not followed. Resolves null on any
 * failure (refused, timed out, aborted, too large).
 */
export async function probeGet(url: string, o: GetOptions): Promise<GetResult | null> {
  const first = await once(url, o, true);
  // A kept-alive socket the server closed meanwhile is not a failure of the node: ask again.
  return first === 'stale' ? ((await once(url, o, false)) as GetResult | null) : first;
}

function once(href: string, o: GetOptions, keepAlive: boolean): Promise<GetResult | null | 'stale'> {
  return new Promise((resolve) => {
    let url: URL;
    try {
      url = new URL(href);
    } catch {
      return resolve(null);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || o.signal?.aborted) return resolve(null);
    const { mod, agent } = url.protocol === 'https:' ? loadHttps() : { mod: http, agent: httpAgent };
    let settled = false;
    const finish = (v: GetResult | null | 'stale') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      resolve(v);
    };
    const req = mod.get(url, { headers: o.headers, agent: keepAlive ? agent : false }, (res) => {
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (b: Buffer) => {
        size += b.length;
        if (size > MAX_BYTES) {
          req.destroy();
          finish(null);
        } else parts.push(b);
      });
      res.on('end', () => finish({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }));
      res.on('error', () => finish(null));
      res.on('close', () => finish(null));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(null);
    }, o.timeoutMs);
    const onAbort = () => {
      req.destroy();
      finish(null);
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e: NodeJS.ErrnoException) => finish(req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE') ? 'stale' : null));
  });
}
