// Reads ChatGPT's data export (`conversations.json`): an array of conversations, each a tree of
// message nodes in `mapping` (node id -> { message | null, parent, children }). The branch the
// user last saw ends at `current_node`; we walk from there up the parent chain, so edited or
// regenerated side branches are left out. Kept: the text of user, assistant and system messages
// addressed to everyone. Left out: empty and hidden messages (custom instructions, the empty
// system root), tool traffic (browsing, code execution), images and other non-text parts.

import { HistoryInputError } from './errors.ts';
import type { Conversation, Message, Role } from './types.ts';

interface GptMessage {
  id?: string;
  author?: { role?: string };
  content?: { content_type?: string; parts?: unknown[]; text?: unknown };
  create_time?: number | null;
  update_time?: number | null;
  status?: string;
  recipient?: string;
  metadata?: { model_slug?: string; is_visually_hidden_from_conversation?: boolean };
}

interface GptNode {
  id?: string;
  message?: GptMessage | null;
  parent?: string | null;
  children?: string[];
}

interface GptConversation {
  id?: string;
  conversation_id?: string;
  title?: string | null;
  create_time?: number | null;
  update_time?: number | null;
  mapping?: Record<string, GptNode>;
  current_node?: string | null;
  default_model_slug?: string | null;
}

const KEEP: ReadonlySet<string> = new Set(['user', 'assistant', 'system']);
const TEXT_TYPES: ReadonlySet<string> = new Set(['text', 'multimodal_text']);

function seconds(t: unknown, fallback: number): number {
  return typeof t === 'number' && Number.isFinite(t) && t > 0 ? Math.round(t * 1000) : fallback;
}

function textOf(m: GptMessage): string {
  const c = m.content;
  if (!c || !TEXT_TYPES.has(c.content_type ?? '') || !Array.isArray(c.parts)) return '';
  return c.parts
    .filter((p): p is string => typeof p === 'string')
    .join('\n')
    .trim();
}

/** The main branch, root first: from current_node (or the newest leaf) up to the root. */
function mainBranch(conv: GptConversation, mapping: Record<string, GptNode>): GptNode[] {
  let cursor = conv.current_node ?? undefined;
  if (!cursor || !mapping[cursor]) {
    // No current_node: take the leaf whose message is newest.
    let best: string | undefined;
    let bestTime = -Infinity;
    for (const [id, node] of Object.entries(mapping)) {
      if (node.children && node.children.length) continue;
      const t = node.message?.create_time ?? 0;
      if (t >= bestTime) {
        bestTime = t;
        best = id;
      }
    }
    cursor = best;
  }
  const out: GptNode[] = [];
  const seen = new Set<string>();
  while (cursor && mapping[cursor] && !seen.has(cursor)) {
    seen.add(cursor);
    out.push(mapping[cursor]);
    cursor = mapping[cursor].parent ?? undefined;
  }
  return out.reverse();
}

export function parseChatGptExport(doc: unknown): Array<{ conversation: Conversation; messages: Message[] }> {
  if (!Array.isArray(doc)) throw new HistoryInputError('import: a ChatGPT export (conversations.json) is a JSON array');
  const out: Array<{ conversation: Conversation; messages: Message[] }> = [];
  doc.forEach((raw: unknown, index: number) => {
    if (!raw || typeof raw !== 'object') throw new HistoryInputError(`import: conversations[${index}] must be an object`);
    const conv = raw as GptConversation;
    if (!conv.mapping || typeof conv.mapping !== 'object') {
      throw new HistoryInputError(`import: conversations[${index}] has no "mapping"; is this ChatGPT's conversations.json?`);
    }
    const sourceId = conv.conversation_id ?? conv.id;
    if (typeof sourceId !== 'string' || !/^[\w-]{1,100}$/.test(sourceId)) {
      throw new HistoryInputError(`import: conversations[${index}] has no usable "id"`);
    }
    const id = `chatgpt-${sourceId}`;
    const createdAt = seconds(conv.create_time, 0);
    const messages: Message[] = [];
    for (const node of mainBranch(conv, conv.mapping)) {
      const m = node.message;
      if (!m) continue;
      const role = m.author?.role ?? '';
      if (!KEEP.has(role)) continue;
      if (m.metadata?.is_visually_hidden_from_conversation) continue;
      if (m.recipient && m.recipient !== 'all') continue;
      const content = textOf(m);
      if (!content) continue;
      const t = seconds(m.create_time, messages.length ? messages[messages.length - 1].createdAt : createdAt);
      const msg: Message = {
        id: `${id}-${m.id ?? node.id ?? messages.length}`,
        conversationId: id,
        seq: messages.length,
        role: role as Role,
        content,
        status: 'complete',
        createdAt: t,
        updatedAt: seconds(m.update_time, t),
      };
      if (role === 'assistant' && m.metadata?.model_slug) msg.model = m.metadata.model_slug;
      messages.push(msg);
    }
    const updatedAt = Math.max(seconds(conv.update_time, createdAt), ...messages.map((m) => m.createdAt));
    const conversation: Conversation = {
      id,
      title: (typeof conv.title === 'string' && conv.title.trim()) || 'Imported conversation',
      createdAt: createdAt || messages[0]?.createdAt || updatedAt,
      updatedAt,
      source: 'import',
      messageCount: messages.length,
    };
    const model = conv.default_model_slug ?? messages.find((m) => m.model)?.model;
    if (model) conversation.model = model;
    const system = messages.find((m) => m.role === 'system');
    if (system) conversation.system = system.content;
    out.push({ conversation, messages });
  });
  return out;
}
