// CSRF tokens for every form. Hono's csrf() cannot be used: browsers send `Origin: null` (or no
// Sec-Fetch-Site) on plain-http home networks, see ../shared/notes/platform.md.
//
// Every browser gets a random `hearth_csrf` cookie (HttpOnly, SameSite=Strict); the token in
// forms is HMAC(secret, cookie, session id). A POST is accepted only with the token matching its
// own cookie and session, so another site can neither read nor forge one.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { errorPage } from './layout.ts';
import type { WebEnv } from './types.ts';

export const CSRF_COOKIE = 'hearth_csrf';

export function isHttps(c: Context): boolean {
  return new URL(c.req.url).protocol === 'https:';
}

export function csrfToken(secret: Buffer, cookie: string, sessionId: string): string {
  return createHmac('sha256', secret).update(`csrf\0${cookie}\0${sessionId}`).digest('base64url');
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Sets `c.var.csrf` for the page's forms (issuing the cookie if needed) and rejects every POST
 * without the right token with a 403 page. `sessionId` names the login session, '' without one.
 */
export function csrfGuard(secret: Buffer, sessionId: (c: Context<WebEnv>) => string): MiddlewareHandler<WebEnv> {
  return async (c, next) => {
    let cookie = getCookie(c, CSRF_COOKIE);
    if (!cookie || !/^[A-Za-z0-9_-]{22}$/.test(cookie)) {
      if (c.req.method === 'POST') return forbidden(c);
      cookie = randomBytes(16).toString('base64url');
      setCookie(c, CSRF_COOKIE, cookie, { httpOnly: true, sameSite: 'Strict', path: '/', secure: isHttps(c), maxAge: 400 * 86400 });
    }
    const expected = csrfToken(secret, cookie, sessionId(c));
    c.set('csrf', expected);
    if (c.req.method === 'POST') {
      let sent: unknown;
      try {
        sent = (await c.req.parseBody())._csrf;
      } catch {
        sent = undefined;
      }
      if (typeof sent !== 'string' || !safeEqual(sent, expected)) return forbidden(c);
    }
    await next();
  };
}

function forbidden(c: Context<WebEnv>): Response {
  return errorPage(
    c,
    403,
    'This form has expired',
    'The form was sent without a valid security token: it was open from before a restart or a login, or it came from another site. Nothing was changed. Go back, reload the page and try again.',
  );
}
