// The conversation list: newest first, with search and paging.

import type { Context } from 'hono';
import type { ConversationPage } from '../gateway/history/types.ts';
import { html, type Html } from './html.ts';
import { formatTime, page } from './layout.ts';
import type { WebEnv } from './types.ts';

export function listPage(c: Context<WebEnv>, result: ConversationPage, q: string): Html {
  const items = result.items;
  const next = result.nextCursor ? `/?${new URLSearchParams(q ? { q, after: result.nextCursor } : { after: result.nextCursor })}` : undefined;
  return page(c, {
    title: q ? `Search: ${q}` : 'Conversations',
    body: html`<h1>Conversations</h1>
<form class="search" method="get" action="/" role="search"><input type="search" name="q" value="${q}" aria-label="Search conversations" placeholder="Search"><button>Search</button></form>
${
  items.length === 0
    ? html`<p>${q ? html`Nothing matches “${q}”. <a href="/">Show all</a>` : html`No conversations yet. <a href="/new">Start one</a>.`}</p>`
    : html`<ul class="list">${items.map(
        (conv) =>
          html`<li><a href="/c/${conv.id}#end"><span class="t">${conv.title}</span><span class="meta">${formatTime(conv.updatedAt)} · ${conv.messageCount} messages${conv.model ? html` · ${conv.model}` : ''}${conv.source === 'api' ? ' · API' : ''}</span></a></li>`,
      )}</ul>`
}
${next ? html`<p><a class="btn" href="${next}">Older</a></p>` : ''}
<p class="act"><a class="btn pri" href="/new">New chat</a> <a class="btn" href="/export">Export all</a> <a class="btn" href="/import">Import</a></p>`,
  });
}
