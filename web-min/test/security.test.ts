// CSRF, CSP, escaping of hostile text everywhere it can appear, login, access, page weight, full disk.
import type { HttpBindings } from '@hono/node-server';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSP } from '../layout.ts';
import { STYLE } from '../style.ts';
import { formSession, launchBrowser, noJsContext, startHarness, type Harness } from './harness.ts';

const PAYLOADS = [
  '<script>alert(1)</script>',
  '<img src=x onerror=alert(1)>',
  '<svg/onload=alert(1)>',
  '"><script>alert(1)</script>',
  "'><img src=x onerror=alert(1)>",
  '<iframe src="javascript:alert(1)"></iframe>',
  '[click](javascript:alert(1))',
  '[click](JAVASCRIPT:alert(1))',
  '![x](javascript:alert(1))',
  '![tracker](http://tracker.example/pixel.png)',
  '<a href="javascript:alert(1)">x</a>',
  '</textarea><script>alert(1)</script>',
  '</title><script>alert(1)</script>',
  '<style>body{display:none}</style>',
  '<meta http-equiv="refresh" content="0;url=https://evil.example">',
  '<base href="https://evil.example/">',
  '<form action="https://evil.example"><button>x</button></form>',
  '<object data="data:text/html,<script>alert(1)</script>"></object>',
  '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
  '<scr<script>ipt>alert(1)</script>',
  '" onmouseover="alert(1)',
  '<a href="https://evil.example" onclick="alert(1)">x</a>',
  '[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '&lt;script&gt;alert(1)&lt;/script&gt;',
  '<!--',
  '<![CDATA[<script>alert(1)</script>]]>',
  '`<script>alert(1)</script>`',
];

const TAGS = new Set(
  'html head meta title link body header main nav a form input button h1 h2 h3 h4 h5 h6 p article div span strong em s code pre ul ol li table thead tbody tr th td blockquote br hr details summary select option textarea label'.split(' '),
);
const ATTRS = new Set(
  'lang charset name content rel href class id method action type value aria-label placeholder required selected for role target enctype accept autocomplete autofocus maxlength rows http-equiv start'.split(' '),
);

/** Every tag and attribute in the page is one Hearth writes itself; no link goes anywhere unsafe. */
function assertInert(page: string, where: string): void {
  for (const m of page.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>/g)) {
    const tag = m[1].toLowerCase();
    expect(TAGS.has(tag), `${where}: tag <${tag}> in ${m[0]}`).toBe(true);
    for (const a of m[2].matchAll(/([^\s="'/]+)(?:="([^"]*)")?/g)) {
      const name = a[1].toLowerCase();
      if (name === 'style') {
        expect(a[2], `${where}: ${m[0]}`).toMatch(/^text-align:(left|right|center)$/);
        continue;
      }
      expect(ATTRS.has(name), `${where}: attribute ${name} in ${m[0]}`).toBe(true);
      if (name === 'href' || name === 'action') expect(a[2], `${where}: ${m[0]}`).toMatch(/^(\/(?!\/)|#|https?:|mailto:)/i);
      if (name === 'http-equiv') expect(m[0]).toMatch(/^<meta http-equiv="refresh" content="\d+">$/);
    }
  }
  expect(page.match(/<title>/g)).toHaveLength(1);
  expect(page.match(/<base|<script|<img|<iframe|<object|<svg|<style/gi)).toBeNull();
}

async function get(h: Harness, path: string, cookie: string): Promise<Response> {
  return fetch(h.url + path, { headers: { cookie }, redirect: 'manual' });
}

async function post(h: Harness, path: string, cookie: string, fields: Record<string, string>): Promise<Response> {
  return fetch(h.url + path, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields),
    redirect: 'manual',
  });
}

describe('the inertness check itself', () => {
  it('catches what it must', () => {
    for (const bad of ['<p><script>x</script></p>', '<p onclick="x">', '<a href="javascript:x">', '<img src=x>', '<a href="//evil">', '<title>a</title><title>b</title>']) {
      expect(() => assertInert(`<title>t</title>${bad}`, 'probe'), bad).toThrow();
    }
    expect(() => assertInert('<title>t</title><p class="x">&lt;script&gt;</p>', 'probe')).not.toThrow();
  });
});

describe('without a password', () => {
  let h: Harness;
  let browser: Browser;
  let s: { cookie: string; csrf: string };

  beforeAll(async () => {
    h = await startHarness();
    browser = await launchBrowser();
    s = await formSession(`${h.url}/new`);
  });
  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('rejects a POST without, with a wrong, or with another browser’s CSRF token (403 page, nothing changed)', async () => {
    const other = await formSession(`${h.url}/new`);
    const before = h.history.stats().conversations;
    const cases: Array<[string, Record<string, string>, string]> = [
      ['no token', { model: 'sim-model', text: 'hi' }, s.cookie],
      ['wrong token', { model: 'sim-model', text: 'hi', _csrf: 'x'.repeat(43) }, s.cookie],
      ['token of another browser', { model: 'sim-model', text: 'hi', _csrf: other.csrf }, s.cookie],
      ['no cookie', { model: 'sim-model', text: 'hi', _csrf: s.csrf }, ''],
    ];
    for (const [name, fields, cookie] of cases) {
      const res = await post(h, '/new', cookie, fields);
      expect(res.status, name).toBe(403);
      const body = await res.text();
      expect(body, name).toContain('This form has expired');
      expect(res.headers.get('content-security-policy')).toBe(CSP);
    }
    // Even with `Origin: null` (no-referrer pages), a right token passes: no Origin check.
    const ok = await fetch(`${h.url}/c/nope/stop`, {
      method: 'POST',
      headers: { cookie: s.cookie, origin: 'null', 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ _csrf: s.csrf }),
      redirect: 'manual',
    });
    expect(ok.status).toBe(404);
    expect(h.history.stats().conversations).toBe(before);
  });

  it('every page carries the CSP with script-src none', async () => {
    const conv = await h.history.createConversation({ model: 'sim-model' });
    await h.history.addMessage(conv.id, { role: 'user', content: 'hello' });
    await h.history.addMessage(conv.id, { role: 'assistant', content: 'hi' });
    for (const path of ['/', '/?q=x', '/new', `/c/${conv.id}`, `/c/${conv.id}/rename`, `/c/${conv.id}/delete`, `/c/${conv.id}/edit/0`, '/import', '/export', '/c/missing', '/login']) {
      const res = await get(h, path, s.cookie);
      expect(res.headers.get('content-security-policy'), path).toBe(CSP);
      expect(res.headers.get('x-content-type-options'), path).toBe('nosniff');
      await res.arrayBuffer();
    }
    const streamed = await post(h, `/c/${conv.id}/send`, s.cookie, { _csrf: s.csrf, n: '2', model: 'sim-model', text: 'more' });
    expect(streamed.headers.get('content-security-policy')).toBe(CSP);
    expect(streamed.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(streamed.headers.get('x-accel-buffering')).toBe('no');
    expect(streamed.headers.get('content-encoding')).toBeNull();
    expect(streamed.headers.get('transfer-encoding')).toBe('chunked');
    const body = await streamed.text();
    expect(body).toMatch(/<\/html>\n$/);
    expect(body).not.toMatch(/<script/i);
  });

  it('hostile text in user messages, answers (streamed and stored), titles, system prompts and search renders inert', async () => {
    const ctx = await noJsContext(browser);
    const page = await ctx.newPage();
    page.setDefaultTimeout(15_000);
    try {
      const joined = PAYLOADS.join('\n\n');
      // Model output, streamed in small pieces that split the tags.
      h.payloadAnswer.pieces = joined.match(/[\s\S]{1,3}/g)!;
      await page.goto(`${h.url}/new`);
      await page.selectOption('#model', 'payload-model');
      await page.click('summary');
      await page.fill('#system', joined);
      await page.fill('#text', joined);
      const [res] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/new')), page.click('button.pri')]);
      await page.waitForSelector('.final');
      const streamedHtml = await res.text();
      assertInert(streamedHtml, 'streamed page');
      const id = h.history.listConversations({ limit: 1 }).items[0].id;
      const [, answer] = h.history.messages(id);
      expect(answer.content).toBe(joined);
      // The payloads show as text, in the raw stream and in the rendered answer.
      expect(await page.locator('#live .raw').textContent()).toBe(joined);
      expect(await page.locator('.final').innerText()).toContain('<script>alert(1)</script>');

      // Stored answers and the other places text appears.
      for (const p of PAYLOADS) await h.history.addMessage(id, { role: 'assistant', content: p, model: p, node: p, error: p, status: 'error' });
      await h.history.renameConversation(id, PAYLOADS.join(' ').slice(0, 200));
      for (const path of [`/c/${id}`, `/c/${id}/edit/0`, `/c/${id}/rename`, `/c/${id}/delete`, '/', `/?q=${encodeURIComponent(joined.slice(0, 190))}`]) {
        const r = await get(h, path, s.cookie);
        assertInert(await r.text(), path);
      }
      await page.goto(`${h.url}/c/${id}/edit/0`);
      expect(await page.inputValue('#text')).toBe(joined); // </textarea> stayed inside the textarea
      await page.goto(`${h.url}/c/${id}`);
      expect(await page.locator('h1').textContent()).toBe(PAYLOADS.join(' ').slice(0, 200).replace(/\s+/g, ' ').trim());
      expect(await page.locator('script, img, iframe, object, svg, base, main style').count()).toBe(0);
      for (const a of await page.locator('main a').all()) expect(await a.getAttribute('href')).toMatch(/^(\/(?!\/)|https?:)/);
      for (const a of await page.locator('main a[href^="http"]').all()) {
        expect(await a.getAttribute('rel')).toBe('noopener noreferrer');
      }
      // The stored answers above also set the conversation's model: the picker shows it as text.
      expect(await page.locator('#composer select option').first().textContent()).toContain(PAYLOADS.at(-1));
    } finally {
      await ctx.close();
    }
  });

  it('the chat page without the conversation’s text is at most 15 KB, with one small stylesheet and no web fonts', async () => {
    const conv = await h.history.createConversation({ model: 'sim-model' });
    await h.history.addMessage(conv.id, { role: 'user', content: 'a' });
    await h.history.addMessage(conv.id, { role: 'assistant', content: 'b', model: 'sim-model', node: 'sim-node', usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
    const page = await (await get(h, `/c/${conv.id}`, s.cookie)).text();
    const css = await (await get(h, '/style.css', '')).text();
    const pageBytes = Buffer.byteLength(page);
    const cssBytes = Buffer.byteLength(css);
    expect(page.match(/<link rel="stylesheet"/g)).toHaveLength(1);
    expect(css).not.toMatch(/@font-face|@import|url\(/);
    expect(pageBytes + cssBytes).toBeLessThanOrEqual(15 * 1024);
    // The streamed answer page, too (its own text is about 24 short words).
    const streamed = await (await post(h, `/c/${conv.id}/send`, s.cookie, { _csrf: s.csrf, n: '2', model: 'sim-model', text: 'c' })).text();
    expect(Buffer.byteLength(streamed) + cssBytes).toBeLessThanOrEqual(15 * 1024 + 400);
    console.log(`chat page ${pageBytes} B + stylesheet ${cssBytes} B; streamed page ${Buffer.byteLength(streamed)} B`);
    expect(STYLE).toBe(css);
  });

  it('serves the chat only to private networks when no password is set', async () => {
    const { webMinRoutes } = await import('../routes.ts');
    const { Hono } = await import('hono');
    const app = new Hono<{ Bindings: HttpBindings }>();
    app.route('/', webMinRoutes({ history: h.history, dispatcher: undefined as never, models: () => [], sessionDays: 1 }));
    const at = (remoteAddress: string) => app.fetch(new Request('http://hearth.local/'), { incoming: { socket: { remoteAddress } } } as never);
    expect((await at('192.168.1.20')).status).toBe(200);
    expect((await at('::1')).status).toBe(200);
    const res = await at('203.0.113.7');
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('Not available from here');
  });
});

describe('with a password', () => {
  let h: Harness;
  let browser: Browser;
  beforeAll(async () => {
    h = await startHarness({ password: 'correct horse' });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('every page but /login needs a session', async () => {
    for (const path of ['/', '/new', '/export', '/import', '/c/x']) {
      const res = await get(h, path, '');
      expect(res.status, path).toBe(303);
      expect(res.headers.get('location')).toBe('/login');
    }
    const s = await formSession(`${h.url}/login`);
    const res = await post(h, '/new', s.cookie, { _csrf: s.csrf, model: 'sim-model', text: 'hi' });
    expect(res.status).toBe(401);
    expect(h.history.stats().conversations).toBe(0);
    expect((await post(h, '/login', s.cookie, { password: 'correct horse' })).status).toBe(403); // login needs its token too
  });

  it('log in, use the chat, log out; the session cookie is HttpOnly and SameSite=Strict', async () => {
    const ctx = await noJsContext(browser);
    const page = await ctx.newPage();
    page.setDefaultTimeout(15_000);
    try {
      await page.goto(`${h.url}/`);
      expect(page.url()).toBe(`${h.url}/login`);
      await page.fill('#pw', 'wrong');
      await page.click('button.pri');
      expect(await page.locator('[role=alert]').textContent()).toBe('Wrong password.');
      await page.fill('#pw', 'correct horse');
      await page.click('button.pri');
      expect(page.url()).toBe(`${h.url}/`);
      const session = (await ctx.cookies()).find((c) => c.name === 'hearth_session')!;
      expect(session.httpOnly).toBe(true);
      expect(session.sameSite).toBe('Strict');
      expect(session.path).toBe('/');
      expect(session.expires * 1000 - Date.now()).toBeGreaterThan(29 * 86_400_000);

      await page.goto(`${h.url}/new`);
      await page.selectOption('#model', 'sim-model');
      await page.fill('#text', 'Hello behind a password');
      await page.click('button.pri');
      await page.waitForSelector('.final');
      expect(h.history.stats().conversations).toBe(1);

      const cookieHeader = (await ctx.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
      expect((await get(h, '/', cookieHeader)).status).toBe(200);
      await page.getByRole('button', { name: 'Log out' }).click();
      expect(page.url()).toBe(`${h.url}/login`);
      expect((await ctx.cookies()).find((c) => c.name === 'hearth_session')).toBeUndefined();
      expect((await get(h, '/', cookieHeader)).status).toBe(303); // the old cookie is revoked
    } finally {
      await ctx.close();
    }
  });
});

describe('a full disk', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ history: { minFreeBytes: Number.MAX_SAFE_INTEGER } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('shows a clear error page instead of failing', async () => {
    const s = await formSession(`${h.url}/new`);
    const res = await post(h, '/new', s.cookie, { _csrf: s.csrf, model: 'sim-model', text: 'hi' });
    expect(res.status).toBe(507);
    const body = await res.text();
    expect(body).toContain('<h1 class="err">The disk is full</h1>');
    expect(body).toContain('Nothing already saved was lost');
    const form = new FormData();
    form.set('_csrf', s.csrf);
    const doc = { format: 'hearth-history', version: 1, exportedAt: '2025-01-01T00:00:00Z', conversations: [{ id: 'a', title: 't', createdAt: 1, updatedAt: 2, source: 'chat', messageCount: 0, messages: [] }] };
    form.set('file', new File([JSON.stringify(doc)], 'x.json'));
    const imp = await fetch(`${h.url}/import`, { method: 'POST', headers: { cookie: s.cookie }, body: form });
    expect(imp.status).toBe(507);
  });
});
