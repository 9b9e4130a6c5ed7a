import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Cancel, type CancelSignal } from '../../cluster/cancel.ts';
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
    const abort = new Cancel();
    out.once('close', () => {
      if (!out.writableFinished) abort.abort();
    });
    const req = { path: PATHS[endpoint], model, body, raw, signal: abort };
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
      await deps.dispatcher.stream(req, sseSink(incoming, out, observer, abort));
    } catch (e) {
      if (!(e instanceof ClusterError)) throw e;
      observer?.end?.({ complete: false, stopped: e.kind === 'aborted', error: e.message });
      if (e.kind !== 'aborted') sendError(out, fromClusterError(e));
    }
  };
}

/**
 * Writes a streamed answer to the client. Headers go out with the first event, so a failure
 * before it can still be retried elsewhere or reported as a plain JSON error.
 *
 * Events are framed as HTTP chunks here and written to the socket in one call each, the head
 * flushed into the same write as the first. This is the hottest write in Hearth:
 * `ServerResponse.write` spends four writes into a corked socket and a deferred uncork on every
 * event, about a tenth of Hearth's CPU time for a stream. The end (`0` chunk) and any answer that
 * is not chunked (HTTP/1.0, or one waiting behind a pipelined answer) go through the response.
 */
function sseSink(incoming: IncomingMessage, out: ServerResponse, observer: StreamObserver | undefined, clientGone: CancelSignal): StreamSink {
  // HTTP/1.1 answers without a length are chunked; an HTTP/1.0 client gets the bytes as they are.
  const chunked = incoming.httpVersionMajor === 1 && incoming.httpVersionMinor >= 1;
  let headSent = false;
  return {
    wantsChunks: !!observer?.chunks,
    start(node) {
      out.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
        ...(chunked ? { 'transfer-encoding': 'chunked' } : {}),
      });
      observer?.start?.(node);
    },
    send(sse, chunks, last) {
      if (chunks) observer?.chunks?.(chunks);
      const socket = out.socket;
      if (!chunked || !socket) {
        // Through the response, bytes go as text: the response may hold them past this call, and
        // text lives in V8's young generation where bytes would be memory allocated apart.
        if (last) out.end(asText(sse));
        else return out.write(asText(sse));
        return true;
      }
      if (socket.destroyed) return false;
      // The head goes out with the first events in one write. A fast node's whole answer often
      // comes in one read: it is framed here as it came, not decoded to text and back.
      const first = !headSent;
      if (first) {
        headSent = true;
        socket.cork();
        out.flushHeaders();
      }
      // An empty chunk would end the body.
      const ok = sse.length === 0 || writeChunk(socket, sse);
      if (first) socket.uncork();
      releaseFrame(socket);
      if (last) out.end();
      return ok;
    },
    drained() {
      // The response says 'drain' for its own writes, the socket for the ones made here.
      const socket = out.socket;
      return new Promise((resolve) => {
        const done = () => {
          out.off('drain', done);
          out.off('close', done);
          socket?.off('drain', done);
          resolve();
        };
        out.on('drain', done);
        out.on('close', done);
        socket?.on('drain', done);
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

const asText = (sse: string | Buffer): string => (typeof sse === 'string' ? sse : sse.toString('utf8'));

/**
 * The frame buffer events are copied into (the caller's bytes are valid only during the call).
 * A frame the socket wrote at once is no longer referenced, so the buffer is used again for the
 * next one; a frame the socket had to queue keeps it, and the next frame gets a new buffer. This
 * spares an allocation per event, and for a fast node's large reads the malloc'd memory that
 * would otherwise pile up until the next collection.
 */
let frameBuffer: Buffer | undefined;
/** The buffer of the last frame written, until the socket is known to be done with it. */
let frameInUse: Buffer | undefined;

/** Writes one HTTP/1.1 chunk (size line, data, CRLF); returns what `socket.write` returns. */
function writeChunk(socket: Socket, data: string | Buffer): boolean {
  if (typeof data === 'string') return socket.write(`${Buffer.byteLength(data).toString(16)}\r\n${data}\r\n`);
  const len = data.length;
  let digits = 1;
  while (digits < 8 && len >>> (4 * digits) !== 0) digits++;
  const n = digits + len + 4;
  const frame = frameBuffer && frameBuffer.length >= n ? frameBuffer : Buffer.allocUnsafeSlow(n);
  frameBuffer = undefined;
  // The size in hex, written digit by digit: cheaper than formatting a string and writing it.
  for (let i = 0; i < digits; i++) {
    const d = (len >>> (4 * (digits - 1 - i))) & 15;
    frame[i] = d < 10 ? 48 + d : 87 + d;
  }
  let at = digits;
  frame[at++] = 13;
  frame[at++] = 10;
  at += data.copy(frame, at);
  frame[at++] = 13;
  frame[at] = 10;
  frameInUse = frame;
  return socket.write(frame.subarray(0, n));
}

/** After a write (and the uncork of a corked one): the frame is free again if it went out. */
function releaseFrame(socket: Socket): void {
  if (frameInUse && socket.writableLength === 0) frameBuffer = frameInUse;
  frameInUse = undefined;
}
