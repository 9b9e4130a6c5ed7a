// The conversation page, its messages and its composer; the new-chat, rename and delete pages.

import type { Context } from 'hono';
import type { Conversation, Message } from '../gateway/history/types.ts';
import { html, type Html } from './html.ts';
import { csrfField, formatTime, page } from './layout.ts';
import { renderMarkdown } from './markdown.ts';
import type { WebEnv } from './types.ts';

const STATUS_NOTE: Record<string, string> = {
  stopped: 'stopped',
  interrupted: 'interrupted (the gateway restarted)',
  error: 'failed',
  streaming: 'being written…',
};

export function answerMeta(m: Message): Html {
  const bits: string[] = [];
  if (m.model) bits.push(m.model);
  if (m.node) bits.push(`on ${m.node}`);
  if (m.timings?.tokensPerSecond) bits.push(`${m.timings.tokensPerSecond.toFixed(1)} tok/s`);
  if (m.usage) bits.push(`${m.usage.completion_tokens} tokens`);
  const note = STATUS_NOTE[m.status];
  return html`<p class="meta">${bits.join(' · ')}${note ? html`${bits.length ? ' · ' : ''}<strong>${note}</strong>` : ''}${
    m.error ? html`<br><span class="err">${m.error}</span>` : ''
  }</p>`;
}

function messageView(c: Context<WebEnv>, conv: Conversation, m: Message, lastAssistant: boolean): Html {
  if (m.role === 'user') {
    return html`<article class="msg user" id="m${m.seq}"><p class="who">You</p>${renderMarkdown(m.content)}<p class="act"><a href="/c/${conv.id}/edit/${m.seq}">Edit and resend</a></p></article>`;
  }
  const cls = m.status === 'error' ? 'msg assistant error' : 'msg assistant';
  const who = m.role === 'assistant' ? 'Assistant' : m.role === 'system' ? 'System' : 'Tool';
  return html`<article class="${cls}" id="m${m.seq}"><p class="who">${who}</p>${renderMarkdown(m.content)}${
    m.role === 'assistant' ? answerMeta(m) : ''
  }${
    lastAssistant && m.status !== 'streaming'
      ? html`<form class="act" method="post" action="/c/${conv.id}/regenerate">${csrfField(c)}<input type="hidden" name="n" value="${conv.messageCount}"><button>Regenerate</button></form>`
      : ''
  }</article>`;
}

export function conversationHeader(conv: Conversation): Html {
  return html`<h1>${conv.title}</h1><p class="meta">${conv.model ?? ''}${conv.model ? ' · ' : ''}${formatTime(conv.updatedAt)}</p><p class="act"><a href="/c/${conv.id}/rename">Rename</a> <a href="/c/${conv.id}/delete">Delete</a></p>${
    conv.system ? html`<details><summary>System prompt</summary><div class="msg">${renderMarkdown(conv.system)}</div></details>` : ''
  }`;
}

/** Every message, rendered. The last assistant answer gets a Regenerate button. */
export function messagesView(c: Context<WebEnv>, conv: Conversation, messages: Message[]): Html {
  let lastAssistant = -1;
  for (const m of messages) if (m.role === 'assistant') lastAssistant = m.seq;
  const last = messages[messages.length - 1];
  return html`${messages.map((m) => messageView(c, conv, m, m.seq === lastAssistant && m === last))}`;
}

export function modelSelect(models: string[], current: string | undefined, id = 'model'): Html {
  const all = current && !models.includes(current) ? [current, ...models] : models;
  return html`<select id="${id}" name="model" aria-label="Model">${all.map(
    (m) => html`<option value="${m}"${m === current ? html` selected` : ''}>${m}${models.includes(m) ? '' : ' (not available now)'}</option>`,
  )}</select>`;
}

export function composer(c: Context<WebEnv>, conv: Conversation, models: string[]): Html {
  return html`<form class="composer" id="composer" method="post" action="/c/${conv.id}/send">${csrfField(c)}<input type="hidden" name="n" value="${conv.messageCount}"><textarea name="text" aria-label="Message" placeholder="Message" required></textarea><div class="row">${modelSelect(
    models,
    conv.model ?? models[0],
  )}<button class="pri">Send</button></div>${models.length === 0 ? html`<p class="meta err">No model is available now: no inference node is up.</p>` : ''}</form>`;
}

export function conversationPage(c: Context<WebEnv>, conv: Conversation, messages: Message[], models: string[]): Html {
  const writing = messages.some((m) => m.status === 'streaming');
  return page(c, {
    title: conv.title,
    // An answer still being written (its page was closed): refresh to follow it.
    head: writing ? html`<meta http-equiv="refresh" content="3">` : undefined,
    body: html`${conversationHeader(conv)}${messagesView(c, conv, messages)}<span id="end"></span>${
      writing
        ? html`<form method="post" action="/c/${conv.id}/stop">${csrfField(c)}<button>Stop</button></form>`
        : composer(c, conv, models)
    }`,
  });
}

export function newChatPage(c: Context<WebEnv>, models: string[], error?: string): Html {
  return page(c, {
    title: 'New chat',
    body: html`<h1>New chat</h1>${error ? html`<p class="err" role="alert">${error}</p>` : ''}<form method="post" action="/new">${csrfField(c)}
<label for="model">Model</label>${modelSelect(models, models[0])}${
      models.length === 0 ? html`<p class="err">No model is available now: no inference node is up. Try again when one is.</p>` : ''
    }
<details><summary>System prompt (optional)</summary><textarea id="system" name="system" aria-label="System prompt" placeholder="You are a helpful assistant."></textarea></details>
<label for="text">Message</label><textarea id="text" name="text" required></textarea>
<p><button class="pri">Send</button></p></form>`,
  });
}

export function editPage(c: Context<WebEnv>, conv: Conversation, m: Message): Html {
  return page(c, {
    title: `Edit · ${conv.title}`,
    body: html`<h1>Edit and resend</h1><p>The messages after this one will be replaced by a new answer.</p><form method="post" action="/c/${conv.id}/edit/${m.seq}">${csrfField(c)}<input type="hidden" name="n" value="${conv.messageCount}"><label for="text">Message</label><textarea id="text" name="text" required rows="6">${m.content}</textarea><p class="row"><button class="pri">Resend</button><a class="btn" href="/c/${conv.id}">Cancel</a></p></form>`,
  });
}

export function renamePage(c: Context<WebEnv>, conv: Conversation, error?: string): Html {
  return page(c, {
    title: `Rename · ${conv.title}`,
    body: html`<h1>Rename</h1>${error ? html`<p class="err" role="alert">${error}</p>` : ''}<form method="post" action="/c/${conv.id}/rename">${csrfField(c)}<label for="title">Title</label><input id="title" name="title" value="${conv.title}" maxlength="200" required><p class="row"><button class="pri">Save</button><a class="btn" href="/c/${conv.id}">Cancel</a></p></form>`,
  });
}

export function deletePage(c: Context<WebEnv>, conv: Conversation): Html {
  return page(c, {
    title: `Delete · ${conv.title}`,
    body: html`<h1>Delete this conversation?</h1><p>“${conv.title}” and its ${conv.messageCount} messages will be deleted for good.</p><form method="post" action="/c/${conv.id}/delete">${csrfField(c)}<p class="row"><button class="pri">Delete</button><a class="btn" href="/c/${conv.id}">Keep it</a></p></form>`,
  });
}
