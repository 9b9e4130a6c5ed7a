// Export and import of the whole history: Hearth's own JSON format (FORMAT.md) both ways, and
// import of ChatGPT's `conversations.json` (see chatgpt.ts).

import { HistoryInputError } from './errors.ts';
import type { History } from './store.ts';
import type { Conversation, Message, MessageStatus, Role } from './types.ts';
import { parseChatGptExport } from './chatgpt.ts';

export const EXPORT_FORMAT = 'hearth-history';
export const EXPORT_VERSION = 1;

export type ExportedConversation = Conversation & { messages: Message[] };

export interface HearthExport {
  format: typeof EXPORT_FORMAT;
  version: typeof EXPORT_VERSION;
  exportedAt: string;
  conversations: ExportedConversation[];
}

export interface ImportReport {
  imported: number;
  replaced: number;
  skipped: number;
}

export function exportHistory(history: History, now: Date = new Date()): HearthExport {
  const conversations: ExportedConversation[] = [];
  for (const c of history.allConversations()) conversations.push({ ...c, messages: history.messages(c.id) });
  return { format: EXPORT_FORMAT, version: EXPORT_VERSION, exportedAt: now.toISOString(), conversations };
}

/** The same document as exportHistory, as chunks of JSON text, one conversation at a time, so a
 *  large history need not sit in memory twice (e.g. `stream.write` each chunk). */
export function* exportHistoryJson(history: History, now: Date = new Date()): Generator<string> {
  yield `{"format":"${EXPORT_FORMAT}","version":${EXPORT_VERSION},"exportedAt":${JSON.stringify(now.toISOString())},"conversations":[`;
  let first = true;
  for (const c of history.allConversations()) {
    yield (first ? '\n' : ',\n') + JSON.stringify({ ...c, messages: history.messages(c.id) });
    first = false;
  }
  yield '\n]}\n';
}

const ROLES: ReadonlySet<string> = new Set(['system', 'user', 'assistant', 'tool']);
const STATUSES: ReadonlySet<string> = new Set(['complete', 'streaming', 'stopped', 'interrupted', 'error']);
const SOURCES: ReadonlySet<string> = new Set(['chat', 'api', 'import']);

function fail(where: string, what: string): never {
  throw new HistoryInputError(`import: ${where}: ${what}`);
}

function str(v: unknown, where: string, field: string): string {
  if (typeof v !== 'string') fail(where, `"${field}" must be a string`);
  return v;
}

function time(v: unknown, where: string, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(where, `"${field}" must be milliseconds since 1970`);
  return Math.trunc(v);
}

function optionalObject(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Validates one exported conversation; unknown fields are dropped. */
function checkConversation(raw: unknown, index: number): { conversation: Conversation; messages: Message[] } {
  const where = `conversations[${index}]`;
  const c = optionalObject(raw) ?? fail(where, 'must be an object');
  const id = str(c.id, where, 'id');
  if (!/^[\w.:-]{1,128}$/.test(id)) fail(where, 'id must be 1-128 letters, digits, "_", "-", ".", ":"');
  const conversation: Conversation = {
    id,
    title: str(c.title, where, 'title'),
    createdAt: time(c.createdAt, where, 'createdAt'),
    updatedAt: time(c.updatedAt, where, 'updatedAt'),
    source: SOURCES.has(c.source as string) ? (c.source as Conversation['source']) : 'import',
    messageCount: 0,
  };
  if (typeof c.model === 'string') conversation.model = c.model;
  if (typeof c.system === 'string') conversation.system = c.system;
  const metadata = optionalObject(c.metadata);
  if (metadata) {
    conversation.metadata = Object.fromEntries(Object.entries(metadata).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  }
  const completion = optionalObject(c.completion);
  if (completion && typeof completion.created === 'number' && typeof completion.answerSeq === 'number') {
    conversation.completion = {
      created: completion.created,
      answerSeq: completion.answerSeq,
      finishReason: typeof completion.finishReason === 'string' ? completion.finishReason : null,
    };
  }
  if (!Array.isArray(c.messages)) fail(where, '"messages" must be an array');
  const messages = c.messages.map((rm: unknown, i: number): Message => {
    const mw = `${where}.messages[${i}]`;
    const m = optionalObject(rm) ?? fail(mw, 'must be an object');
    if (!ROLES.has(m.role as string)) fail(mw, `"role" must be one of ${[...ROLES].join(', ')}`);
    const status = (STATUSES.has(m.status as string) ? m.status : 'complete') as MessageStatus;
    const createdAt = m.createdAt === undefined ? conversation.createdAt : time(m.createdAt, mw, 'createdAt');
    const msg: Message = {
      id: typeof m.id === 'string' && m.id ? m.id : `${id}-${i}`,
      conversationId: id,
      seq: i,
      role: m.role as Role,
      content: str(m.content, mw, 'content'),
      status,
      createdAt,
      updatedAt: typeof m.updatedAt === 'number' ? Math.trunc(m.updatedAt) : createdAt,
    };
    for (const k of ['name', 'model', 'node', 'error'] as const) if (typeof m[k] === 'string') msg[k] = m[k] as string;
    const usage = optionalObject(m.usage);
    if (usage && ['prompt_tokens', 'completion_tokens', 'total_tokens'].every((k) => typeof usage[k] === 'number')) {
      msg.usage = usage as unknown as Message['usage'];
    }
    const timings = optionalObject(m.timings);
    if (timings) msg.timings = Object.fromEntries(Object.entries(timings).filter(([, v]) => typeof v === 'number'));
    return msg;
  });
  if (conversation.completion && conversation.completion.answerSeq >= messages.length) delete conversation.completion;
  return { conversation, messages };
}

/** Parses and validates a Hearth export document (already JSON.parse'd). Throws
 *  HistoryInputError naming the first bad field. */
export function parseHearthExport(doc: unknown): Array<{ conversation: Conversation; messages: Message[] }> {
  const d = optionalObject(doc) ?? fail('document', 'must be a JSON object');
  if (d.format !== EXPORT_FORMAT) fail('document', `"format" must be "${EXPORT_FORMAT}"`);
  if (d.version !== EXPORT_VERSION) {
    fail('document', `version ${JSON.stringify(d.version)} is not supported (this Hearth reads version ${EXPORT_VERSION})`);
  }
  if (!Array.isArray(d.conversations)) fail('document', '"conversations" must be an array');
  return d.conversations.map(checkConversation);
}

async function importAll(
  history: History,
  items: Array<{ conversation: Conversation; messages: Message[] }>,
): Promise<ImportReport> {
  const report: ImportReport = { imported: 0, replaced: 0, skipped: 0 };
  for (const { conversation, messages } of items) {
    report[await history.importConversation(conversation, messages)]++;
  }
  return report;
}

/** Imports a Hearth export. Idempotent by id: importing the same file twice changes nothing. */
export async function importHearthExport(history: History, doc: unknown): Promise<ImportReport> {
  return importAll(history, parseHearthExport(doc));
}

/** Imports ChatGPT's `conversations.json` (already JSON.parse'd). Ids are "chatgpt-<id>", so
 *  importing the same export twice changes nothing. */
export async function importChatGpt(history: History, doc: unknown): Promise<ImportReport> {
  return importAll(history, parseChatGptExport(doc));
}

/** Recognises either format. */
export async function importAny(history: History, doc: unknown): Promise<ImportReport> {
  if (Array.isArray(doc)) return importChatGpt(history, doc);
  return importHearthExport(history, doc);
}
