// Sending a message and streaming the answer into the page, without JavaScript.
//
// The POST that sends a message answers with an HTML document written as the answer arrives
// (chunked, `X-Accel-Buffering: no`, never compressed): first the page top and the conversation,
// then the answer's text, escaped piece by piece into a `.raw` block, then, when it ends, the
// answer rendered as markdown in a `.final` block (CSS hides the raw text then, with `:has()`)
// and the composer again.
//
// Stop: the streamed page carries, before the answer, a plain form that POSTs to /c/:id/stop in
// the same tab (it is parsed, so usable, while the document is still loading). That request
// aborts the upstream request, keeps the text so far with status 'stopped', and redirects to the
// conversation. Closing the tab does not stop the answer: it is written to the end and saved, and
// the conversation page shows it growing (meta refresh) with a Stop button meanwhile.

import type { Context } from 'hono';
import type { Dispatcher } from '../cluster/dispatch.ts';
import { ClusterError, type StreamBrokenError } from '../cluster/errors.ts';
import type { NodeInfo } from '../cluster/node.ts';
import { HistoryFullError, HistoryNotFoundError } from '../gateway/history/errors.ts';
import type { History } from '../gateway/history/store.ts';
import { AnswerTally } from '../gateway/history/answer-tally.ts';
import type { AnswerWriter, Conversation, Message, MessageStatus } from '../gateway/history/types.ts';
import { escapeHtml, html } from './html.ts';
import { answerMeta, composer, messagesView } from './conversation.ts';
import { csrfField, PAGE_END, PAGE_HEADERS, pageTop } from './layout.ts';
import { renderMarkdown } from './markdown.ts';
import type { WebEnv } from './types.ts';

interface LiveAnswer {
  abort: AbortController;
  stopped: boolean;
  /** Settles once the answer is saved (or could not be). */
  done: Promise<void>;
}

/** Answers being written now, by conversation: one at a time per conversation. */
export class LiveAnswers {
  readonly byConversation = new Map<string, LiveAnswer>();

  has(id: string): boolean {
    return this.byConversation.has(id);
  }

  /** Stops the answer being written in a conversation; resolves once what was written is saved. */
  async stop(id: string, timeoutMs = 5000): Promise<boolean> {
    const live = this.byConversation.get(id);
    if (!live) return false;
    live.stopped = true;
    live.abort.abort();
    await Promise.race([live.done, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    return true;
  }
}

/** A response body the page is written into as text arrives; writes after the client left are dropped. */
class PageStream {
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private readonly enc = new TextEncoder();
  closed = false;

  constructor() {
    this.body = new ReadableStream<Uint8Array>({
      start: (ctl) => {
        this.controller = ctl;
      },
      cancel: () => {
        this.closed = true;
      },
    });
  }

  write(s: string): void {
    if (this.closed || s === '') return;
    try {
      this.controller.enqueue(this.enc.encode(s));
    } catch {
      this.closed = true;
    }
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.controller.close();
    } catch {
      /* already cancelled */
    }
  }
}

/** Without JavaScript the page cannot scroll to the answer as it grows, so the streamed page shows
 *  only the last question and the answer, with a link to the whole conversation above them. */
function streamHeader(conv: Conversation, messages: Message[]) {
  const earlier = lastUserIndex(messages);
  return html`<h1>${conv.title}</h1>${
    earlier > 0 ? html`<p class="meta"><a href="/c/${conv.id}#end">↑ The whole conversation (${earlier} earlier messages)</a></p>` : ''
  }`;
}

function lastUserIndex(messages: Message[]): number {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i].role === 'user') return i;
  return 0;
}

/** The messages sent to the model: the system prompt and every usable message so far. */
export function promptMessages(conv: Conversation, messages: Message[]): Array<{ role: string; content: string }> {
  const out: Array<{ role: string; content: string }> = [];
  if (conv.system) out.push({ role: 'system', content: conv.system });
  for (const m of messages) {
    if (m.role === 'assistant' && (m.status === 'error' || m.content === '')) continue;
    if (m.role === 'tool') continue;
    out.push({ role: m.role, content: m.content });
  }
  return out;
}

export interface StreamDeps {
  history: History;
  dispatcher: Dispatcher;
  models: () => string[];
  live: LiveAnswers;
}

interface Outcome {
  status: Exclude<MessageStatus, 'streaming'>;
  text: string;
  error?: string;
  /** Why the answer could not be saved (disk full), when so. */
  saveError?: string;
  message?: Message;
}

/**
 * Streams a new answer to the conversation's messages as an HTML page. The caller has checked
 * that no answer is live in the conversation and stored the user's message.
 */
export function streamAnswer(c: Context<WebEnv>, deps: StreamDeps, conv: Conversation, model: string): Response {
  const { history, dispatcher } = deps;
  const out = new PageStream();
  const messages = history.messages(conv.id);
  const abort = new AbortController();
  const live: LiveAnswer = { abort, stopped: false, done: Promise.resolve() };

  out.write(
    html`${pageTop(c, conv.title)}${streamHeader(conv, messages)}${messagesView(c, conv, messages.slice(lastUserIndex(messages)))}<article class="msg assistant" id="live"><p class="who">Assistant</p><form class="stop" method="post" action="/c/${conv.id}/stop">${csrfField(c)}<button>Stop</button></form><p class="meta">${model} · writing…</p><div class="raw">`
      .value,
  );

  const run = async (): Promise<Outcome> => {
    const tally = new AnswerTally();
    let text = '';
    let writer: AnswerWriter | undefined;
    let writerStart: Promise<AnswerWriter> | undefined;
    let status: Outcome['status'] = 'complete';
    let error: string | undefined;
    let saveError: string | undefined;

    const sink = {
      start(node: NodeInfo) {
        // The answer is stored from its first event, with the node that wrote it.
        writerStart = history.startAnswer(conv.id, { model, node: node.name });
        writerStart.then(
          (w) => {
            writer = w;
            w.append(text);
          },
          (e: unknown) => {
            saveError = describeSaveError(e);
          },
        );
      },
      wantsChunks: true,
      send(_sse: unknown, chunks: Record<string, any>[] | undefined): boolean {
        const piece = tally.add(chunks ?? []);
        if (piece) {
          text += piece;
          writer?.append(piece);
          out.write(escapeHtml(piece));
        }
        return true;
      },
      drained: () => Promise.resolve(),
      end() {},
      fail(err: StreamBrokenError) {
        if (live.stopped) status = 'stopped';
        else {
          status = 'error';
          error = `The answer broke off: ${err.message}`;
        }
      },
    };

    try {
      await dispatcher.stream(
        {
          path: '/chat/completions',
          model,
          body: { model, messages: promptMessages(conv, messages), stream: true, stream_options: { include_usage: true } },
          signal: abort.signal,
        },
        sink,
      );
    } catch (e) {
      // Failed before the first byte: nothing was written.
      if (live.stopped) return { status: 'stopped', text: '' };
      const msg = e instanceof ClusterError ? clusterMessage(e) : `Hearth could not reach a node: ${(e as Error).message}`;
      try {
        const m = await history.addMessage(conv.id, { role: 'assistant', content: '', model, status: 'error', error: msg });
        return { status: 'error', text: '', error: msg, message: m };
      } catch (se) {
        return { status: 'error', text: '', error: msg, saveError: describeSaveError(se) };
      }
    }
    if (live.stopped && status === 'complete') status = 'stopped';

    const timings = tally.timings();
    const { usage } = tally;
    if (writerStart) await writerStart.catch(() => undefined);
    if (!writer) return { status, text, error, saveError: saveError ?? 'the answer could not be saved' };
    try {
      const m = await writer.finish({ status, usage, timings, error });
      return { status, text, error, message: m, saveError: writer.error ? describeSaveError(writer.error) : undefined };
    } catch (e) {
      return { status, text, error, saveError: describeSaveError(e) };
    }
  };

  deps.live.byConversation.set(conv.id, live);
  live.done = run()
    .then((o) => finishPage(c, deps, conv, o, out))
    .catch((e: unknown) => {
      out.write(html`</div><p class="err">Hearth hit an internal error: ${(e as Error)?.message ?? String(e)}</p>`.value);
      out.write(PAGE_END.value);
      out.end();
    })
    .finally(() => {
      if (deps.live.byConversation.get(conv.id) === live) deps.live.byConversation.delete(conv.id);
    });

  return c.body(out.body, 200, {
    ...PAGE_HEADERS,
    'Content-Type': 'text/html; charset=utf-8',
    'X-Accel-Buffering': 'no',
    // no-transform: proxies and Hono's compress() leave it alone (a compressed stream stalls).
    'Cache-Control': 'no-store, no-transform',
  });
}

function finishPage(c: Context<WebEnv>, deps: StreamDeps, conv: Conversation, o: Outcome, out: PageStream): void {
  if (out.closed) return;
  const fresh = deps.history.getConversation(conv.id) ?? conv;
  const meta = o.message
    ? answerMeta(o.message)
    : html`<p class="meta"><strong>${o.status}</strong>${o.error ? html`<br><span class="err">${o.error}</span>` : ''}</p>`;
  out.write(
    html`</div><div class="final">${renderMarkdown(o.text)}${meta}${
      o.saveError ? html`<p class="err" role="alert">${o.saveError}</p>` : ''
    }<form class="act" method="post" action="/c/${conv.id}/regenerate">${csrfField(c)}<input type="hidden" name="n" value="${fresh.messageCount}"><button>Regenerate</button></form></div></article>${composer(
      c,
      fresh,
      deps.models(),
    )}${PAGE_END}`.value,
  );
  out.end();
}

export function describeSaveError(e: unknown): string {
  if (e instanceof HistoryFullError) return 'The answer could not be saved: the disk that holds the history is full. Free some space (or delete old conversations) and try again.';
  if (e instanceof HistoryNotFoundError) return 'The conversation was deleted while the answer was written.';
  return `The answer could not be saved: ${(e as Error)?.message ?? String(e)}`;
}

function clusterMessage(e: ClusterError): string {
  switch (e.kind) {
    case 'unknown_model':
      return `No node serves this model now. ${e.message}`;
    case 'no_capacity':
      return `Every node that serves this model is busy or down; try again shortly. (${e.message})`;
    case 'timeout':
      return `The node did not answer in time. (${e.message})`;
    case 'rejected':
      return `The node refused the request (the conversation may be too long for the model). (${e.message})`;
    default:
      return `The node failed: ${e.message}`;
  }
}
