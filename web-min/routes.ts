// The zero-JavaScript chat: every page and form, mounted by the gateway at `/`.
//
// Pages: / (conversations, newest first, ?q= search), /new, /c/:id, /c/:id/rename,
// /c/:id/delete (confirmation), /c/:id/edit/:seq, /export, /import, /login.
// Every response carries a CSP with script-src 'none'; every POST needs the page's CSRF token.

import { randomBytes } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HistoryFullError, HistoryInputError, HistoryNotFoundError } from '../gateway/history/errors.ts';
import type { Conversation } from '../gateway/history/types.ts';
import { conversationPage, deletePage, editPage, newChatPage, renamePage } from './conversation.ts';
import { loadMarkdown } from './markdown.ts';
import { csrfGuard } from './csrf.ts';
import { errorPage, PAGE_HEADERS, send } from './layout.ts';
import { listPage } from './list.ts';
import { accessGuard, loginRoutes, Sessions } from './session.ts';
import { LiveAnswers, streamAnswer, type StreamDeps } from './stream.ts';
import { STYLE } from './style.ts';
import { IMPORT_MAX_BYTES, transferRoutes } from './transfer.ts';
import type { WebEnv, WebMinDeps } from './types.ts';

export type { WebMinDeps, WebEnv } from './types.ts';

const FORM_MAX_BYTES = 1024 * 1024;
const TEXT_MAX_CHARS = 200_000;
const ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

function field(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  return typeof v === 'string' ? v : '';
}

export function webMinRoutes(deps: WebMinDeps): Hono<WebEnv> {
  const { history } = deps;
  const secret = deps.secret ?? randomBytes(32);
  const sessions = new Sessions(secret, deps.password, deps.sessionDays, deps.revoked);
  const live = new LiveAnswers();
  const sd: StreamDeps = { history, dispatcher: deps.dispatcher, models: deps.models, live };
  const app = new Hono<WebEnv>();
  app.use(async (_c, next) => {
    await loadMarkdown();
    return next();
  });

  app.use(async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(PAGE_HEADERS)) if (!c.res.headers.has(k)) c.res.headers.set(k, v);
  });

  app.get('/style.css', (c) =>
    c.body(STYLE, 200, { 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'public, max-age=31536000, immutable' }),
  );
  app.get('/favicon.ico', (c) => c.body(null, 204, { 'Cache-Control': 'public, max-age=86400' }));

  const limitTo = (max: number) =>
    bodyLimit({
      maxSize: max,
      onError: (cc) => errorPage(cc as Context<WebEnv>, 413, 'Too large', `What was sent is larger than ${Math.round(max / 1024)} KiB.`),
    });
  const importLimit = limitTo(IMPORT_MAX_BYTES);
  const formLimit = limitTo(FORM_MAX_BYTES);
  app.use((c, next) => (c.req.method !== 'POST' ? next() : (c.req.path === '/import' ? importLimit : formLimit)(c, next)));
  app.use(accessGuard(sessions));
  app.use(csrfGuard(secret, (c) => c.get('session') ?? ''));

  app.onError((err, c) => {
    if (err instanceof HistoryFullError) {
      return errorPage(
        c,
        507,
        'The disk is full',
        'Hearth could not save this: the disk that holds the conversations is full. Nothing already saved was lost. Free some space on the gateway, or delete old conversations, then try again.',
      );
    }
    if (err instanceof HistoryNotFoundError) return errorPage(c, 404, 'Not found', err.message);
    if (err instanceof HistoryInputError) return errorPage(c, 400, 'That did not work', err.message);
    console.error(`web-min: ${c.req.method} ${c.req.path}: ${(err as Error).stack ?? err}`);
    return errorPage(c, 500, 'Something went wrong', 'Hearth hit an internal error; the log has the details.');
  });

  app.route('/', loginRoutes(sessions));
  app.route('/', transferRoutes(history));

  app.get('/', (c) => {
    const q = (c.req.query('q') ?? '').slice(0, 200);
    const after = c.req.query('after') || undefined;
    let result;
    try {
      result = history.listConversations({ limit: 30, search: q || undefined, after });
    } catch (e) {
      if (after) return c.redirect('/', 303); // a stale or mangled cursor
      throw e;
    }
    return send(c, listPage(c, result, q));
  });

  app.get('/new', (c) => send(c, newChatPage(c, deps.models())));

  app.post('/new', async (c) => {
    const body = await c.req.parseBody();
    const text = field(body, 'text');
    const system = field(body, 'system').trim();
    const model = field(body, 'model');
    const models = deps.models();
    if (!text.trim()) return send(c, newChatPage(c, models, 'Write a message first.'), 400);
    if (text.length > TEXT_MAX_CHARS || system.length > TEXT_MAX_CHARS) return send(c, newChatPage(c, models, 'That message is too long.'), 400);
    if (!model || !models.includes(model)) return send(c, newChatPage(c, models, 'Choose a model that is available now.'), 400);
    const conv = await history.createConversation({ model, system: system || undefined, source: 'chat' });
    await history.addMessage(conv.id, { role: 'user', content: text });
    return streamAnswer(c, sd, history.getConversation(conv.id) ?? conv, model);
  });

  // Every /c/:id route works on that conversation: loaded once here, or a readable 404.
  const withConversation: MiddlewareHandler<WebEnv> = async (c, next) => {
    const id = c.req.param('id') ?? '';
    const conv = ID_RE.test(id) ? history.getConversation(id) : undefined;
    if (!conv) return errorPage(c, 404, 'No such conversation', 'This conversation does not exist; it may have been deleted.');
    c.set('conv', conv);
    await next();
  };
  app.use('/c/:id/*', withConversation); // Hono's `/*` matches `/c/:id` itself too

  /** Checks a form that changes the conversation: no answer live, and the page is current. */
  const checkCurrent = (c: Context<WebEnv>, conv: Conversation, body: Record<string, unknown>): Response | undefined => {
    const back = `/c/${conv.id}`;
    if (live.has(conv.id)) {
      return errorPage(c, 409, 'An answer is being written', 'Wait for the answer being written in this conversation, or stop it, then try again.', back);
    }
    if (field(body, 'n') !== String(conv.messageCount)) {
      return errorPage(c, 409, 'The conversation has changed', 'This conversation changed since the page was loaded (the form was sent twice, or from another tab). Nothing was sent.', back);
    }
    return undefined;
  };

  app.get('/c/:id', (c) => {
    const conv = c.get('conv');
    return send(c, conversationPage(c, conv, history.messages(conv.id), deps.models()));
  });

  app.post('/c/:id/send', async (c) => {
    const conv = c.get('conv');
    const body = await c.req.parseBody();
    const stale = checkCurrent(c, conv, body);
    if (stale) return stale;
    const text = field(body, 'text');
    const model = field(body, 'model') || conv.model || deps.models()[0];
    if (!text.trim()) return c.redirect(`/c/${conv.id}`, 303);
    if (text.length > TEXT_MAX_CHARS) return errorPage(c, 400, 'Too long', 'That message is too long.', `/c/${conv.id}`);
    if (!model || model.length > 256) return errorPage(c, 400, 'No model', 'No model is available now: no inference node is up.', `/c/${conv.id}`);
    await history.addMessage(conv.id, { role: 'user', content: text });
    return streamAnswer(c, sd, history.getConversation(conv.id) ?? conv, model);
  });

  app.post('/c/:id/stop', async (c) => {
    const conv = c.get('conv');
    await live.stop(conv.id);
    return c.redirect(`/c/${conv.id}#end`, 303);
  });

  app.post('/c/:id/regenerate', async (c) => {
    const conv = c.get('conv');
    const body = await c.req.parseBody();
    const stale = checkCurrent(c, conv, body);
    if (stale) return stale;
    const lastUser = history.messages(conv.id).filter((m) => m.role === 'user').pop();
    if (!lastUser) return errorPage(c, 400, 'Nothing to answer', 'This conversation has no message to answer.', `/c/${conv.id}`);
    const model = conv.model ?? deps.models()[0];
    if (!model) return errorPage(c, 400, 'No model', 'No model is available now: no inference node is up.', `/c/${conv.id}`);
    await history.truncateAfter(conv.id, lastUser.seq);
    return streamAnswer(c, sd, history.getConversation(conv.id) ?? conv, model);
  });

  const loadUserMessage = (c: Context<WebEnv>, conv: Conversation) => {
    const seq = Number(c.req.param('seq'));
    const m = Number.isSafeInteger(seq) ? history.getMessage(conv.id, seq) : undefined;
    return m && m.role === 'user' ? m : undefined;
  };

  app.get('/c/:id/edit/:seq', (c) => {
    const conv = c.get('conv');
    const m = loadUserMessage(c, conv);
    if (!m) return errorPage(c, 404, 'No such message', 'Only your own messages can be edited.', `/c/${conv.id}`);
    return send(c, editPage(c, conv, m));
  });

  app.post('/c/:id/edit/:seq', async (c) => {
    const conv = c.get('conv');
    const m = loadUserMessage(c, conv);
    if (!m) return errorPage(c, 404, 'No such message', 'Only your own messages can be edited.', `/c/${conv.id}`);
    const body = await c.req.parseBody();
    const stale = checkCurrent(c, conv, body);
    if (stale) return stale;
    const text = field(body, 'text');
    if (!text.trim()) return send(c, editPage(c, conv, m), 400);
    if (text.length > TEXT_MAX_CHARS) return errorPage(c, 400, 'Too long', 'That message is too long.', `/c/${conv.id}`);
    const model = conv.model ?? deps.models()[0];
    if (!model) return errorPage(c, 400, 'No model', 'No model is available now: no inference node is up.', `/c/${conv.id}`);
    await history.truncateAfter(conv.id, m.seq - 1);
    await history.addMessage(conv.id, { role: 'user', content: text });
    return streamAnswer(c, sd, history.getConversation(conv.id) ?? conv, model);
  });

  app.get('/c/:id/rename', (c) => {
    const conv = c.get('conv');
    return send(c, renamePage(c, conv));
  });

  app.post('/c/:id/rename', async (c) => {
    const conv = c.get('conv');
    const title = field(await c.req.parseBody(), 'title');
    try {
      await history.renameConversation(conv.id, title);
    } catch (e) {
      if (e instanceof HistoryInputError) return send(c, renamePage(c, conv, e.message), 400);
      throw e;
    }
    return c.redirect(`/c/${conv.id}`, 303);
  });

  app.get('/c/:id/delete', (c) => {
    const conv = c.get('conv');
    return send(c, deletePage(c, conv));
  });

  app.post('/c/:id/delete', async (c) => {
    const conv = c.get('conv');
    await live.stop(conv.id);
    await history.deleteConversation(conv.id);
    return c.redirect('/', 303);
  });

  return app;
}
