// OpenAI's stored-completions endpoints, served from the history store over real HTTP on
// loopback, driven by the official openai SDK.

import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiRouter, splitTarget } from '../api/http.ts';
import { addStoredCompletionRoutes, storeObserver } from '../api/stored-completions.ts';
import { openHistory, type History } from '../history/store.ts';
import type { NodeInfo } from '../../cluster/node.ts';

let dir: string;
let history: History;
let server: http.Server;
let client: OpenAI;
let base: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-stored-'));
  history = await openHistory({ dir, mapSize: 64 * 1024 * 1024, minFreeBytes: 0 });
  for (let i = 0; i < 25; i++) {
    await history.saveCompletion(
      {
        id: `chatcmpl-${String(i).padStart(3, '0')}`,
        model: i % 2 ? 'qwen2.5-7b' : 'llama-3.1-8b',
        created: 1_737_000_000 + i,
        messages: [
          { role: 'system', content: 'You are terse.' },
          { role: 'user', content: [{ type: 'text', text: `Question ${i}` }] },
        ],
        metadata: { user: i % 3 ? 'alice' : 'bob', batch: String(Math.floor(i / 10)) },
      },
      {
        content: `Answer ${i}`,
        finishReason: 'stop',
        usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
        node: 'desk-3090',
      },
    );
  }
  const router = new ApiRouter();
  addStoredCompletionRoutes(router, history);
  server = http.createServer((req, res) =>
    router.handle(req, res, splitTarget(req.url!), (e) => {
      console.error(e);
      res.destroy();
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  client = new OpenAI({ baseURL: base, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await history?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('stored completions API', () => {
  it('lists in created order with cursor pagination (auto-paging through the SDK)', async () => {
    const page = await client.chat.completions.list({ limit: 10 });
    expect(page.data.map((c) => c.id)).toEqual(Array.from({ length: 10 }, (_, i) => `chatcmpl-${String(i).padStart(3, '0')}`));
    expect(page.has_more).toBe(true);
    const all: string[] = [];
    for await (const c of client.chat.completions.list({ limit: 7 })) all.push(c.id);
    expect(all).toHaveLength(25);
    expect(new Set(all).size).toBe(25);

    const desc = await client.chat.completions.list({ limit: 3, order: 'desc' });
    expect(desc.data.map((c) => c.id)).toEqual(['chatcmpl-024', 'chatcmpl-023', 'chatcmpl-022']);
    const next = await client.chat.completions.list({ limit: 3, order: 'desc', after: 'chatcmpl-022' });
    expect(next.data.map((c) => c.id)).toEqual(['chatcmpl-021', 'chatcmpl-020', 'chatcmpl-019']);

    const raw = await (await fetch(`${base}/chat/completions?limit=2`)).json();
    expect(raw).toMatchObject({ object: 'list', first_id: 'chatcmpl-000', last_id: 'chatcmpl-001', has_more: true });
  });

  it('filters by model and metadata', async () => {
    const qwen = await client.chat.completions.list({ model: 'qwen2.5-7b', limit: 100 });
    expect(qwen.data).toHaveLength(12);
    expect(qwen.data.every((c) => c.model === 'qwen2.5-7b')).toBe(true);
    const bob = await client.chat.completions.list({ metadata: { user: 'bob', batch: '1' }, limit: 100 });
    expect(bob.data.map((c) => c.id)).toEqual(['chatcmpl-012', 'chatcmpl-015', 'chatcmpl-018']);
    expect(bob.has_more).toBe(false);
  });

  it('retrieves a stored chat.completion', async () => {
    const c = await client.chat.completions.retrieve('chatcmpl-007');
    expect(c).toMatchObject({
      id: 'chatcmpl-007',
      object: 'chat.completion',
      created: 1_737_000_007,
      model: 'qwen2.5-7b',
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'Answer 7' } }],
      usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 },
      metadata: { user: 'alice', batch: '0' },
    });
    expect((c as unknown as { hearth: { status: string; node: string } }).hearth).toMatchObject({ status: 'complete', node: 'desk-3090' });
  });

  it('lists the request messages with limit, after and order', async () => {
    const msgs = await client.chat.completions.messages.list('chatcmpl-003');
    expect(msgs.data.map((m) => [m.role, m.content])).toEqual([
      ['system', 'You are terse.'],
      ['user', 'Question 3'],
    ]);
    expect(msgs.data[0].id).toBe('chatcmpl-003-0');
    const first = await client.chat.completions.messages.list('chatcmpl-003', { limit: 1 });
    expect(first.data.map((m) => m.content)).toEqual(['You are terse.']);
    expect(first.has_more).toBe(true);
    const rest = await client.chat.completions.messages.list('chatcmpl-003', { limit: 1, after: first.data[0].id });
    expect(rest.data.map((m) => m.content)).toEqual(['Question 3']);
    expect(rest.has_more).toBe(false);
    const desc = await client.chat.completions.messages.list('chatcmpl-003', { order: 'desc' });
    expect(desc.data.map((m) => m.role)).toEqual(['user', 'system']);
  });

  it('updates metadata and deletes', async () => {
    const updated = await client.chat.completions.update('chatcmpl-010', { metadata: { user: 'carol' } });
    expect((updated as unknown as { metadata: unknown }).metadata).toEqual({ user: 'carol' });
    const del = await client.chat.completions.delete('chatcmpl-010');
    expect(del).toEqual({ object: 'chat.completion.deleted', id: 'chatcmpl-010', deleted: true });
    await expect(client.chat.completions.retrieve('chatcmpl-010')).rejects.toMatchObject({ status: 404 });
    expect(history.getConversation('chatcmpl-010')).toBeUndefined();
    const all: string[] = [];
    for await (const c of client.chat.completions.list({ limit: 100 })) all.push(c.id);
    expect(all).not.toContain('chatcmpl-010');
  });

  it('answers OpenAI-shaped errors: 404 for an unknown id, 400 for bad parameters', async () => {
    const err = await client.chat.completions.retrieve('chatcmpl-nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({
      message: "No chat completion found with id 'chatcmpl-nope'.",
      type: 'invalid_request_error',
      code: 'not_found',
    });
    await expect(client.chat.completions.delete('chatcmpl-nope')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.chat.completions.messages.list('chatcmpl-nope')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    for (const q of ['limit=0', 'limit=101', 'limit=abc', 'order=up', 'after=chatcmpl-nope']) {
      const res = await fetch(`${base}/chat/completions?${q}`);
      expect(res.status, q).toBe(400);
      const body = (await res.json()) as { error: { message: string; type: string; param: string } };
      expect(body.error.type).toBe('invalid_request_error');
      expect(body.error.param).toBe(q.split('=')[0]);
    }
    const bad = await client.chat.completions.update('chatcmpl-001', { metadata: { n: 5 as unknown as string } }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
  });
});

describe('storeObserver (for "store": true on POST /v1/chat/completions)', () => {
  const node = { id: 'n1', name: 'desk-3090' } as NodeInfo;

  it('stores a streamed answer as it arrives, with usage and timings', async () => {
    let t = 1000;
    const observe = storeObserver(history, { now: () => t });
    expect(observe('chat', { model: 'm', messages: [] })).toBeUndefined();
    expect(observe('embeddings', { store: true })).toBeUndefined();
    const body = { model: 'llama', store: true, metadata: { app: 'shell' }, messages: [{ role: 'user', content: 'Name a colour' }] };
    const obs = observe('chat', body)!;
    obs.start?.(node);
    t = 1100;
    obs.chunks?.([{ id: 'chatcmpl-stream1', object: 'chat.completion.chunk', created: 1_800_000_000, model: 'llama-3.1-8b', choices: [{ index: 0, delta: { role: 'assistant', content: 'Te' } }] }]);
    obs.chunks?.([{ id: 'chatcmpl-stream1', choices: [{ index: 0, delta: { content: 'al' } }] }]);
    t = 1600;
    obs.chunks?.([
      { id: 'chatcmpl-stream1', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
      { id: 'chatcmpl-stream1', choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } },
    ]);
    obs.end?.({ complete: true });
    await waitFor(() => history.getCompletion('chatcmpl-stream1')?.answer?.status === 'complete');
    const c = await client.chat.completions.retrieve('chatcmpl-stream1');
    expect(c).toMatchObject({
      created: 1_800_000_000,
      model: 'llama-3.1-8b',
      metadata: { app: 'shell' },
      choices: [{ message: { content: 'Teal' }, finish_reason: 'stop' }],
      usage: { total_tokens: 7 },
    });
    expect(history.getCompletion('chatcmpl-stream1')!.answer).toMatchObject({ node: 'desk-3090', timings: { ttftMs: 100, totalMs: 600, tokensPerSecond: 4 } });
  });

  it('stores a cut stream with its partial text and no finish_reason', async () => {
    const obs = storeObserver(history)('chat', { model: 'llama', store: true, messages: [{ role: 'user', content: 'Count' }] })!;
    obs.start?.(node);
    obs.chunks?.([{ id: 'chatcmpl-cut', choices: [{ index: 0, delta: { content: 'one, two' } }] }]);
    obs.end?.({ complete: false, error: 'node desk-3090 closed the connection' });
    await waitFor(() => history.getCompletion('chatcmpl-cut')?.answer?.status === 'stopped' || history.getCompletion('chatcmpl-cut')?.answer?.status === 'error');
    const c = await client.chat.completions.retrieve('chatcmpl-cut');
    expect(c.choices[0]).toMatchObject({ message: { content: 'one, two' }, finish_reason: null });
    expect((c as unknown as { hearth: { error: string } }).hearth.error).toBe('node desk-3090 closed the connection');
  });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
