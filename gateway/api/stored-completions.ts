// OpenAI's stored chat completions on top of the history store:
//   GET    /chat/completions                 list (limit, after, order, model, metadata[k]=v)
//   GET    /chat/completions/:id             the stored chat.completion
//   GET    /chat/completions/:id/messages    the request's messages (limit, after, order)
//   POST   /chat/completions/:id             update metadata ({"metadata": {...}})
//   DELETE /chat/completions/:id             delete
// Added to the API's routes under /v1. `storeObserver` records `"store": true` requests as they
// stream, through the StreamObserver hook of completions.ts.

import { readJson } from './body.ts';
import { HistoryFullError, HistoryInputError, HistoryNotFoundError } from '../history/errors.ts';
import { newId, validateMetadata, type History, type StoredCompletion } from '../history/store.ts';
import { AnswerTally } from '../history/answer-tally.ts';
import type { AnswerWriter, Message } from '../history/types.ts';
import type { NodeInfo } from '../../cluster/node.ts';
import type { StreamObserver } from './completions.ts';
import type { Endpoint } from './validate.ts';
import { ApiError, badRequest } from './errors.ts';
import { sendError, sendJson, type ApiCall, type ApiRouter } from './http.ts';

const notFound = (id: string) =>
  new ApiError(404, `No chat completion found with id '${id}'.`, 'invalid_request_error', 'not_found', 'completion_id');

/** Maps store errors to OpenAI errors (also useful to the chat route). */
export function historyApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof HistoryFullError) return new ApiError(507, e.message, 'server_error', 'history_full');
  if (e instanceof HistoryNotFoundError) return new ApiError(404, e.message, 'invalid_request_error', 'not_found');
  if (e instanceof HistoryInputError) return badRequest(e.message);
  throw e;
}

function limitParam(raw: string | null): number {
  if (raw === null) return 20;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 100) throw badRequest(`Invalid 'limit': expected an integer from 1 to 100, got '${raw}'.`, 'limit');
  return n;
}

function orderParam(raw: string | null): 'asc' | 'desc' {
  if (raw === null || raw === 'asc' || raw === 'desc') return raw ?? 'asc';
  throw badRequest(`Invalid 'order': expected 'asc' or 'desc', got '${raw}'.`, 'order');
}

/** The stored completion as OpenAI's chat.completion object (plus a `hearth` extension). */
export function completionObject(s: StoredCompletion): Record<string, unknown> {
  const { conversation: c, answer } = s;
  const status = answer?.status ?? 'error';
  return {
    id: c.id,
    object: 'chat.completion',
    created: c.completion?.created ?? Math.floor(c.createdAt / 1000),
    model: answer?.model ?? c.model ?? '',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: answer?.content ?? '', refusal: null, annotations: [] },
        // A cut answer has no honest finish_reason; `hearth.status` says what happened.
        finish_reason: status === 'complete' ? (c.completion?.finishReason ?? 'stop') : null,
        logprobs: null,
      },
    ],
    usage: answer?.usage ?? null,
    metadata: c.metadata ?? {},
    service_tier: 'default',
    system_fingerprint: null,
    hearth: { status, node: answer?.node ?? null, timings: answer?.timings ?? null, error: answer?.error ?? null },
  };
}

function storeMessage(m: Message): Record<string, unknown> {
  return { id: m.id, role: m.role, content: m.content, name: m.name ?? null, content_parts: null };
}

function metadataFilter(query: URLSearchParams): Record<string, string> | undefined {
  let out: Record<string, string> | undefined;
  for (const [k, v] of query) {
    const m = /^metadata\[(.+)\]$/.exec(k);
    if (m) (out ??= {})[m[1]] = v;
  }
  return out;
}

export function addStoredCompletionRoutes(router: ApiRouter, history: History, opts: { bodyLimit?: number } = {}): void {
  const bodyLimit = opts.bodyLimit ?? 1024 * 1024;
  /** Answers with the handler's result as JSON, or with the OpenAI error its failure means. */
  const json = (fn: (call: ApiCall) => unknown) => async (call: ApiCall) => {
    let result: unknown;
    try {
      result = await fn(call);
    } catch (e) {
      return sendError(call.outgoing, historyApiError(e));
    }
    sendJson(call.outgoing, 200, result);
  };

  router.get(
    '/v1/chat/completions',
    json(({ query }) => {
      const limit = limitParam(query.get('limit'));
      const order = orderParam(query.get('order'));
      const after = query.get('after') || undefined;
      const model = query.get('model') || undefined;
      if (after && !history.getCompletion(after)) throw badRequest(`Invalid 'after': no chat completion with id '${after}'.`, 'after');
      const page = history.listCompletions({ limit, order, after, model, metadata: metadataFilter(query) });
      const data = page.items.map((conv) => history.getCompletion(conv.id)).filter((s) => s !== undefined).map(completionObject);
      return {
        object: 'list',
        data,
        first_id: (data[0]?.id as string | undefined) ?? null,
        last_id: (data[data.length - 1]?.id as string | undefined) ?? null,
        has_more: page.hasMore,
      };
    }),
  );

  router.get(
    '/v1/chat/completions/:id',
    json(({ params: { id } }) => {
      const s = history.getCompletion(id);
      if (!s) throw notFound(id);
      return completionObject(s);
    }),
  );

  router.get(
    '/v1/chat/completions/:id/messages',
    json(({ params: { id }, query }) => {
      const s = history.getCompletion(id);
      if (!s) throw notFound(id);
      const limit = limitParam(query.get('limit'));
      const order = orderParam(query.get('order'));
      const after = query.get('after') || undefined;
      let list = order === 'desc' ? [...s.request].reverse() : s.request;
      if (after) {
        const i = list.findIndex((m) => m.id === after);
        if (i < 0) throw badRequest(`Invalid 'after': no message with id '${after}' in this chat completion.`, 'after');
        list = list.slice(i + 1);
      }
      const data = list.slice(0, limit).map(storeMessage);
      return {
        object: 'list',
        data,
        first_id: (data[0]?.id as string | undefined) ?? null,
        last_id: (data[data.length - 1]?.id as string | undefined) ?? null,
        has_more: list.length > limit,
      };
    }),
  );

  router.post(
    '/v1/chat/completions/:id',
    json(async ({ params: { id }, incoming }) => {
      if (!history.getCompletion(id)) throw notFound(id);
      const body = await readJson(incoming, bodyLimit);
      const metadata = (body as { metadata?: unknown } | null)?.metadata;
      try {
        validateMetadata(metadata);
      } catch (e) {
        throw badRequest(`Invalid 'metadata': ${(e as Error).message}.`, 'metadata');
      }
      await history.updateMetadata(id, metadata);
      const s = history.getCompletion(id);
      if (!s) throw notFound(id);
      return completionObject(s);
    }),
  );

  router.delete(
    '/v1/chat/completions/:id',
    json(async ({ params: { id } }) => {
      if (!history.getCompletion(id)) throw notFound(id);
      await history.deleteConversation(id);
      return { object: 'chat.completion.deleted', id, deleted: true };
    }),
  );
}

// ---- recording `"store": true` requests ----------------------------------------------------

export interface StoreObserverOptions {
  /** Called when storing fails (full disk, ...); the answer to the client is not affected. */
  onError?: (e: unknown) => void;
  now?: () => number;
}

/**
 * For CompletionDeps.observe: records chat completions whose request has `"store": true`. The
 * stored completion is created at the first chunk (its `id` is the one the client sees), the
 * answer is persisted while it streams, and a cut stream is stored as interrupted/error.
 */
export function storeObserver(
  history: History,
  opts: StoreObserverOptions = {},
): (endpoint: Endpoint, body: Record<string, unknown>) => StreamObserver | undefined {
  const onError = opts.onError ?? ((e: unknown) => console.warn(`history: ${(e as Error).message ?? e}`));
  const now = opts.now ?? Date.now;
  return (endpoint, body) => {
    if (endpoint !== 'chat' || body.store !== true) return undefined;
    // Refuse before anything is generated when the answer could not be kept.
    try {
      history.checkRoom();
    } catch (e) {
      throw historyApiError(e);
    }
    const tally = new AnswerTally(now);
    let node: NodeInfo | undefined;
    let writer: Promise<AnswerWriter | undefined> | undefined;
    let pending = '';
    let ready: AnswerWriter | undefined;
    const begin = (chunk: Record<string, any>) => {
      const id = typeof chunk.id === 'string' && chunk.id ? chunk.id : `chatcmpl-${newId()}`;
      const metadata = body.metadata && typeof body.metadata === 'object' ? (body.metadata as Record<string, string>) : undefined;
      writer = history
        .startCompletion({
          id,
          model: typeof chunk.model === 'string' && chunk.model ? chunk.model : String(body.model),
          created: typeof chunk.created === 'number' ? chunk.created : undefined,
          messages: Array.isArray(body.messages) ? (body.messages as Array<{ role: string; content?: unknown }>) : [],
          metadata,
          node: node?.name,
        })
        .then(
          (w) => {
            ready = w;
            if (pending) w.append(pending);
            pending = '';
            return w;
          },
          (e: unknown) => {
            onError(e);
            return undefined;
          },
        );
    };
    const append = (text: string) => {
      if (!text) return;
      if (ready) ready.append(text);
      else pending += text;
    };
    return {
      start(n) {
        node = n;
      },
      chunks(chunks) {
        if (!writer && chunks.length) begin(chunks[0]);
        append(tally.add(chunks));
      },
      end(outcome) {
        if (!writer) return;
        const { usage, finishReason } = tally;
        const timings = tally.timings();
        const status = outcome.complete ? 'complete' : outcome.stopped ? 'stopped' : 'error';
        return writer.then((w) =>
          w
            ?.finish({ status, usage, timings, finishReason, ...(outcome.error ? { error: outcome.error } : {}) })
            .then(() => undefined, onError),
        );
      },
    };
  };
}
