// Who may use the chat. With a password: a login page and a signed session cookie (HttpOnly,
// SameSite=Strict) that lasts `sessionDays`; logout revokes it, across restarts when given a
// store. Without a password: only clients on loopback or a private network are served.

import { createHmac, randomBytes } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { Hono } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { isPrivateAddress } from '../cluster/discovery/addresses.ts';
import type { RevokedStore } from '../gateway/chat-files.ts';
import { keyChecker } from '../gateway/auth.ts';
import { remoteAddress } from '../gateway/remote.ts';
import { isHttps, safeEqual } from './csrf.ts';
import { html } from './html.ts';
import { csrfField, errorPage, page, send } from './layout.ts';
import type { WebEnv } from './types.ts';

export const SESSION_COOKIE = 'hearth_session';
const DAY = 86_400_000;
/** Paths served to anyone: the login page itself and the stylesheet it needs. */
const PUBLIC = new Set(['/login', '/style.css', '/favicon.ico']);

export class Sessions {
  /** Session ids logged out before their expiry (until then). */
  private readonly revoked: Map<string, number>;
  private failures: number[] = [];
  /** Constant-time, like the API's keys; false for everything when no password is set. */
  readonly checkPassword: (given: string) => boolean;

  constructor(
    private readonly secret: Buffer,
    private readonly password: string | undefined,
    private readonly days: number,
    private readonly store?: RevokedStore,
  ) {
    this.revoked = store?.load() ?? new Map();
    this.checkPassword = keyChecker(this.enabled ? [password!] : []);
  }

  get enabled(): boolean {
    return this.password !== undefined && this.password !== '';
  }

  private mac(sid: string, exp: number): string {
    return createHmac('sha256', this.secret).update(`session\0${sid}\0${exp}`).digest('base64url');
  }

  /** The id of the request's valid session, or undefined. */
  current(c: Context): string | undefined {
    const v = getCookie(c, SESSION_COOKIE);
    if (!v) return undefined;
    const [sid, expText, mac] = v.split('.');
    const exp = Number(expText);
    if (!sid || !mac || !Number.isSafeInteger(exp) || exp <= Date.now()) return undefined;
    if (!safeEqual(mac, this.mac(sid, exp))) return undefined;
    if (this.revoked.has(sid)) return undefined;
    return sid;
  }

  /** At most 10 wrong passwords a minute, for the whole gateway. */
  throttled(): boolean {
    const now = Date.now();
    this.failures = this.failures.filter((t) => now - t < 60_000);
    return this.failures.length >= 10;
  }

  failed(): void {
    this.failures.push(Date.now());
  }

  login(c: Context): void {
    const sid = randomBytes(16).toString('base64url');
    const exp = Date.now() + this.days * DAY;
    setCookie(c, SESSION_COOKIE, `${sid}.${exp}.${this.mac(sid, exp)}`, {
      httpOnly: true,
      sameSite: 'Strict',
      path: '/',
      secure: isHttps(c),
      expires: new Date(exp),
    });
  }

  logout(c: Context): void {
    const sid = this.current(c);
    if (sid) {
      const now = Date.now();
      for (const [k, exp] of this.revoked) if (exp <= now) this.revoked.delete(k);
      this.revoked.set(sid, now + this.days * DAY);
      this.store?.save(this.revoked);
    }
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
  }
}

/** Lets a request through only when it may see the chat. */
export function accessGuard(sessions: Sessions): MiddlewareHandler<WebEnv> {
  return async (c, next) => {
    c.set('loggedIn', false);
    const sid = sessions.current(c);
    c.set('session', sid);
    if (PUBLIC.has(c.req.path)) return next();
    if (sessions.enabled) {
      if (sid) {
        c.set('loggedIn', true);
        return next();
      }
      if (c.req.method === 'GET') return c.redirect('/login', 303);
      return errorPage(c, 401, 'Please log in', 'Your session has ended. Log in and send the form again.', '/login');
    }
    if (!isPrivateAddress(remoteAddress(c))) {
      return errorPage(
        c,
        403,
        'Not available from here',
        'Without a password the chat is served only on the home network (loopback and private addresses). Set a chat password in the configuration to use it from elsewhere.',
      );
    }
    return next();
  };
}

export function loginRoutes(sessions: Sessions): Hono<WebEnv> {
  const app = new Hono<WebEnv>();
  const form = (c: Context<WebEnv>, error?: string) =>
    page(c, {
      title: 'Log in',
      body: html`<h1>Log in</h1>${error ? html`<p class="err" role="alert">${error}</p>` : ''}
<form method="post" action="/login">${csrfField(c)}<label for="pw">Password</label><input id="pw" type="password" name="password" autocomplete="current-password" required autofocus><p><button class="pri">Log in</button></p></form>`,
    });

  app.get('/login', (c) => {
    if (!sessions.enabled || sessions.current(c)) return c.redirect('/', 303);
    return send(c, form(c));
  });
  app.post('/login', async (c) => {
    if (!sessions.enabled) return c.redirect('/', 303);
    if (sessions.throttled()) return send(c, form(c, 'Too many wrong passwords: wait a minute and try again.'), 429);
    const body = await c.req.parseBody();
    const pw = typeof body.password === 'string' ? body.password : '';
    if (!sessions.checkPassword(pw)) {
      sessions.failed();
      return send(c, form(c, 'Wrong password.'), 401);
    }
    sessions.login(c);
    return c.redirect('/', 303);
  });
  app.post('/logout', (c) => {
    sessions.logout(c);
    return c.redirect('/login', 303);
  });
  return app;
}
