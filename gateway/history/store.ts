// The history store: conversations and messages in one LMDB environment (lmdb-js).
//
// Layout (named sub-databases, msgpack values, no compression: lmdb's LZ4 crashes on 32-bit ARM):
//   meta           'schemaVersion' -> number
//   conversations  id -> Conversation
//   byUpdated      [updatedAt, id] -> 1          newest-first listing, oldest-first pruning
//   messages       [conversationId, seq] -> Message
//   streaming      [conversationId, seq] -> 1    answers being written; left over = interrupted
//   completions    [created, id] -> 1            stored chat completions in OpenAI's order
//
// Durability: lmdb's default settings sync every commit, so a commit survives a power cut, and
// LMDB's copy-on-write pages mean a failed or cut commit leaves the last good state. An answer
// being streamed is rewritten every `flushIntervalMs` (default 500 ms) by one shared timer, so
// all live answers go into one commit; a kill -9 loses at most that interval plus one commit.
//
// Full disk: lmdb-js 3.5.6 survives ENOSPC on disk but its error path overflows a 100-byte heap
// buffer (mdb.c, "Attempting to write page at position ...") and corrupts the heap. So the store
// never lets LMDB reach ENOSPC if it can help it: before every write it checks the free space
// (statfs) against a reserve and throws HistoryFullError instead. Answers
// already streaming may dip into the lower half of the reserve so they can finish. A real
// ENOSPC / MDB_MAP_FULL from LMDB is still mapped to HistoryFullError as a last resort.

import { nodeCrypto } from '../../cluster/crypto.ts';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import { HistoryFullError, HistoryInputError, HistoryNotFoundError } from './errors.ts';
import { migrate, type MigrationReport } from './migrations.ts';
import type {
  AnswerResult,
  AnswerWriter,
  CompletionListOptions,
  CompletionPage,
  CompletionRequest,
  Conversation,
  ConversationPage,
  ListOptions,
  Message,
  NewConversation,
  NewMessage,
  Role,
  Timings,
  Usage,
} from './types.ts';

export interface HistoryOptions {
  dir: string;
  /** Keep the stored data under about this many bytes by deleting the least recently updated
   *  conversations (checked at open, every `pruneIntervalMs`, and after writes at most every 30 s). */
  maxBytes?: number;
  /** Delete conversations not updated for this many days. */
  retentionDays?: number;
  /** LMDB map size. Default 512 MiB on 32-bit ARM, 2 GiB elsewhere (address space only, not disk).
   *  lmdb-js grows the map when it fills. */
  mapSize?: number;
  /** Free disk space below which new writes are refused with HistoryFullError. Default 16 MiB. */
  minFreeBytes?: number;
  /** How often streaming answers are persisted. Default 500 ms (the promise is at most 1 s). */
  flushIntervalMs?: number;
  /** How often limits are enforced in the background. Default 10 minutes. */
  pruneIntervalMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface HistoryStats {
  conversations: number;
  messages: number;
  /** Bytes held by the data pages of all sub-databases. */
  usedBytes: number;
  /** Size of data.mdb on disk (never shrinks; freed pages are reused). */
  fileBytes: number;
  freeDiskBytes: number;
  schemaVersion: number;
}

export interface StoredCompletion {
  conversation: Conversation;
  /** The request's messages (seq < answerSeq). */
  request: Message[];
  answer: Message | undefined;
}

export interface History {
  readonly dir: string;
  readonly migration: MigrationReport;
  /** How many answers were found still 'streaming' at open and marked 'interrupted'. */
  readonly recovered: number;
  /** Throws HistoryFullError when new content could not be stored now. */
  checkRoom(): void;

  createConversation(input?: NewConversation): Promise<Conversation>;
  getConversation(id: string): Conversation | undefined;
  listConversations(opts?: ListOptions): ConversationPage;
  renameConversation(id: string, title: string): Promise<Conversation>;
  updateMetadata(id: string, metadata: Record<string, string>): Promise<Conversation>;
  deleteConversation(id: string): Promise<boolean>;
  messages(conversationId: string): Message[];
  getMessage(conversationId: string, seq: number): Message | undefined;
  addMessage(conversationId: string, message: NewMessage): Promise<Message>;
  /** Deletes every message with a seq above `seq` (edit-and-resend, regenerate). Returns how many. */
  truncateAfter(conversationId: string, seq: number): Promise<number>;
  /** Creates an empty assistant message with status 'streaming' and returns its writer. */
  startAnswer(conversationId: string, opts?: { model?: string; node?: string }): Promise<AnswerWriter>;

  /** Stored completions (`store: true`): creates the conversation (id = completion id) with the
   *  request's messages and returns the writer of the answer. */
  startCompletion(req: CompletionRequest): Promise<AnswerWriter>;
  /** Non-streaming convenience: startCompletion + append + finish. */
  saveCompletion(
    req: CompletionRequest,
    response: { content: string; finishReason?: string | null; usage?: Usage; timings?: Timings; node?: string },
  ): Promise<StoredCompletion>;
  getCompletion(id: string): StoredCompletion | undefined;
  listCompletions(opts?: CompletionListOptions): CompletionPage;

  /** Imports one conversation with its messages, idempotent by id: an existing conversation is
   *  kept unless the imported one was updated later, in which case it is replaced. */
  importConversation(conversation: Conversation, messages: Message[]): Promise<'imported' | 'replaced' | 'skipped'>;
  /** All conversations, most recently updated first (for export). */
  allConversations(): Iterable<Conversation>;

  /** Applies retentionDays and maxBytes now. */
  prune(): Promise<{ removed: number }>;
  stats(): HistoryStats;
  /** Persists live answers, stops timers, closes LMDB. Live answers stay 'streaming' on disk
   *  (and become 'interrupted' at the next open) unless finished before. */
  close(): Promise<void>;
}

const DAY = 86_400_000;
const MiB = 1024 * 1024;

export function newId(): string {
  return nodeCrypto().randomBytes(12).toString('base64url');
}

/** The role a request's message is stored with: `developer` as system, anything unknown as user. */
function storedRole(role: string): Role {
  return role === 'developer' ? 'system' : ROLES.has(role) ? (role as Role) : 'user';
}

function titleFrom(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  if (!line) return 'New conversation';
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

function formatBytes(n: number): string {
  return n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : `${Math.round(n / 1024)} KiB`;
}

const ROLES: ReadonlySet<string> = new Set(['system', 'user', 'assistant', 'tool']);

/** OpenAI message content (string or parts) as plain text. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : ''))
      .filter(Boolean)
      .join('\n');
  }
  return '';
}

function encodeCursor(key: [number, string]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

function decodeCursor(cursor: string): [number, string] {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    // fall through
  }
  throw new HistoryInputError(`invalid cursor ${JSON.stringify(cursor)}`);
}

function isFullError(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown } | undefined;
  const code = err?.code;
  const message = typeof err?.message === 'string' ? err.message : '';
  return code === 28 || code === 'ENOSPC' || code === -30792 || /MDB_MAP_FULL|No space left/i.test(message);
}

type MsgKey = [string, number];

class Writer implements AnswerWriter {
  content = '';
  error: Error | undefined;
  dirty = false;
  detached = false;
  finished = false;
  constructor(
    readonly store: LmdbHistory,
    readonly message: Message,
  ) {}
  get id(): string {
    return this.message.id;
  }
  get conversationId(): string {
    return this.message.conversationId;
  }
  get seq(): number {
    return this.message.seq;
  }
  append(delta: string): void {
    if (this.finished || !delta) return;
    this.content += delta;
    this.dirty = true;
  }
  finish(result: AnswerResult): Promise<Message> {
    if (this.finished) return Promise.reject(new Error('answer already finished'));
    this.finished = true;
    return this.store.finishAnswer(this, result);
  }
}

class LmdbHistory implements History {
  readonly migration: MigrationReport;
  recovered = 0;
  private readonly meta: Database;
  private readonly conversations: Database<Conversation, string>;
  private readonly byUpdated: Database<number, [number, string]>;
  private readonly msgs: Database<Message, MsgKey>;
  private readonly streaming: Database<number, MsgKey>;
  private readonly completions: Database<number, [number, string]>;
  private readonly live = new Set<Writer>();
  private flushTimer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private lastPrune = 0;
  private pruning: Promise<{ removed: number }> | undefined;
  private closed = false;
  private readonly now: () => number;
  private readonly minFreeBytes: number;
  private readonly flushIntervalMs: number;

  constructor(
    private readonly env: RootDatabase,
    readonly dir: string,
    private readonly opts: HistoryOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.minFreeBytes = opts.minFreeBytes ?? 16 * MiB;
    this.flushIntervalMs = opts.flushIntervalMs ?? 500;
    const db = <V, K extends import('lmdb').Key>(name: string) =>
      env.openDB<V, K>({ name, compression: false, cache: false });
    this.meta = db('meta');
    this.conversations = db('conversations');
    this.byUpdated = db('byUpdated');
    this.msgs = db('messages');
    this.streaming = db('streaming');
    this.completions = db('completions');
    this.migration = migrate({ env, db: (name) => db(name) }, this.meta);
    this.recoverInterrupted();
    const every = opts.pruneIntervalMs ?? 600_000;
    if (opts.maxBytes || opts.retentionDays) {
      this.pruneTimer = setInterval(() => void this.prune().catch(() => {}), every);
      this.pruneTimer.unref();
    }
  }

  // ---- writes: guards and error mapping ----------------------------------------------------

  /** Free bytes on the store's filesystem. statfs costs microseconds and writes are a few per
   *  second, so it is asked every time: a cached value would let a burst of writes run the disk
   *  full between two looks. */
  private freeDisk(): number {
    try {
      const s = fs.statfsSync(this.dir);
      return s.bavail * s.bsize;
    } catch {
      return Infinity;
    }
  }

  /** Pages inside data.mdb that LMDB can reuse (freed by deletes): the file never shrinks, so
   *  after a cleanup the disk still looks full while the store has room. */
  private internalFree(): number {
    try {
      const fileBytes = fs.statSync(path.join(this.dir, 'data.mdb')).size;
      type S = { pageSize: number; treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number };
      const env = this.env.getStats() as S & { root?: S; free?: S };
      const pages = (s: S | undefined) => (s ? s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages : 0);
      const held = this.usedBytes() + (pages(env.root) + pages(env.free) + 2) * env.pageSize;
      return Math.max(0, fileBytes - held);
    } catch {
      return 0;
    }
  }

  /** Throws HistoryFullError when new content could not be stored now. */
  checkRoom(): void {
    this.guard('grow');
  }

  /** 'grow': new content, needs the whole reserve; 'finish': live answers and deletions may use
   *  the lower half of it. Free pages inside the file count as room, but the disk itself must
   *  keep a quarter of the reserve, as LMDB may still need to grow the file a little. */
  private guard(kind: 'grow' | 'finish'): void {
    if (this.closed) throw new Error('history store is closed');
    const reserve = kind === 'grow' ? this.minFreeBytes : this.minFreeBytes / 2;
    if (reserve <= 0) return;
    const disk = this.freeDisk();
    if (disk >= reserve) return;
    const room = disk + this.internalFree();
    if (room < reserve || disk < reserve / 4) {
      throw new HistoryFullError(
        `history storage is full: ${formatBytes(disk)} free on the disk holding ${this.dir}, ` +
          `Hearth keeps ${formatBytes(this.minFreeBytes)} in reserve. Delete old conversations or free ` +
          'disk space; everything already stored is intact.',
      );
    }
  }

  private async commit<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      let cause: unknown = e;
      const commitError = (e as { commitError?: Promise<unknown> } | undefined)?.commitError;
      if (commitError && typeof commitError.then === 'function') {
        cause = await commitError.then(
          () => e,
          (x: unknown) => x,
        );
      }
      // A short write is reported as EIO by LMDB ("filesystem full?"): full if the disk says so.
      const shortWrite = (cause as { code?: unknown } | undefined)?.code === 5 && this.freeDisk() < Math.max(this.minFreeBytes, MiB);
      if (isFullError(cause) || shortWrite) {
        throw new HistoryFullError(
          `history storage is full (${(cause as Error).message}); the write was not stored, everything ` +
            'stored before is intact. Delete old conversations or free disk space.',
          { cause },
        );
      }
      throw cause;
    }
  }

  private maybePruneSoon(): void {
    if (!(this.opts.maxBytes || this.opts.retentionDays)) return;
    if (this.now() - this.lastPrune < 30_000) return;
    this.lastPrune = this.now();
    setImmediate(() => void this.prune().catch(() => {}));
  }

  // ---- conversations ------------------------------------------------------------------------

  private requireConversation(id: string): Conversation {
    const c = this.conversations.get(id);
    if (!c) throw new HistoryNotFoundError(`no conversation with id ${JSON.stringify(id)}`);
    return c;
  }

  /** Writes a conversation and moves its byUpdated key; call inside a transaction. */
  private putConversation(next: Conversation, prev: Conversation | undefined): void {
    if (prev && (prev.updatedAt !== next.updatedAt || prev.id !== next.id)) {
      this.byUpdated.remove([prev.updatedAt, prev.id]);
    }
    this.conversations.put(next.id, next);
    this.byUpdated.put([next.updatedAt, next.id], 1);
  }

  async createConversation(input: NewConversation = {}): Promise<Conversation> {
    this.guard('grow');
    const t = input.createdAt ?? this.now();
    const conv: Conversation = {
      id: input.id ?? newId(),
      title: input.title?.trim() || 'New conversation',
      createdAt: t,
      updatedAt: t,
      source: input.source ?? 'chat',
      messageCount: 0,
    };
    if (input.model) conv.model = input.model;
    if (input.system) conv.system = input.system;
    if (input.metadata) conv.metadata = { ...input.metadata };
    await this.commit(
      this.env.transaction(() => {
        if (this.conversations.doesExist(conv.id)) throw new HistoryInputError(`conversation ${conv.id} already exists`);
        this.putConversation(conv, undefined);
      }),
    );
    this.maybePruneSoon();
    return conv;
  }

  getConversation(id: string): Conversation | undefined {
    return this.conversations.get(id);
  }

  listConversations(opts: ListOptions = {}): ConversationPage {
    const limit = Math.min(Math.max(Math.trunc(opts.limit ?? 20), 1), 100);
    const needle = opts.search?.trim().toLowerCase();
    const start = opts.after ? decodeCursor(opts.after) : undefined;
    const items: Conversation[] = [];
    let lastKey: [number, string] | undefined;
    let more = false;
    for (const { key } of this.byUpdated.getRange({ reverse: true, start, exclusiveStart: !!start })) {
      const conv = this.conversations.get(key[1]);
      if (!conv) continue;
      if (opts.source && conv.source !== opts.source) continue;
      if (needle && !this.matches(conv, needle)) continue;
      if (items.length === limit) {
        more = true;
        break;
      }
      items.push(conv);
      lastKey = key;
    }
    return more && lastKey ? { items, nextCursor: encodeCursor(lastKey) } : { items };
  }

  private matches(conv: Conversation, needle: string): boolean {
    if (conv.title.toLowerCase().includes(needle)) return true;
    for (const { value } of this.msgs.getRange({ start: [conv.id, 0], end: [conv.id, Number.MAX_SAFE_INTEGER] })) {
      if (value.content.toLowerCase().includes(needle)) return true;
    }
    return false;
  }

  async renameConversation(id: string, title: string): Promise<Conversation> {
    const clean = title.replace(/\s+/g, ' ').trim();
    if (!clean) throw new HistoryInputError('a title cannot be empty');
    if (clean.length > 200) throw new HistoryInputError('a title is at most 200 characters');
    this.guard('finish');
    return this.commit(
      this.env.transaction(() => {
        const prev = this.requireConversation(id);
        const next = { ...prev, title: clean, updatedAt: Math.max(this.now(), prev.updatedAt) };
        this.putConversation(next, prev);
        return next;
      }),
    );
  }

  async updateMetadata(id: string, metadata: Record<string, string>): Promise<Conversation> {
    validateMetadata(metadata);
    this.guard('finish');
    return this.commit(
      this.env.transaction(() => {
        const prev = this.requireConversation(id);
        const next = { ...prev, metadata: { ...metadata } };
        this.putConversation(next, prev);
        return next;
      }),
    );
  }

  async deleteConversation(id: string): Promise<boolean> {
    this.guard('finish');
    this.detachWriters(id, -1);
    return this.commit(this.env.transaction(() => this.removeConversationInTxn(id)));
  }

  private removeConversationInTxn(id: string): boolean {
    const conv = this.conversations.get(id);
    if (!conv) return false;
    for (const key of this.msgs.getKeys({ start: [id, 0], end: [id, Number.MAX_SAFE_INTEGER] })) {
      this.msgs.remove(key);
      this.streaming.remove(key);
    }
    this.byUpdated.remove([conv.updatedAt, id]);
    if (conv.completion) this.completions.remove([conv.completion.created, id]);
    this.conversations.remove(id);
    return true;
  }

  private detachWriters(conversationId: string, afterSeq: number): void {
    for (const w of this.live) {
      if (w.conversationId === conversationId && w.seq > afterSeq) {
        w.detached = true;
        this.live.delete(w);
      }
    }
  }

  // ---- messages -----------------------------------------------------------------------------

  messages(conversationId: string): Message[] {
    const out: Message[] = [];
    for (const { value } of this.msgs.getRange({ start: [conversationId, 0], end: [conversationId, Number.MAX_SAFE_INTEGER] })) {
      out.push(value);
    }
    return out;
  }

  getMessage(conversationId: string, seq: number): Message | undefined {
    return this.msgs.get([conversationId, seq]);
  }

  private nextSeq(conversationId: string): number {
    for (const key of this.msgs.getKeys({
      start: [conversationId, Number.MAX_SAFE_INTEGER],
      end: [conversationId, 0],
      reverse: true,
      inclusiveEnd: true,
      limit: 1,
    })) {
      return key[1] + 1;
    }
    return 0;
  }

  private buildMessage(conv: Conversation, seq: number, m: NewMessage): Message {
    if (!ROLES.has(m.role)) throw new HistoryInputError(`invalid role ${JSON.stringify(m.role)}`);
    if (typeof m.content !== 'string') throw new HistoryInputError('message content must be a string');
    const t = m.createdAt ?? this.now();
    const msg: Message = {
      id: m.id ?? newId(),
      conversationId: conv.id,
      seq,
      role: m.role,
      content: m.content,
      status: m.status ?? 'complete',
      createdAt: t,
      updatedAt: t,
    };
    for (const k of ['name', 'model', 'node', 'usage', 'timings', 'error'] as const) {
      if (m[k] !== undefined) (msg as unknown as Record<string, unknown>)[k] = m[k];
    }
    return msg;
  }

  /** Appends a message in the current transaction and bumps the conversation. */
  private addInTxn(conversationId: string, m: NewMessage): Message {
    const prev = this.requireConversation(conversationId);
    const seq = this.nextSeq(conversationId);
    const msg = this.buildMessage(prev, seq, m);
    this.msgs.put([conversationId, seq], msg);
    const next: Conversation = {
      ...prev,
      messageCount: seq + 1,
      updatedAt: Math.max(msg.createdAt, prev.updatedAt),
    };
    if (prev.messageCount === 0 && prev.title === 'New conversation' && m.role === 'user') next.title = titleFrom(m.content);
    if (m.model) next.model = m.model;
    this.putConversation(next, prev);
    return msg;
  }

  async addMessage(conversationId: string, message: NewMessage): Promise<Message> {
    this.guard('grow');
    const msg = await this.commit(this.env.transaction(() => this.addInTxn(conversationId, message)));
    this.maybePruneSoon();
    return msg;
  }

  async truncateAfter(conversationId: string, seq: number): Promise<number> {
    this.guard('finish');
    this.detachWriters(conversationId, seq);
    return this.commit(
      this.env.transaction(() => {
        const prev = this.requireConversation(conversationId);
        let removed = 0;
        for (const key of this.msgs.getKeys({
          start: [conversationId, seq + 1],
          end: [conversationId, Number.MAX_SAFE_INTEGER],
        })) {
          this.msgs.remove(key);
          this.streaming.remove(key);
          removed++;
        }
        const messageCount = Math.min(prev.messageCount, Math.max(0, seq + 1));
        const next = { ...prev, messageCount, updatedAt: Math.max(this.now(), prev.updatedAt) };
        this.putConversation(next, prev);
        return removed;
      }),
    );
  }

  // ---- answers ------------------------------------------------------------------------------

  async startAnswer(conversationId: string, opts: { model?: string; node?: string } = {}): Promise<AnswerWriter> {
    this.guard('grow');
    const msg = await this.commit(
      this.env.transaction(() => {
        const m = this.addInTxn(conversationId, { role: 'assistant', content: '', status: 'streaming', ...opts });
        this.streaming.put([conversationId, m.seq], 1);
        return m;
      }),
    );
    return this.track(msg);
  }

  private track(msg: Message): Writer {
    const w = new Writer(this, msg);
    this.live.add(w);
    if (!this.flushTimer) {
      this.flushTimer = setInterval(() => this.flushLive(), this.flushIntervalMs);
      this.flushTimer.unref();
    }
    return w;
  }

  /** One event-loop turn, one commit: every dirty live answer is rewritten. */
  private flushLive(): void {
    if (this.live.size === 0) {
      clearInterval(this.flushTimer);
      this.flushTimer = undefined;
      return;
    }
    const dirty = [...this.live].filter((w) => w.dirty && !w.error);
    if (dirty.length === 0) return;
    // One free-space check per flush, not one per live answer.
    let full: Error | undefined;
    try {
      this.guard('finish');
    } catch (e) {
      full = e as Error;
    }
    for (const w of dirty) {
      w.dirty = false;
      if (full) {
        w.error = full;
        continue;
      }
      const msg: Message = { ...w.message, content: w.content, updatedAt: this.now() };
      this.commit(this.msgs.put([w.conversationId, w.seq], msg)).catch((e: unknown) => {
        w.error = e as Error;
      });
    }
  }

  async finishAnswer(w: Writer, result: AnswerResult): Promise<Message> {
    this.live.delete(w);
    if (w.detached) throw new HistoryNotFoundError('the conversation or message was deleted while the answer streamed');
    this.guard('finish');
    const t = this.now();
    const msg: Message = { ...w.message, content: w.content, status: result.status, updatedAt: t };
    if (result.usage) msg.usage = result.usage;
    if (result.timings) msg.timings = result.timings;
    if (result.error) msg.error = result.error;
    return this.commit(
      this.env.transaction(() => {
        const prev = this.conversations.get(w.conversationId);
        if (!prev || !this.msgs.doesExist([w.conversationId, w.seq])) {
          throw new HistoryNotFoundError('the conversation or message was deleted while the answer streamed');
        }
        this.msgs.put([w.conversationId, w.seq], msg);
        this.streaming.remove([w.conversationId, w.seq]);
        const next: Conversation = { ...prev, updatedAt: Math.max(t, prev.updatedAt) };
        if (next.completion && next.completion.answerSeq === w.seq && result.finishReason !== undefined) {
          next.completion = { ...next.completion, finishReason: result.finishReason };
        }
        this.putConversation(next, prev);
        return msg;
      }),
    ).finally(() => this.maybePruneSoon());
  }

  /** At open: answers left 'streaming' by a crash become 'interrupted'. */
  private recoverInterrupted(): void {
    const keys = [...this.streaming.getKeys()] as MsgKey[];
    if (keys.length === 0) return;
    this.env.transactionSync(() => {
      for (const key of keys) {
        const m = this.msgs.get(key);
        if (m && m.status === 'streaming') {
          this.msgs.putSync(key, { ...m, status: 'interrupted' });
          this.recovered++;
        }
        this.streaming.removeSync(key);
      }
    });
  }

  // ---- stored completions -------------------------------------------------------------------

  async startCompletion(req: CompletionRequest): Promise<AnswerWriter> {
    if (!req.id || typeof req.id !== 'string') throw new HistoryInputError('a stored completion needs an id');
    if (!Array.isArray(req.messages)) throw new HistoryInputError('a stored completion needs messages');
    if (req.metadata) validateMetadata(req.metadata);
    this.guard('grow');
    const t = this.now();
    const created = req.created ?? Math.floor(t / 1000);
    const firstUser = req.messages.find((m) => m.role === 'user');
    let title = titleFrom(firstUser ? contentText(firstUser.content) : '');
    // As a chat is titled: from its first message when that is stored as the user's.
    if (title === 'New conversation' && req.messages.length && storedRole(req.messages[0].role) === 'user') title = titleFrom(contentText(req.messages[0].content));
    const systemText = req.messages
      .filter((m) => m.role === 'system' || m.role === 'developer')
      .map((m) => contentText(m.content))
      .join('\n');
    const msg = await this.commit(
      this.env.transaction(() => {
        if (this.conversations.doesExist(req.id)) throw new HistoryInputError(`completion ${req.id} already exists`);
        const conv: Conversation = {
          id: req.id,
          title,
          createdAt: t,
          updatedAt: t,
          model: req.model,
          source: 'api',
          messageCount: req.messages.length + 1,
          completion: { created, answerSeq: req.messages.length, finishReason: null },
        };
        if (systemText) conv.system = systemText;
        if (req.metadata) conv.metadata = { ...req.metadata };
        // A new conversation: the request's messages take seq 0..N-1 and the answer N, written
        // at once rather than appended one by one.
        req.messages.forEach((m, i) => {
          const nm: NewMessage = { id: `${req.id}-${i}`, role: storedRole(m.role), content: contentText(m.content), createdAt: t };
          if (typeof m.name === 'string') nm.name = m.name;
          this.msgs.put([req.id, i], this.buildMessage(conv, i, nm));
        });
        const answer = this.buildMessage(conv, req.messages.length, {
          id: `${req.id}-${req.messages.length}`,
          role: 'assistant',
          content: '',
          status: 'streaming',
          model: req.model,
          node: req.node,
          createdAt: t,
        });
        this.msgs.put([req.id, answer.seq], answer);
        this.putConversation(conv, undefined);
        this.completions.put([created, req.id], 1);
        this.streaming.put([req.id, answer.seq], 1);
        return answer;
      }),
    );
    this.maybePruneSoon();
    return this.track(msg);
  }

  async saveCompletion(
    req: CompletionRequest,
    response: { content: string; finishReason?: string | null; usage?: Usage; timings?: Timings; node?: string },
  ): Promise<StoredCompletion> {
    const w = await this.startCompletion({ ...req, node: response.node ?? req.node });
    w.append(response.content);
    await w.finish({ status: 'complete', usage: response.usage, timings: response.timings, finishReason: response.finishReason ?? 'stop' });
    const stored = this.getCompletion(req.id);
    if (!stored) throw new HistoryNotFoundError(`completion ${req.id} vanished`);
    return stored;
  }

  getCompletion(id: string): StoredCompletion | undefined {
    const conversation = this.conversations.get(id);
    if (!conversation?.completion) return undefined;
    const all = this.messages(id);
    const seq = conversation.completion.answerSeq;
    return { conversation, request: all.filter((m) => m.seq < seq), answer: all.find((m) => m.seq === seq) };
  }

  listCompletions(opts: CompletionListOptions = {}): CompletionPage {
    const limit = Math.min(Math.max(Math.trunc(opts.limit ?? 20), 1), 100);
    const reverse = opts.order === 'desc';
    let start: [number, string] | undefined;
    if (opts.after) {
      const c = this.conversations.get(opts.after);
      if (!c?.completion) throw new HistoryNotFoundError(`no stored completion with id ${JSON.stringify(opts.after)}`);
      start = [c.completion.created, c.id];
    }
    const items: Conversation[] = [];
    let hasMore = false;
    for (const { key } of this.completions.getRange({ reverse, start, exclusiveStart: !!start })) {
      const c = this.conversations.get(key[1]);
      if (!c) continue;
      if (opts.model && c.model !== opts.model) continue;
      if (opts.metadata && !Object.entries(opts.metadata).every(([k, v]) => c.metadata?.[k] === v)) continue;
      if (items.length === limit) {
        hasMore = true;
        break;
      }
      items.push(c);
    }
    return { items, hasMore };
  }

  // ---- import / export ----------------------------------------------------------------------

  async importConversation(
    conversation: Conversation,
    messages: Message[],
  ): Promise<'imported' | 'replaced' | 'skipped'> {
    this.guard('grow');
    const result = await this.commit(
      this.env.transaction(() => {
        const existing = this.conversations.get(conversation.id);
        if (existing && existing.updatedAt >= conversation.updatedAt) return 'skipped' as const;
        if (existing) this.removeConversationInTxn(conversation.id);
        const conv: Conversation = { ...conversation, messageCount: messages.length };
        this.putConversation(conv, undefined);
        if (conv.completion) this.completions.put([conv.completion.created, conv.id], 1);
        messages.forEach((m, seq) => {
          const status = m.status === 'streaming' ? 'interrupted' : m.status;
          this.msgs.put([conv.id, seq], { ...m, conversationId: conv.id, seq, status });
        });
        return existing ? ('replaced' as const) : ('imported' as const);
      }),
    );
    return result;
  }

  *allConversations(): Iterable<Conversation> {
    for (const { key } of this.byUpdated.getRange({ reverse: true })) {
      const c = this.conversations.get(key[1]);
      if (c) yield c;
    }
  }

  // ---- limits -------------------------------------------------------------------------------

  private usedBytes(): number {
    let total = 0;
    for (const db of [this.meta, this.conversations, this.byUpdated, this.msgs, this.streaming, this.completions]) {
      const s = db.getStats() as { pageSize: number; treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number };
      total += (s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages) * s.pageSize;
    }
    return total;
  }

  prune(): Promise<{ removed: number }> {
    if (this.closed) return Promise.resolve({ removed: 0 });
    this.pruning ??= this.pruneNow().finally(() => {
      this.pruning = undefined;
    });
    return this.pruning;
  }

  private busy(): Set<string> {
    return new Set([...this.live].map((w) => w.conversationId));
  }

  private async pruneNow(): Promise<{ removed: number }> {
    this.lastPrune = this.now();
    let removed = 0;
    const { retentionDays, maxBytes } = this.opts;
    if (retentionDays && retentionDays > 0) {
      const cutoff = this.now() - retentionDays * DAY;
      const busy = this.busy();
      const old = [...this.byUpdated.getKeys({ end: [cutoff, ''] })].map((k) => k[1]).filter((id) => !busy.has(id));
      if (old.length) removed += await this.removeMany(old);
    }
    if (maxBytes && maxBytes > 0) {
      // Delete least recently updated conversations, a batch per commit, until under 90 %.
      for (let round = 0; round < 20; round++) {
        const used = this.usedBytes();
        if (used <= maxBytes) break;
        const over = used - maxBytes * 0.9;
        const busy = this.busy();
        const batch: string[] = [];
        let freed = 0;
        for (const key of this.byUpdated.getKeys()) {
          if (busy.has(key[1])) continue;
          batch.push(key[1]);
          freed += this.estimateBytes(key[1]);
          if (freed >= over) break;
        }
        if (!batch.length) break;
        removed += await this.removeMany(batch);
      }
    }
    return { removed };
  }

  private estimateBytes(id: string): number {
    let n = 256;
    for (const { value } of this.msgs.getRange({ start: [id, 0], end: [id, Number.MAX_SAFE_INTEGER] })) {
      n += value.content.length * 1.1 + 200;
    }
    return n;
  }

  private async removeMany(ids: string[]): Promise<number> {
    this.guard('finish');
    return this.commit(
      this.env.transaction(() => {
        let n = 0;
        for (const id of ids) if (this.removeConversationInTxn(id)) n++;
        return n;
      }),
    );
  }

  stats(): HistoryStats {
    let fileBytes = 0;
    try {
      fileBytes = fs.statSync(path.join(this.dir, 'data.mdb')).size;
    } catch {
      // not there yet
    }
    return {
      conversations: this.conversations.getCount(),
      messages: this.msgs.getCount(),
      usedBytes: this.usedBytes(),
      fileBytes,
      freeDiskBytes: this.freeDisk(),
      schemaVersion: this.meta.get('schemaVersion') as number,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flushLive();
    clearInterval(this.flushTimer);
    clearInterval(this.pruneTimer);
    await this.pruning?.catch(() => {});
    this.closed = true;
    this.live.clear();
    await this.env.close();
  }
}

export function validateMetadata(metadata: unknown): asserts metadata is Record<string, string> {
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new HistoryInputError('metadata must be an object of string values');
  }
  const entries = Object.entries(metadata);
  if (entries.length > 16) throw new HistoryInputError('metadata has at most 16 keys');
  for (const [k, v] of entries) {
    if (k.length > 64) throw new HistoryInputError(`metadata key ${JSON.stringify(k.slice(0, 20))}... is longer than 64 characters`);
    if (typeof v !== 'string') throw new HistoryInputError(`metadata value for ${JSON.stringify(k)} must be a string`);
    if (v.length > 512) throw new HistoryInputError(`metadata value for ${JSON.stringify(k)} is longer than 512 characters`);
  }
}

function defaultMapSize(): number {
  return process.arch === 'arm' || process.arch === 'ia32' ? 512 * MiB : 2048 * MiB;
}

/** Opens (and creates) the store without pruning: everything here is synchronous. */
export function openHistorySync(opts: HistoryOptions): History {
  fs.mkdirSync(opts.dir, { recursive: true });
  // Loaded here rather than imported at the top, so that a process with no history to keep
  // never pays for lmdb (about 6 MB of resident memory): see openHistoryWhenNeeded.
  const { open } = createRequire(import.meta.url)('lmdb') as typeof import('lmdb');
  const env = open({
    path: opts.dir,
    mapSize: opts.mapSize ?? defaultMapSize(),
    maxDbs: 12,
    compression: false,
    cache: false,
  });
  try {
    return new LmdbHistory(env, opts.dir, opts);
  } catch (e) {
    void env.close();
    throw e;
  }
}

export async function openHistory(opts: HistoryOptions): Promise<History> {
  const history = openHistorySync(opts);
  try {
    if (opts.maxBytes || opts.retentionDays) await history.prune();
    return history;
  } catch (e) {
    await history.close();
    throw e;
  }
}
