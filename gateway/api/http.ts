// The API's own HTTP layer, on node:http: a route table and JSON replies.
//
// Why not Hono here, as in the chat: on Node, Hono needs the web-standard Request, Response and
// Headers, and the first touch of any of them makes Node load its bundled undici, about 11 MiB
// of resident memory that nothing on the API path uses (issue 2 budgets 70 MB for 64 streams on
// a 512 MB board). The API is a fixed set of JSON endpoints whose hot path writes to Node's
// response directly anyway, so a table of a dozen routes is all it needs. The chat keeps Hono,
// loaded with its first page.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, badRequest } from './errors.ts';

export interface ApiCall {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
  /** Path parameters, percent-decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
}

export type ApiHandler = (call: ApiCall) => void | Promise<void>;

interface Route {
  method: string;
  /** Literal segments, `:name` (one segment) or `*name` (the rest, slashes included). */
  segments: string[];
  handler: ApiHandler;
}

/** Routes by method and path segments; HEAD is served by the GET route (Node sends no body). */
export class ApiRouter {
  private readonly routes: Route[] = [];
  /** Routes without parameters, by method and then path: most requests are found here at once. */
  private readonly fixed = new Map<string, Map<string, ApiHandler>>();

  get(pattern: string, handler: ApiHandler): this {
    return this.add('GET', pattern, handler);
  }

  post(pattern: string, handler: ApiHandler): this {
    return this.add('POST', pattern, handler);
  }

  delete(pattern: string, handler: ApiHandler): this {
    return this.add('DELETE', pattern, handler);
  }

  private add(method: string, pattern: string, handler: ApiHandler): this {
    const segments = pattern.split('/').slice(1);
    // Taken from the table only when no route before it would match its path: order still decides.
    const fixed = !segments.some((s) => s[0] === ':' || s[0] === '*') && !this.routes.some((r) => r.method === method && matchSegments(r.segments, segments));
    this.routes.push({ method, segments, handler });
    if (fixed) {
      let paths = this.fixed.get(method);
      if (!paths) this.fixed.set(method, (paths = new Map()));
      paths.set(pattern, handler);
    }
    return this;
  }

  /**
   * Serves a request: 404 when no route matches; an ApiError thrown by a handler is its answer;
   * anything else goes to `onError` (with the response possibly under way).
   */
  handle(incoming: IncomingMessage, outgoing: ServerResponse, { path, query }: Target, onError: (e: unknown) => void): void {
    const method = incoming.method ?? 'GET';
    const fail = (e: unknown) => (e instanceof ApiError && !outgoing.headersSent ? sendError(outgoing, e) : onError(e));
    try {
      const found = this.match(method, path);
      if (!found) return sendError(outgoing, notFoundError(method, path));
      const done = found.handler({ incoming, outgoing, params: found.params, query });
      if (done) done.catch(fail);
    } catch (e) {
      fail(e);
    }
  }

  /** The handler and its parameters, or undefined. Throws ApiError 400 for a malformed escape. */
  match(method: string, path: string): { handler: ApiHandler; params: Record<string, string> } | undefined {
    const want = method === 'HEAD' ? 'GET' : method;
    const handler = this.fixed.get(want)?.get(path);
    if (handler) return { handler, params: {} };
    const parts = path.split('/').slice(1).map(decode);
    for (const r of this.routes) {
      if (r.method !== want) continue;
      const params = matchSegments(r.segments, parts);
      if (params) return { handler: r.handler, params };
    }
    return undefined;
  }
}

/** Matches percent-decoded path segments against a route's pattern. */
function matchSegments(pattern: string[], parts: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p[0] === '*') {
      const rest = parts.slice(i).join('/');
      if (rest === '') return undefined;
      params[p.slice(1)] = rest;
      return params;
    }
    if (i >= parts.length) return undefined;
    if (p[0] === ':') {
      if (parts[i] === '') return undefined;
      params[p.slice(1)] = parts[i];
    } else if (p !== parts[i]) return undefined;
  }
  return pattern.length === parts.length ? params : undefined;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw badRequest(`The request path has a malformed percent-escape: '${s}'.`, null, 'invalid_url');
  }
}

export interface Target {
  path: string;
  query: URLSearchParams;
}

/**
 * The path and query of a request target: origin-form (`/path?query`) as clients send it, or
 * absolute-form (`http://host/path`), which HTTP/1.1 servers must accept. Dot segments are
 * resolved and a fragment is dropped, as the URL parser would.
 */
export function splitTarget(target: string): Target {
  if (target[0] !== '/' || /\/\.\.?(?:[/?#]|$)|#/.test(target)) {
    try {
      const url = new URL(target, 'http://hearth.invalid');
      return { path: url.pathname, query: url.searchParams };
    } catch {
      return { path: target, query: new URLSearchParams() };
    }
  }
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: new URLSearchParams() } : { path: target.slice(0, q), query: new URLSearchParams(target.slice(q + 1)) };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
  drainUnread(res.req);
}

const DRAIN_MS = 500;
const DRAIN_BYTES = 4 * 1024 * 1024;

/**
 * After an answer sent before the request's body was read (401, 413, ...): take in what the
 * client is still sending for a moment, so that it reads the answer rather than a reset, then
 * close. Left to itself, Node would read any amount, for as long as the client sends.
 */
function drainUnread(req: IncomingMessage): void {
  if (req.complete || req.destroyed) return;
  let taken = 0;
  const close = () => {
    clearTimeout(timer);
    req.socket.destroySoon();
  };
  const timer = setTimeout(close, DRAIN_MS);
  timer.unref();
  req.on('data', (b: Buffer) => {
    if ((taken += b.length) > DRAIN_BYTES) close();
  });
  req.once('end', () => clearTimeout(timer));
  req.on('error', () => clearTimeout(timer));
  req.resume();
}

/** The JSON body of a node's answer, passed on as received. */
export function sendJsonBytes(res: ServerResponse, status: number, body: Buffer): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

export function sendError(res: ServerResponse, e: ApiError): void {
  sendJson(res, e.status, e.body(), e.headers);
}

export const notFoundError = (method: string, path: string) =>
  new ApiError(404, `Unknown endpoint ${method} ${path}.`, 'invalid_request_error', 'unknown_url');
