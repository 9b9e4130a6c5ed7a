import type { CancelSignal } from './cancel.ts';
import { Http1Error, Http1Pool, type Http1Response } from './http1.ts';
import type { NodeInfo } from './node.ts';

export type UpstreamResponse = Http1Response;

export interface UpstreamRequest {
  node: NodeInfo;
  /** Path below the node's API path, e.g. `/chat/completions`. */
  path: string;
  body: Buffer;
  signal: CancelSignal;
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

/** Requests to the nodes, over one keep-alive pool per node origin (see http1.ts for why by hand). */
export class UpstreamClient {
  private readonly pools = new Map<string, Http1Pool>();

  private poolFor(baseUrl: string): Http1Pool {
    let p = this.pools.get(baseUrl);
    if (!p) this.pools.set(baseUrl, (p = new Http1Pool(baseUrl)));
    return p;
  }

  /**
   * Send a POST and resolve with the response once its head arrives. A request that dies on a
   * reused keep-alive connection before any byte came back is resent once on a fresh one:
   * servers such as llama-server close the connection after every streamed reply while
   * advertising keep-alive, which is not a node failure.
   */
  async post(r: UpstreamRequest): Promise<UpstreamResponse> {
    const pool = this.poolFor(r.node.baseUrl);
    const headers: Record<string, string> = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' };
    if (r.node.apiKey) headers.Authorization = `Bearer ${r.node.apiKey}`;
    const req = { method: 'POST' as const, path: r.node.apiPath + r.path, headers, body: r.body, connectTimeoutMs: r.connectTimeoutMs, headTimeoutMs: r.firstByteTimeoutMs };
    try {
      try {
        return await pool.request(req, r.signal);
      } catch (e) {
        if (e instanceof Http1Error && e.code === 'stale') return await pool.request({ ...req, fresh: true }, r.signal);
        throw e;
      }
    } catch (e) {
      throw toFailure(r.node, e);
    }
  }

  close(): void {
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
  }
}

function toFailure(node: NodeInfo, e: unknown): UpstreamFailure {
  if (!(e instanceof Http1Error)) return new UpstreamFailure('reset', `${node.name}: ${(e as Error)?.message ?? e}`);
  switch (e.code) {
    case 'aborted':
      return new UpstreamFailure('aborted', 'client went away');
    case 'connect':
      return new UpstreamFailure('connect', `${node.name}: ${e.detail}`);
    case 'timeout':
      return new UpstreamFailure('timeout', `${node.name}: ${e.detail}`);
    default:
      return new UpstreamFailure('reset', `${node.name}: ${e.errno ?? e.detail}`);
  }
}
