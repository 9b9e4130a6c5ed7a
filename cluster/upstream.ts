import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { NodeInfo } from './node.ts';

export interface UpstreamRequest {
  node: NodeInfo;
  /** Path below the node's API path, e.g. `/chat/completions`. */
  path: string;
  body: Buffer;
  signal: AbortSignal;
  connectTimeoutMs: number;
  /** Idle limit until the response headers arrive. */
  firstByteTimeoutMs: number;
}

export class UpstreamFailure extends Error {
  constructor(
    readonly reason: 'connect' | 'timeout' | 'reset' | 'aborted',
    message: string,
  ) {
    super(message);
  }
}

/**
 * HTTP to the nodes over node:http with one keep-alive agent per node origin (node:http rather
 * than fetch: it is the cheapest per streamed chunk and tells whether a socket was reused).
 */
export class UpstreamClient {
  private readonly agents = new Map<string, http.Agent>();

  private agentFor(baseUrl: string): http.Agent {
    let a = this.agents.get(baseUrl);
    if (!a) {
      const opts = { keepAlive: true, keepAliveMsecs: 1000, maxFreeSockets: 32, scheduling: 'lifo' as const };
      a = baseUrl.startsWith('https:') ? new https.Agent(opts) : new http.Agent(opts);
      this.agents.set(baseUrl, a);
    }
    return a;
  }

  /**
   * Send a POST and resolve with the response once its headers arrive. A request that dies on a
   * reused keep-alive socket before any byte came back is resent once on a fresh connection:
   * servers such as llama-server close the socket after every streamed reply while advertising
   * keep-alive, which is not a node failure.
   */
  async post(r: UpstreamRequest): Promise<IncomingMessage> {
    try {
      return await this.once(r, this.agentFor(r.node.baseUrl));
    } catch (e) {
      if (e instanceof StaleSocket) return this.once(r, false);
      throw e;
    }
  }

  private readonly urls = new Map<string, URL>();

  private once(r: UpstreamRequest, agent: http.Agent | false): Promise<IncomingMessage> {
    const href = r.node.baseUrl + r.node.apiPath + r.path;
    let url = this.urls.get(href);
    if (!url) {
      if (this.urls.size > 1000) this.urls.clear();
      this.urls.set(href, (url = new URL(href)));
    }
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'content-length': r.body.length,
      accept: 'application/json, text/event-stream',
    };
    if (r.node.apiKey) headers.authorization = `Bearer ${r.node.apiKey}`;
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      if (r.signal.aborted) return reject(new UpstreamFailure('aborted', 'client went away'));
      const req = mod.request(url, { method: 'POST', headers, agent });
      let connectTimer: NodeJS.Timeout | undefined;
      const onAbort = () => req.destroy(new UpstreamFailure('aborted', 'client went away'));
      r.signal.addEventListener('abort', onAbort, { once: true });
      const done = () => {
        clearTimeout(connectTimer);
        r.signal.removeEventListener('abort', onAbort);
      };
      req.on('socket', (sock) => {
        if ((sock as any).connecting) {
          connectTimer = setTimeout(
            () => req.destroy(new UpstreamFailure('connect', `connect to ${r.node.name} timed out after ${r.connectTimeoutMs} ms`)),
            r.connectTimeoutMs,
          );
          sock.once('connect', () => clearTimeout(connectTimer));
        }
      });
      req.setTimeout(r.firstByteTimeoutMs, () =>
        req.destroy(new UpstreamFailure('timeout', `${r.node.name} sent nothing for ${r.firstByteTimeoutMs} ms`)),
      );
      req.on('response', (res) => {
        done();
        // The caller sets its own idle limit for the body; the abort listener moves to it.
        req.setTimeout(0);
        resolve(res);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        done();
        if (err instanceof UpstreamFailure) return reject(err);
        if (req.reusedSocket && agent && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) return reject(new StaleSocket());
        const reason = err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENOTFOUND' ? 'connect' : 'reset';
        reject(new UpstreamFailure(reason, `${r.node.name}: ${err.code ?? err.message}`));
      });
      req.end(r.body);
    });
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

class StaleSocket extends Error {}
