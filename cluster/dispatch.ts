import type { Balancer, Lease, Outcome, PickRequest } from './balancer.ts';
import type { CancelSignal } from './cancel.ts';
import { AnswerSoFar, conversationKey, tokenLimit } from './continuation.ts';
import { ChunkTemplate } from './chunk-template.ts';
import { ClusterError, StreamBrokenError } from './errors.ts';
import type { ModelRoutes } from './model-routes.ts';
import type { NodeInfo } from './node.ts';
import { SseParser, formatSse } from './sse.ts';
import { Http1Error } from './http1.ts';
import { UpstreamFailure, type UpstreamClient, type UpstreamResponse } from './upstream.ts';

export interface DispatchOptions {
  /** Extra attempts on other nodes when a request fails before its first byte. */
  retries: number;
  connectTimeoutMs: number;
  firstByteTimeoutMs: number;
  stallTimeoutMs: number;
  /** Aliases and fallback chains. */
  routes?: ModelRoutes;
}

/** A node's 429 asking for at most this long is waited out rather than avoided. */
const SHORT_RETRY_AFTER_S = 3;

export interface CompletionRequest {
  /** Below the API path: `/chat/completions`, `/completions`, `/embeddings`. */
  path: string;
  model: string;
  /** The client's JSON body; unknown fields pass through untouched. */
  body: Record<string, unknown>;
  /**
   * The body as the client sent it, forwarded byte for byte while the request is unchanged (no
   * alias, fallback or continuation): large integers, key order and all stay exactly as sent,
   * and the body is not serialised again.
   */
  raw?: Buffer;
  signal: CancelSignal;
}

/** Receives a streamed answer. `send` returns false when the client is not keeping up. */
export interface StreamSink {
  /** The first event arrived from `node`: commit to it (send the response headers). */
  start(node: NodeInfo): void;
  /** The sink reads the JSON of the data events (`send`'s `chunks`); otherwise they are not all parsed. */
  readonly wantsChunks: boolean;
  /**
   * SSE to forward as is (bytes are valid only during the call), and, if wanted, the JSON of its
   * data events. `last`: this ends the answer (`[DONE]` included), so it can go out with the end
   * of the response.
   */
  send(sse: string | Buffer, chunks: Record<string, any>[] | undefined, last?: boolean): boolean;
  /** Resolves when the client can take more. */
  drained(): Promise<void>;
  /** The answer is complete; `[DONE]` was in the last `send`, which said it was the last. */
  end(): void;
  /** The answer broke after it started: tell the client, never as a complete answer. */
  fail(err: StreamBrokenError): void;
}

export interface JsonAnswer {
  status: number;
  body: Buffer;
  node: NodeInfo;
}

const MAX_ERROR_BODY = 64 * 1024;
const MAX_JSON_BODY = 64 * 1024 * 1024;

/** Statuses that say the node, not the request, is the problem: try another node. */
function nodeAtFault(status: number): boolean {
  return status >= 500 || status === 429 || status === 408 || status === 404 || status === 401 || status === 403;
}

function retryAfterOf(res: UpstreamResponse): number | undefined {
  const h = res.headers['retry-after'];
  if (!h) return undefined;
  const s = Number(h);
  if (Number.isFinite(s)) return Math.max(0, s);
  const t = Date.parse(String(h));
  return Number.isFinite(t) ? Math.max(0, Math.ceil((t - Date.now()) / 1000)) : undefined;
}

/** The whole body of `node`'s answer, at most `limit` bytes, with at most `stallMs` of silence. */
function readBody(node: string, res: UpstreamResponse, limit: number, signal: CancelSignal, stallMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const onAbort = () => res.destroy(new UpstreamFailure('aborted', 'client went away'));
    signal.addEventListener('abort', onAbort, { once: true });
    res.setIdleTimeout(stallMs, () => res.destroy(new UpstreamFailure('timeout', `${node} went silent for ${stallMs} ms`)));
    res.read({
      data(b) {
        size += b.length;
        if (size > limit) res.destroy(new UpstreamFailure('reset', `${node}: answer larger than ${limit} bytes`));
        else parts.push(Buffer.from(b));
      },
      end() {
        signal.removeEventListener('abort', onAbort);
        resolve(Buffer.concat(parts));
      },
      error(e) {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Http1Error ? new UpstreamFailure('reset', `${node}: ${e.detail}`) : e);
      },
    });
  });
}

/**
 * Sends completions to the cluster: picks a node through the balancer, retries on another node
 * while nothing has reached the client, and watches a stream until its `[DONE]`.
 */
export class Dispatcher {
  constructor(
    private readonly balancer: Balancer,
    private readonly upstream: UpstreamClient,
    private readonly opts: DispatchOptions,
  ) {}

  /** A non-streamed request: the node's answer, or a ClusterError. */
  json(req: CompletionRequest): Promise<JsonAnswer> {
    return this.withFallbacks(req, (r) =>
      this.attempts(r, new Set(), async (lease, res, t0) => {
        const body = await readBody(lease.node.name, res, MAX_JSON_BODY, r.signal, this.opts.stallTimeoutMs);
        try {
          JSON.parse(body.toString('utf8'));
        } catch {
          throw new AttemptFailed('malformed', `${lease.node.name} sent an answer that is not JSON`);
        }
        lease.release({ ok: true, firstByteMs: Date.now() - t0 });
        return { status: res.status, body, node: lease.node };
      }),
    );
  }

  /**
   * A streamed request. Resolves once the stream has ended, complete or through `sink.fail`;
   * rejects with a ClusterError when it fails before anything reached the client. A stream cut
   * after that is continued on another node serving the same model when one can take it.
   */
  async stream(req: CompletionRequest, sink: StreamSink): Promise<void> {
    const answer = new AnswerSoFar(req.path === '/chat/completions' && (req.body.n ?? 1) === 1);
    let served = req;
    let broken = await this.withFallbacks(req, (r) => {
      served = r;
      return this.attempts(r, new Set(), (lease, res, t0) => this.pump(r, lease, res, t0, sink, answer));
    });
    while (broken) {
      const cut = broken;
      if (req.signal.aborted || cut.reason === 'client_stalled' || !answer.continuable || answer.leg > this.opts.retries) return sink.fail(cut);
      // Only servers known to continue a trailing assistant message can take a partial answer.
      const needsPrefill = answer.content !== '';
      const next: CompletionRequest = { ...served, raw: undefined, body: answer.continuationBody(served.body) };
      try {
        broken = await this.attempts(next, answer.failedNodes, (lease, res, t0) => this.pump(next, lease, res, t0, sink, answer), needsPrefill ? (n) => n.kind === 'llama.cpp' : undefined);
      } catch {
        return sink.fail(cut);
      }
    }
    sink.end();
  }

  /** Run a request on its model, then on each fallback while the failure is the model's, not the client's. */
  private async withFallbacks<T>(req: CompletionRequest, run: (r: CompletionRequest) => Promise<T>): Promise<T> {
    const chain = this.opts.routes?.chain(req.model) ?? [req.model];
    let first: ClusterError | undefined;
    for (const model of chain) {
      try {
        const same = model === req.model && req.body.model === model;
        return await run(same ? req : { ...req, model, body: { ...req.body, model }, raw: undefined });
      } catch (e) {
        if (!(e instanceof ClusterError) || !fallbackApplies(e)) throw e;
        first ??= e;
      }
    }
    throw first!;
  }

  /** Try nodes in turn until one answers; failures before the first byte move to the next. */
  private async attempts<T>(
    req: CompletionRequest,
    tried: Set<string>,
    consume: (lease: Lease, res: UpstreamResponse, t0: number) => Promise<T>,
    filter?: PickRequest['filter'],
  ): Promise<T> {
    const body = req.raw ?? Buffer.from(JSON.stringify(req.body));
    const pick = new RequestPick(req, tried, filter);
    let last: ClusterError | undefined;
    for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
      if (req.signal.aborted) throw new ClusterError('aborted', 'client went away');
      let lease: Lease;
      try {
        lease = await this.balancer.acquire(pick);
      } catch (e) {
        // Out of untried nodes: the last real failure says more than "no node".
        throw e instanceof ClusterError && e.kind === 'aborted' ? e : (last ?? e);
      }
      tried.add(lease.node.id);
      const t0 = Date.now();
      try {
        const res = await this.upstream.post({
          node: lease.node,
          path: req.path,
          body,
          signal: req.signal,
          connectTimeoutMs: this.opts.connectTimeoutMs,
          firstByteTimeoutMs: this.opts.firstByteTimeoutMs,
        });
        const status = res.status;
        if (status < 200 || status >= 300) {
          const errBody = await readBody(lease.node.name, res, MAX_ERROR_BODY, req.signal, this.opts.stallTimeoutMs).catch(() => Buffer.alloc(0));
          if (!nodeAtFault(status)) {
            lease.release({ ok: false, failure: 'client' });
            throw new ClusterError('rejected', `${lease.node.name} rejected the request`, { status, body: errBody });
          }
          const retryAfterS = status === 429 ? (retryAfterOf(res) ?? 1) : undefined;
          lease.release({ ok: false, failure: 'status', retryAfterS });
          // A short pause asked for is waited out on the same node (the balancer holds it back meanwhile).
          if (retryAfterS !== undefined && retryAfterS <= SHORT_RETRY_AFTER_S) tried.delete(lease.node.id);
          last =
            status === 429
              ? new ClusterError('no_capacity', `${lease.node.name} is busy (429)`, { retryAfterS, busy: true })
              : new ClusterError('upstream', `${lease.node.name} answered ${status}: ${summarise(errBody)}`);
          continue;
        }
        return await consume(lease, res, t0);
      } catch (e) {
        if (e instanceof ClusterError) throw e;
        const failure = toFailure(e);
        lease.release({ ok: false, failure: failure.reason === 'aborted' ? 'aborted' : failure.outcome });
        if (failure.reason === 'aborted') throw new ClusterError('aborted', 'client went away');
        last = new ClusterError(failure.reason === 'timeout' ? 'timeout' : 'upstream', failure.message);
      }
    }
    throw last!;
  }

  /**
   * Forward one leg of a stream to the sink. The leg is committed at its first data event; it
   * resolves `undefined` at `[DONE]`, or with the error that broke it after that (the caller may
   * continue elsewhere); it rejects when it failed before its first event (the caller retries).
   */
  private pump(
    req: CompletionRequest,
    lease: Lease,
    res: UpstreamResponse,
    t0: number,
    sink: StreamSink,
    answer: AnswerSoFar,
  ): Promise<StreamBrokenError | undefined> {
    return new Promise((resolve, reject) => {
      const parser = new SseParser();
      const template = new ChunkTemplate();
      const rewriting = answer.leg > 0;
      let started = false;
      let finished = false;
      let chunks = 0;
      let tFirst = 0;
      let clientBlocked = false;
      // A chunk of this leg was read whole, so the answer has its id. Not so when the template
      // learned its shape from a read's first token before this leg read any chunk whole.
      let idsRead = false;
      const readIds = (data: string) => {
        idsRead = true;
        answer.observeIds(JSON.parse(data));
      };
      // The answer must begin within the first-byte limit even if the node sends pings meanwhile:
      // until the first event, the connection's silence limit is the time left to that deadline,
      // set again at each read (its own timer, so no timer is made for this per request).
      const firstDeadline = t0 + this.opts.firstByteTimeoutMs;
      const waitFirst = () =>
        res.setIdleTimeout(Math.max(1, firstDeadline - Date.now()), () =>
          res.destroy(new UpstreamFailure('timeout', `${lease.node.name} sent no event for ${this.opts.firstByteTimeoutMs} ms`)),
        );
      waitFirst();
      const onAbort = () => res.destroy(new UpstreamFailure('aborted', 'client went away'));
      req.signal.addEventListener('abort', onAbort, { once: true });

      const settle = (outcome: Outcome, err?: Error) => {
        if (finished) return;
        finished = true;
        req.signal.removeEventListener('abort', onAbort);
        // After [DONE] the rest of the response drains so the socket can be reused; the stall
        // timer stays armed to reap a node that never ends it. Anything else frees the socket now.
        if (err !== undefined) res.destroy();
        else res.discard(this.opts.stallTimeoutMs);
        // Written out rather than spread: a spread of outcomes of several shapes takes V8's slow path.
        lease.release({
          ok: outcome.ok,
          failure: outcome.failure,
          retryAfterS: outcome.retryAfterS,
          chunks,
          firstByteMs: tFirst ? tFirst - t0 : undefined,
          decodeMs: tFirst ? Date.now() - tFirst : undefined,
        });
        if (err === undefined) return resolve(undefined);
        if (!started) return reject(err);
        if (outcome.failure !== 'aborted') answer.failedNodes.add(lease.node.id);
        resolve(err instanceof StreamBrokenError ? err : new StreamBrokenError('reset', err.message));
      };

      const broken = (reason: StreamBrokenError['reason'], message: string, failure: Outcome['failure'] = reason === 'malformed' ? 'malformed' : 'reset') => {
        // 'end' and 'close' also follow a complete answer: no error object for those.
        if (finished) return;
        settle({ ok: false, failure }, started ? new StreamBrokenError(reason, message) : new AttemptFailed(failure === 'timeout' ? 'timeout' : failure === 'malformed' ? 'malformed' : 'reset', message));
      };

      const onData = (buf: Buffer) => {
        if (finished) return;
        if (!started) waitFirst();
        // Runs of token events are read whole unless each chunk's JSON is wanted or rewritten.
        const items = parser.push(buf, rewriting || sink.wantsChunks ? undefined : template);
        if (items.length === 0) return;
        // Bytes that are exactly their events, as formatSse would write them, go on as they came.
        let verbatim = parser.verbatim && !rewriting;
        let text = '';
        const parsed: Record<string, any>[] | undefined = sink.wantsChunks ? [] : undefined;
        let done = false;
        for (let i = 0; i < items.length; i++) {
          const it = items[i];
          if ('run' in it) {
            chunks += it.events;
            if (!idsRead) readIds(it.run.slice(6, it.run.indexOf('\n')));
            if (!verbatim) text += it.run;
            if (template.kind === 'content') answer.observeContent(it.tokens, it.nonEmpty);
            continue;
          }
          if ('comment' in it) {
            if (answer.started) text += formatSse(it);
            continue;
          }
          if (it.data === '[DONE]') {
            done = true;
            if (verbatim && i < items.length - 1) {
              // What follows [DONE] is not forwarded.
              verbatim = false;
              text = items.slice(0, i).map(formatSse).join('');
            }
            if (!verbatim) text += 'data: [DONE]\n\n';
            break;
          }
          const token = rewriting ? undefined : template.match(it.data);
          if (token !== undefined) {
            chunks++;
            if (!idsRead) readIds(it.data);
            if (!verbatim) text += formatSse(it);
            if (template.kind === 'content') answer.observeContent(token);
            parsed?.push(JSON.parse(it.data));
            continue;
          }
          let obj: any;
          try {
            obj = JSON.parse(it.data);
          } catch {
            return broken('malformed', `${lease.node.name} sent a malformed event`);
          }
          if (obj === null || typeof obj !== 'object') return broken('malformed', `${lease.node.name} sent a malformed event`);
          if (obj.error) {
            const msg = typeof obj.error === 'object' ? obj.error.message : String(obj.error);
            return broken('upstream_error', `${lease.node.name} reported an error mid-stream: ${msg}`);
          }
          chunks++;
          if (rewriting) {
            // A continuation leg: re-serialised so the client sees one seamless answer.
            obj = answer.rewrite(obj);
            if (!obj) continue;
            text += `data: ${JSON.stringify(obj)}\n\n`;
          } else {
            if (!verbatim) text += formatSse(it);
            template.learn(it.data, obj);
          }
          answer.observe(obj);
          idsRead = true;
          parsed?.push(obj);
        }
        if (!verbatim && text === '') return;
        if (!started) {
          started = true;
          tFirst = Date.now();
          res.setIdleTimeout(this.opts.stallTimeoutMs, () =>
            res.destroy(
              // Nothing is read while the client is not keeping up: that silence is the client's.
              clientBlocked
                ? new StreamBrokenError('client_stalled', `the client read nothing for ${this.opts.stallTimeoutMs} ms`)
                : new StreamBrokenError('stall', `${lease.node.name} went silent for ${this.opts.stallTimeoutMs} ms`),
            ),
          );
          if (!answer.started) {
            answer.started = true;
            sink.start(lease.node);
          }
        }
        if (!sink.send(verbatim ? buf : text, parsed, done) && !done) {
          clientBlocked = true;
          res.pause();
          void sink.drained().then(() => {
            clientBlocked = false;
            res.resume();
          });
        }
        if (done) settle({ ok: true });
      };
      res.read({
        data: onData,
        end: () => broken('no_done', `${lease.node.name} ended the answer without [DONE]`),
        error: (e: Error) => {
          if (e instanceof UpstreamFailure && e.reason === 'aborted') return settle({ ok: false, failure: 'aborted' }, started ? new StreamBrokenError('reset', 'client went away') : e);
          if (e instanceof StreamBrokenError) return broken(e.reason, e.message, e.reason === 'client_stalled' ? 'aborted' : 'timeout');
          if (e instanceof UpstreamFailure) return broken(e.reason === 'timeout' ? 'stall' : 'reset', e.message, e.reason === 'timeout' ? 'timeout' : 'reset');
          if (e instanceof Http1Error && e.code === 'malformed') return broken('malformed', `${lease.node.name}: ${e.detail}`);
          broken('reset', e instanceof Http1Error && e.code === 'closed' && !e.errno ? `${lease.node.name}: connection closed mid-answer` : `${lease.node.name}: connection lost (${e instanceof Http1Error ? (e.errno ?? e.detail) : e.message})`);
        },
      });
    });
  }
}

/** What the balancer is asked for one request (a class: an object literal with a getter is slow to make). */
class RequestPick implements PickRequest {
  readonly model: string;
  readonly signal: CancelSignal;
  readonly tokens: number | undefined;
  private key: string | undefined | null = null;

  constructor(
    private readonly req: CompletionRequest,
    readonly exclude: Set<string>,
    readonly filter: PickRequest['filter'],
  ) {
    this.model = req.model;
    this.signal = req.signal;
    this.tokens = tokenLimit(req.body);
  }

  /** Hashed only when the balancer has a choice to make with it. */
  get affinityKey(): string | undefined {
    return this.key === null ? (this.key = conversationKey(this.req.model, this.req.body.messages)) : this.key;
  }
}

/** A failure of one attempt, before anything reached the client: the next node may do better. */
class AttemptFailed extends Error {
  constructor(
    readonly outcome: 'malformed' | 'reset' | 'timeout',
    message: string,
  ) {
    super(message);
  }
}

function toFailure(e: unknown): { reason: 'timeout' | 'reset' | 'aborted' | 'connect'; outcome: NonNullable<Outcome['failure']>; message: string } {
  if (e instanceof UpstreamFailure) return { reason: e.reason, outcome: e.reason === 'aborted' ? 'aborted' : e.reason, message: e.message };
  if (e instanceof AttemptFailed) return { reason: e.outcome === 'timeout' ? 'timeout' : 'reset', outcome: e.outcome, message: e.message };
  return { reason: 'reset', outcome: 'reset', message: (e as Error)?.message ?? String(e) };
}

/**
 * A fallback model is tried when the model itself fails or cannot be served, including a prompt
 * too long for its context; never for the client's own errors (a content filter, a bad field).
 */
export function fallbackApplies(e: ClusterError): boolean {
  if (e.kind === 'aborted') return false;
  if (e.kind !== 'rejected') return true;
  return /context|too long|too many tokens|exceed/i.test(e.extra.body?.toString('utf8') ?? '');
}

function summarise(body: Buffer): string {
  const text = body.toString('utf8');
  try {
    const j = JSON.parse(text);
    const m = j?.error?.message ?? j?.message ?? j?.error;
    if (typeof m === 'string') return m.slice(0, 300);
  } catch {
    /* not JSON */
  }
  return text.slice(0, 300) || '(empty body)';
}
