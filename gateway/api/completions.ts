import type { ServerResponse } from 'node:http';
import type { Dispatcher, StreamSink } from '../../cluster/dispatch.ts';
import { ClusterError, type StreamBrokenError } from '../../cluster/errors.ts';
import type { NodeInfo } from '../../cluster/node.ts';
import { readJsonWithBytes } from './body.ts';
import { ApiError, fromClusterError } from './errors.ts';
import { sendError, sendJsonBytes, type ApiHandler } from './http.ts';
import { validateBody, type Endpoint } from './validate.ts';

const PATHS: Record<Endpoint, string> = {
  chat: '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
};

/** Watches one streamed answer as it passes (history, statistics). */
export interface StreamObserver {
  start?(node: NodeInfo): void;
  chunks?(chunks: Record<string, any>[]): void;
  /** `stopped`: the client went away (or pressed stop), rather than a failure. */
  end?(outcome: { complete: boolean; stopped?: boolean; error?: string }): void | Promise<void>;
}

export interface CompletionDeps {
  dispatcher: Dispatcher;
  /** Largest request body accepted (413 beyond). */
  bodyLimit: number;
  /** Optional observer per request, e.g. to store the conversation (`"store": true`). */
  observe?: (endpoint: Endpoint, body: Record<string, unknown>) => StreamObserver | undefined;
}

/** Handler for POST /v1/chat/completions, /v1/completions and /v1/embeddings. */
export function completionHandler(endpoint: Endpoint, deps: CompletionDeps): ApiHandler {
  return async ({ incoming, outgoing: out }) => {
    let body: Record<string, unknown>;
    let raw: Buffer;
    let model: string;
    let stream: boolean;
    let observer: StreamObserver | undefined;
    try {
      const got = await readJsonWithBytes(incoming, deps.bodyLimit);
      body = got.value as Record<string, unknown>;
      raw = got.bytes;
      ({ model, stream } = validateBody(endpoint, body));
      observer = deps.observe?.(endpoint, body);
    } catch (e) {
      if (e instanceof ApiError) return sendError(out, e);
      throw e;
    }
    const abort = new AbortController();
    out.once('close', () => {
      if (!out.writableFinished) abort.abort();
    });
    const req = { path: PATHS[endpoint], model, body, raw, signal: abort.signal };
    try {
      if (!stream) {
        const answer = await deps.dispatcher.json(req);
        observer?.start?.(answer.node);
        try {
          observer?.chunks?.([JSON.parse(answer.body.toString('utf8'))]);
        } finally {
          // Stored before the client hears back, so it can read it at once.
          await observer?.end?.({ complete: true });
        }
        return sendJsonBytes(out, answer.status, answer.body);
      }
      await deps.dispatcher.stream(req, sseSink(out, observer, abort.signal));
    } catch (e) {
      if (!(e instanceof ClusterError)) throw e;
      observer?.end?.({ complete: false, stopped: e.kind === 'aborted', error: e.message });
      if (e.kind !== 'aborted') sendError(out, fromClusterError(e));
    }
  };
}

/**
 * Writes a streamed answer straight to Node's response (bypassing web streams keeps the per-
 * chunk cost of the hot path low). Headers go out with the first event, so a failure before it
 * can still be retried elsewhere or reported as a plain JSON error.
 */
function sseSink(out: ServerResponse, observer: StreamObserver | undefined, clientGone: AbortSignal): StreamSink {
  return {
    start(node) {
      // The head goes out with the first event's bytes: one write, not two.
      out.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
      observer?.start?.(node);
    },
    send(text, chunks, last) {
      if (observer?.chunks) observer.chunks(chunks);
      if (!last) return out.write(text);
      out.end(text);
      return true;
    },
    drained() {
      return new Promise((resolve) => {
        const done = () => {
          out.off('drain', done);
          out.off('close', done);
          resolve();
        };
        out.on('drain', done);
        out.on('close', done);
      });
    },
    end() {
      if (!out.writableEnded) out.end();
      observer?.end?.({ complete: true });
    },
    fail(err: StreamBrokenError) {
      // An error event and no [DONE]: no client can take a cut answer for a complete one.
      const event = { error: { message: `The answer was interrupted: ${err.message}`, type: 'server_error', code: `stream_${err.reason}`, param: null } };
      out.end(`data: ${JSON.stringify(event)}\n\n`);
      observer?.end?.({ complete: false, stopped: clientGone.aborted, error: err.message });
    },
  };
}
