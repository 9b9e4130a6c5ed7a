// The page frame, the headers every page carries, and readable error pages.

import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { html, type Html, type Interpolation } from './html.ts';
import { STYLE } from './style.ts';
import type { WebEnv } from './types.ts';

export const CSP =
  "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'self'; base-uri 'none'; script-src 'none'";

/** Cache-busting version of the stylesheet, so it can be cached for a year. */
export const STYLE_PATH = `/style.css?v=${createHash('sha256').update(STYLE).digest('hex').slice(0, 10)}`;

export const PAGE_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  // Same-origin form posts carry a real Origin; links out carry nothing.
  'Referrer-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

export interface PageOptions {
  title: string;
  /** Inside <main>. */
  body: Interpolation;
  /** Extra tags in <head> (e.g. a refresh while an answer is written elsewhere). */
  head?: Html;
}

/** The top of every page up to and including `<main>`; streamed pages send this first. */
export function pageTop(c: Context<WebEnv>, title: string, head?: Html): Html {
  const loggedIn = c.get('loggedIn');
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="color-scheme" content="light dark"><meta name="referrer" content="same-origin"><title>${title} · Hearth</title><link rel="stylesheet" href="${STYLE_PATH}">${head}</head>
<body><header class="top"><a class="home" href="/">Hearth</a><a href="/new">New chat</a> ${
    loggedIn
      ? html`<form method="post" action="/logout">${csrfField(c)}<button class="link">Log out</button></form>`
      : ''
  }</header>
<main>`;
}

export const PAGE_END = html`</main></body></html>
`;

export function page(c: Context<WebEnv>, opts: PageOptions): Html {
  return html`${pageTop(c, opts.title, opts.head)}${opts.body}${PAGE_END}`;
}

export function csrfField(c: Context<WebEnv>): Html {
  return html`<input type="hidden" name="_csrf" value="${c.get('csrf')}">`;
}

export function send(c: Context<WebEnv>, body: Html, status = 200): Response {
  return c.body(body.value, status as 200, { 'Content-Type': 'text/html; charset=utf-8' });
}

/** A readable error page: what happened, and where to go from here. */
export function errorPage(c: Context<WebEnv>, status: number, title: string, message: string, back = '/'): Response {
  return send(
    c,
    page(c, {
      title,
      body: html`<h1 class="err">${title}</h1><p>${message}</p><p><a class="btn" href="${back}">Back</a></p>`,
    }),
    status,
  );
}

export function formatTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
