import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from 'lmdb';
import { afterEach, describe, expect, it } from 'vitest';
import { HistoryFullError, HistoryVersionError } from '../history/errors.ts';
import { migrate, SCHEMA_VERSION, type Migration } from '../history/migrations.ts';
import { openHistory, type History, type HistoryOptions } from '../history/store.ts';

const dirs: string[] = [];
const opened: History[] = [];

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-history-'));
  dirs.push(d);
  return d;
}

async function openAt(dir: string, opts: Partial<HistoryOptions> = {}): Promise<History> {
  const h = await openHistory({ dir, mapSize: 64 * 1024 * 1024, minFreeBytes: 0, ...opts });
  opened.push(h);
  return h;
}

afterEach(async () => {
  for (const h of opened.splice(0)) await h.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('history store', () => {
  it('keeps conversations and messages across a reopen', async () => {
    const dir = tmpDir();
    const h = await openAt(dir);
    const c = await h.createConversation({ model: 'llama-3.1-8b', system: 'Be brief.' });
    expect(c.title).toBe('New conversation');
    await h.addMessage(c.id, { role: 'user', content: 'How do I keep a sourdough starter alive?' });
    const w = await h.startAnswer(c.id, { model: 'llama-3.1-8b', node: 'desk-3090' });
    w.append('Feed it ');
    w.append('once a day.');
    const answer = await w.finish({
      status: 'complete',
      usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 },
      timings: { ttftMs: 120, totalMs: 400, tokensPerSecond: 18 },
    });
    expect(answer).toMatchObject({ seq: 1, role: 'assistant', content: 'Feed it once a day.', status: 'complete', node: 'desk-3090' });
    await h.close();

    const again = await openAt(dir);
    const conv = again.getConversation(c.id)!;
    expect(conv.title).toBe('How do I keep a sourdough starter alive?');
    expect(conv.messageCount).toBe(2);
    expect(conv.system).toBe('Be brief.');
    const msgs = again.messages(c.id);
    expect(msgs.map((m) => [m.seq, m.role, m.content, m.status])).toEqual([
      [0, 'user', 'How do I keep a sourdough starter alive?', 'complete'],
      [1, 'assistant', 'Feed it once a day.', 'complete'],
    ]);
    expect(msgs[1].usage).toEqual({ prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 });
    expect(msgs[1].timings).toEqual({ ttftMs: 120, totalMs: 400, tokensPerSecond: 18 });
    expect(again.stats()).toMatchObject({ conversations: 1, messages: 2, schemaVersion: SCHEMA_VERSION });
  });

  it('lists newest first with cursor pagination, and searches titles and text', async () => {
    let t = 1_000_000;
    const h = await openAt(tmpDir(), { now: () => t });
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      t += 1000;
      const c = await h.createConversation({ title: `Conversation ${i}` });
      await h.addMessage(c.id, { role: 'user', content: i % 5 === 0 ? `Tell me about the Raspberry Pi, part ${i}` : `Question ${i}` });
      ids.push(c.id);
    }
    // Touching an old conversation moves it to the top.
    t += 1000;
    await h.addMessage(ids[3], { role: 'user', content: 'one more thing' });

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = h.listConversations({ limit: 10, after: cursor });
      seen.push(...page.items.map((c) => c.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([ids[3], ...ids.filter((_, i) => i !== 3).reverse()]);

    const hits = h.listConversations({ search: 'raspberry PI' }).items.map((c) => c.title);
    expect(hits).toEqual(['Conversation 20', 'Conversation 15', 'Conversation 10', 'Conversation 5', 'Conversation 0']);
    const byTitle = h.listConversations({ search: 'conversation 1' }).items.length;
    expect(byTitle).toBe(11); // 1, 10..19
    const paged = h.listConversations({ search: 'raspberry', limit: 2 });
    expect(paged.items).toHaveLength(2);
    const rest = h.listConversations({ search: 'raspberry', limit: 10, after: paged.nextCursor });
    expect(rest.items.map((c) => c.title)).toEqual(['Conversation 10', 'Conversation 5', 'Conversation 0']);
    expect(rest.nextCursor).toBeUndefined();
    expect(() => h.listConversations({ after: 'nonsense' })).toThrow(/invalid cursor/);
  });

  it('renames, truncates for regenerate, and deletes a conversation with its messages', async () => {
    const h = await openAt(tmpDir());
    const c = await h.createConversation();
    for (const content of ['a', 'b', 'c', 'd']) await h.addMessage(c.id, { role: content < 'c' ? 'user' : 'assistant', content });
    await h.renameConversation(c.id, '  Letters  ');
    expect(h.getConversation(c.id)!.title).toBe('Letters');
    await expect(h.renameConversation(c.id, '   ')).rejects.toThrow(/empty/);

    expect(await h.truncateAfter(c.id, 1)).toBe(2);
    expect(h.messages(c.id).map((m) => m.content)).toEqual(['a', 'b']);
    expect(h.getConversation(c.id)!.messageCount).toBe(2);
    const next = await h.addMessage(c.id, { role: 'assistant', content: 'B!' });
    expect(next.seq).toBe(2);

    const other = await h.createConversation({ title: 'keep me' });
    await h.addMessage(other.id, { role: 'user', content: 'x' });
    expect(await h.deleteConversation(c.id)).toBe(true);
    expect(await h.deleteConversation(c.id)).toBe(false);
    expect(h.getConversation(c.id)).toBeUndefined();
    expect(h.messages(c.id)).toEqual([]);
    expect(h.listConversations().items.map((x) => x.id)).toEqual([other.id]);
    expect(h.stats().messages).toBe(1);
    await expect(h.addMessage('nope', { role: 'user', content: 'x' })).rejects.toThrow(/no conversation/);
  });

  it('persists a streaming answer while it streams and marks it interrupted at the next open', async () => {
    const dir = tmpDir();
    const h = await openAt(dir, { flushIntervalMs: 50 });
    const c = await h.createConversation();
    await h.addMessage(c.id, { role: 'user', content: 'count' });
    const w = await h.startAnswer(c.id, { model: 'm', node: 'n1' });
    expect(h.getMessage(c.id, 1)).toMatchObject({ status: 'streaming', content: '' });
    w.append('one two ');
    await new Promise((r) => setTimeout(r, 200));
    expect(h.getMessage(c.id, 1)).toMatchObject({ status: 'streaming', content: 'one two ' });
    w.append('three');
    await h.close(); // without finish: like a crash after the last flush

    const again = await openAt(dir);
    expect(again.recovered).toBe(1);
    expect(again.getMessage(c.id, 1)).toMatchObject({ status: 'interrupted', model: 'm', node: 'n1' });
    expect(again.getMessage(c.id, 1)!.content.startsWith('one two ')).toBe(true);
  });

  it('records stopped and error answers', async () => {
    const h = await openAt(tmpDir());
    const c = await h.createConversation();
    const w = await h.startAnswer(c.id);
    w.append('partial');
    const m = await w.finish({ status: 'error', error: 'node desk-3090 went away' });
    expect(m).toMatchObject({ status: 'error', error: 'node desk-3090 went away', content: 'partial' });
    await expect(w.finish({ status: 'complete' })).rejects.toThrow(/already finished/);
    const w2 = await h.startAnswer(c.id);
    await h.truncateAfter(c.id, 0);
    await expect(w2.finish({ status: 'stopped' })).rejects.toThrow(/deleted/);
  });

  it('stores a completion request whole: roles as stored, seq 0..N, titled as a chat would be', async () => {
    const h = await openAt(tmpDir());
    const w = await h.startCompletion({
      id: 'chatcmpl-a',
      model: 'm',
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Why is the sky blue?' }] },
        { role: 'tool', content: 'ignored' },
      ],
    });
    w.append('Rayleigh scattering.');
    await w.finish({ status: 'complete' });
    const a = h.getCompletion('chatcmpl-a')!;
    expect(a.conversation).toMatchObject({ title: 'Why is the sky blue?', system: 'Be brief.', messageCount: 4, model: 'm' });
    expect(h.messages('chatcmpl-a').map((m) => [m.seq, m.role, m.content])).toEqual([
      [0, 'system', 'Be brief.'],
      [1, 'user', 'Why is the sky blue?'],
      [2, 'tool', 'ignored'],
      [3, 'assistant', 'Rayleigh scattering.'],
    ]);
    // No literal user message: titled from the first message when it is stored as the user's.
    await (await h.startCompletion({ id: 'chatcmpl-b', model: 'm', messages: [{ role: 'function', content: 'tool output here' }] })).finish({ status: 'complete' });
    expect(h.getCompletion('chatcmpl-b')!.conversation.title).toBe('tool output here');
  });

  it('applies retention and a size limit by deleting the least recently updated conversations', async () => {
    const day = 86_400_000;
    let t = 100 * day;
    const dir = tmpDir();
    const h = await openAt(dir, { now: () => t });
    const old = await h.createConversation({ title: 'old' });
    t += 20 * day;
    const recent = await h.createConversation({ title: 'recent' });
    await h.close();
    t += 15 * day;
    const h2 = await openAt(dir, { now: () => t, retentionDays: 30 });
    expect(h2.getConversation(old.id)).toBeUndefined();
    expect(h2.getConversation(recent.id)).toBeDefined();
    await h2.close();

    const h3 = await openAt(dir, { now: () => t });
    const text = 'lorem ipsum dolor sit amet '.repeat(400); // ~10 KB
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      t += 1000;
      const c = await h3.createConversation({ title: `c${i}` });
      await h3.addMessage(c.id, { role: 'user', content: text });
      ids.push(c.id);
    }
    const before = h3.stats().usedBytes;
    expect(before).toBeGreaterThan(400_000);
    await h3.close();
    const h4 = await openAt(dir, { now: () => t, maxBytes: 200_000 });
    const after = h4.stats();
    expect(after.usedBytes).toBeLessThanOrEqual(200_000);
    expect(after.conversations).toBeGreaterThan(5);
    // The newest ones survive, the oldest went first.
    expect(h4.getConversation(ids[39])).toBeDefined();
    expect(h4.getConversation(ids[0])).toBeUndefined();
    expect(h4.getConversation(recent.id)).toBeUndefined();
  });

  it('refuses writes with HistoryFullError when the disk is short of the reserve, keeping stored data', async () => {
    const dir = tmpDir();
    const h = await openAt(dir);
    const c = await h.createConversation({ title: 'precious' });
    await h.addMessage(c.id, { role: 'user', content: 'do not lose me' });
    await h.close();
    const free = fs.statfsSync(dir);
    const full = await openAt(dir, { minFreeBytes: free.bavail * free.bsize * 4 + 1e12 });
    const err = await full.addMessage(c.id, { role: 'user', content: 'more' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HistoryFullError);
    expect((err as Error).message).toMatch(/history storage is full: .* free on the disk holding .*intact/);
    await expect(full.createConversation()).rejects.toBeInstanceOf(HistoryFullError);
    expect(full.messages(c.id).map((m) => m.content)).toEqual(['do not lose me']);
    await full.close();
    const again = await openAt(dir);
    expect(again.messages(c.id).map((m) => m.content)).toEqual(['do not lose me']);
  });
});

// A real full disk: a small tmpfs (needs root to mount; CI runs as root).
function mountTmpfs(sizeKiB: number): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const dir = tmpDir();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    return undefined;
  }
}
function unmount(dir: string): void {
  // Lazy: lmdb-js may keep the closed file mapped until garbage collection.
  execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
}

describe('full disk', () => {
  it('stops before the disk is full, keeps everything stored, lets live answers finish', async (ctx) => {
    const dir = mountTmpfs(6 * 1024);
    if (!dir) return ctx.skip('needs root to mount a small tmpfs');
    const h = await openHistory({ dir, mapSize: 64 * 1024 * 1024, minFreeBytes: 1024 * 1024 });
    try {
      const c = await h.createConversation({ title: 'filling up' });
      const live = await h.startAnswer(c.id);
      live.append('started before the disk filled. ');
      const block = 'x'.repeat(20_000);
      let stored = 0;
      let err: unknown;
      for (let i = 0; i < 1000 && !err; i++) {
        try {
          await h.addMessage(c.id, { role: 'user', content: `${i} ${block}` });
          stored++;
        } catch (e) {
          err = e;
        }
      }
      expect(err).toBeInstanceOf(HistoryFullError);
      expect(stored).toBeGreaterThan(50);
      expect(h.messages(c.id)).toHaveLength(stored + 1);
      await expect(h.createConversation()).rejects.toBeInstanceOf(HistoryFullError);
      // The answer already streaming may use the lower half of the reserve to finish.
      live.append('and finished after.');
      await expect(live.finish({ status: 'complete' })).resolves.toMatchObject({ status: 'complete' });
      await h.close();

      const again = await openHistory({ dir, mapSize: 64 * 1024 * 1024, minFreeBytes: 1024 * 1024 });
      const msgs = again.messages(c.id);
      expect(msgs).toHaveLength(stored + 1);
      expect(msgs[0].content).toBe('started before the disk filled. and finished after.');
      expect(msgs[stored].content).toBe(`${stored - 1} ${block}`);
      // Deleting frees room again (LMDB reuses the freed pages).
      await again.deleteConversation(c.id);
      const fresh = await again.createConversation({ title: 'room again' });
      await again.addMessage(fresh.id, { role: 'user', content: block });
      await again.close();
    } catch (e) {
      await h.close();
      throw e;
    } finally {
      unmount(dir);
    }
  });

  it('maps a real ENOSPC from LMDB to HistoryFullError (last resort; in a child process)', { timeout: 30_000 }, async (ctx) => {
    // Hitting ENOSPC in lmdb-js 3.5.6 overflows a heap buffer in its error path (see store.ts),
    // so this runs where a corrupted heap cannot hurt the test runner.
    const dir = mountTmpfs(1024);
    if (!dir) return ctx.skip('needs root to mount a small tmpfs');
    try {
      const storeUrl = new URL('../history/store.ts', import.meta.url).href;
      const script = `
        import { openHistory } from ${JSON.stringify(storeUrl)};
        const h = await openHistory({ dir: process.argv[1], mapSize: 64 * 1024 * 1024, minFreeBytes: 0 });
        const c = await h.createConversation({ title: 'enospc' });
        let n = 0;
        try {
          for (;;) { await h.addMessage(c.id, { role: 'user', content: 'y'.repeat(20000) }); n++; }
        } catch (e) {
          console.log(JSON.stringify({ name: e.name, message: e.message, stored: n, readable: h.messages(c.id).length }));
        }
        process.exit(0);
      `;
      const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir], { cwd: root, encoding: 'utf8' });
      const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
      expect(line, r.stderr).toBeDefined();
      const out = JSON.parse(line!) as { name: string; message: string; stored: number; readable: number };
      expect(out.name).toBe('HistoryFullError');
      expect(out.message).toMatch(/history storage is full \((No space left on device|Input\/output error)/);
      expect(out.readable).toBe(out.stored);
      const again = await openHistory({ dir, mapSize: 64 * 1024 * 1024, minFreeBytes: 0 });
      const [conv] = again.listConversations().items;
      expect(again.messages(conv.id)).toHaveLength(out.stored);
      await again.close();
    } finally {
      unmount(dir);
    }
  });
});

describe('schema migrations', () => {
  function rawEnv(dir: string) {
    const env = open({ path: dir, compression: false, maxDbs: 12, mapSize: 16 * 1024 * 1024 });
    const db = (name: string) => env.openDB({ name, compression: false, cache: false });
    return { env, db, meta: db('meta') };
  }

  it('runs pending migrations in order, each with its version, and only once', async () => {
    const dir = tmpDir();
    const { env, db, meta } = rawEnv(dir);
    // A "v0" store: conversations with `name` instead of `title`, no schema version.
    await db('conversations').put('a', { id: 'a', name: 'Old style' });
    const ran: number[] = [];
    const list: Migration[] = [
      { version: 1, description: 'initial', up: () => void ran.push(1) },
      {
        version: 2,
        description: 'rename name to title',
        up: ({ db: open }) => {
          ran.push(2);
          const convs = open('conversations');
          for (const { key, value } of convs.getRange()) {
            const { name, ...rest } = value as { name?: string };
            convs.putSync(key, { ...rest, title: name ?? 'Untitled' });
          }
        },
      },
      { version: 3, description: 'no-op', up: () => void ran.push(3) },
    ];
    const ctx = { env, db };
    expect(migrate(ctx, meta, list)).toEqual({ from: 0, to: 3, applied: [1, 2, 3] });
    expect(ran).toEqual([1, 2, 3]);
    expect(meta.get('schemaVersion')).toBe(3);
    expect(db('conversations').get('a')).toEqual({ id: 'a', title: 'Old style' });
    expect(migrate(ctx, meta, list)).toEqual({ from: 3, to: 3, applied: [] });
    expect(ran).toEqual([1, 2, 3]);
    await env.close();
  });

  it('rolls back a failing migration and leaves the version where it was', async () => {
    const dir = tmpDir();
    const { env, db, meta } = rawEnv(dir);
    const list: Migration[] = [
      { version: 1, description: 'initial', up: () => {} },
      {
        version: 2,
        description: 'breaks half way',
        up: ({ db: open }) => {
          open('conversations').putSync('half', { id: 'half' });
          throw new Error('boom');
        },
      },
    ];
    expect(() => migrate({ env, db }, meta, list)).toThrow('boom');
    expect(meta.get('schemaVersion')).toBe(1);
    expect(db('conversations').get('half')).toBeUndefined();
    await env.close();
  });

  it('upgrades a store from version 0 at open and refuses a store from a newer Hearth', async () => {
    const dir = tmpDir();
    const h = await openAt(dir);
    expect(h.migration).toEqual({ from: 0, to: SCHEMA_VERSION, applied: [SCHEMA_VERSION] });
    await h.close();
    const h2 = await openAt(dir);
    expect(h2.migration.applied).toEqual([]);
    await h2.close();

    const { env, meta } = rawEnv(dir);
    await meta.put('schemaVersion', SCHEMA_VERSION + 1);
    await env.close();
    const err = await openHistory({ dir, minFreeBytes: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HistoryVersionError);
    expect((err as Error).message).toMatch(/schema version 2, but this Hearth understands up to version 1; upgrade Hearth/);
  });
});
