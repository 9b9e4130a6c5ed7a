import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HistoryInputError } from '../history/errors.ts';
import { exportHistory, exportHistoryJson, importAny, importChatGpt, importHearthExport } from '../history/export.ts';
import { openHistory, type History } from '../history/store.ts';

const dirs: string[] = [];
const opened: History[] = [];
async function fresh(): Promise<History> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-export-'));
  dirs.push(dir);
  const h = await openHistory({ dir, mapSize: 64 * 1024 * 1024, minFreeBytes: 0 });
  opened.push(h);
  return h;
}
afterEach(async () => {
  for (const h of opened.splice(0)) await h.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

// Shaped like a real ChatGPT data export (2024-2025): a hidden empty system root, hidden custom
// instructions, a regenerated answer (two branches), an image upload next to text, a code
// interpreter round trip, and a conversation without current_node.
const chatgptExport = [
  {
    title: 'Sourdough starter feeding',
    create_time: 1737900000.512345,
    update_time: 1737900312.0941,
    mapping: {
      'client-created-root': { id: 'client-created-root', message: null, parent: null, children: ['3f0b1d3e-sys'] },
      '3f0b1d3e-sys': {
        id: '3f0b1d3e-sys',
        message: {
          id: '3f0b1d3e-sys',
          author: { role: 'system', name: null, metadata: {} },
          create_time: null,
          update_time: null,
          content: { content_type: 'text', parts: [''] },
          status: 'finished_successfully',
          end_turn: true,
          weight: 0,
          metadata: { is_visually_hidden_from_conversation: true },
          recipient: 'all',
          channel: null,
        },
        parent: 'client-created-root',
        children: ['9d2c-ctx'],
      },
      '9d2c-ctx': {
        id: '9d2c-ctx',
        message: {
          id: '9d2c-ctx',
          author: { role: 'user', name: null, metadata: {} },
          create_time: null,
          update_time: null,
          content: { content_type: 'user_editable_context', user_profile: 'I bake on weekends.', user_instructions: 'Be concise.' },
          status: 'finished_successfully',
          end_turn: null,
          weight: 1,
          metadata: { is_visually_hidden_from_conversation: true, user_context_message_data: { about_user_message: 'I bake on weekends.' } },
          recipient: 'all',
          channel: null,
        },
        parent: '3f0b1d3e-sys',
        children: ['aaa2b7c1-u1'],
      },
      'aaa2b7c1-u1': {
        id: 'aaa2b7c1-u1',
        message: {
          id: 'aaa2b7c1-u1',
          author: { role: 'user', name: null, metadata: {} },
          create_time: 1737900000.61,
          update_time: null,
          content: { content_type: 'text', parts: ['How often should I feed a rye sourdough starter?'] },
          status: 'finished_successfully',
          end_turn: null,
          weight: 1,
          metadata: { request_id: '8a6f', message_source: null, timestamp_: 'absolute' },
          recipient: 'all',
          channel: null,
        },
        parent: '9d2c-ctx',
        children: ['b1-first-answer', 'b2-regenerated'],
      },
      'b1-first-answer': {
        id: 'b1-first-answer',
        message: {
          id: 'b1-first-answer',
          author: { role: 'assistant', name: null, metadata: {} },
          create_time: 1737900004.2,
          update_time: null,
          content: { content_type: 'text', parts: ['Twice a day (an answer the user regenerated).'] },
          status: 'finished_successfully',
          end_turn: true,
          weight: 1,
          metadata: { model_slug: 'gpt-4o', finish_details: { type: 'stop' } },
          recipient: 'all',
          channel: null,
        },
        parent: 'aaa2b7c1-u1',
        children: [],
      },
      'b2-regenerated': {
        id: 'b2-regenerated',
        message: {
          id: 'b2-regenerated',
          author: { role: 'assistant', name: null, metadata: {} },
          create_time: 1737900010.9,
          update_time: null,
          content: { content_type: 'text', parts: ['Once a day at room temperature; once a week if it lives in the fridge.'] },
          status: 'finished_successfully',
          end_turn: true,
          weight: 1,
          metadata: { model_slug: 'gpt-4o', finish_details: { type: 'stop' } },
          recipient: 'all',
          channel: null,
        },
        parent: 'aaa2b7c1-u1',
        children: ['aaa3-u2'],
      },
      'aaa3-u2': {
        id: 'aaa3-u2',
        message: {
          id: 'aaa3-u2',
          author: { role: 'user', name: null, metadata: {} },
          create_time: 1737900200.0,
          update_time: null,
          content: {
            content_type: 'multimodal_text',
            parts: [
              { content_type: 'image_asset_pointer', asset_pointer: 'file-service://file-9XyZ', size_bytes: 201113, width: 1024, height: 768 },
              'Here is my jar. Work out the hydration: 100 g flour, 85 g water.',
            ],
          },
          status: 'finished_successfully',
          end_turn: null,
          weight: 1,
          metadata: { attachments: [{ id: 'file-9XyZ', name: 'jar.jpg' }] },
          recipient: 'all',
          channel: null,
        },
        parent: 'b2-regenerated',
        children: ['c1-code'],
      },
      'c1-code': {
        id: 'c1-code',
        message: {
          id: 'c1-code',
          author: { role: 'assistant', name: null, metadata: {} },
          create_time: 1737900203.1,
          update_time: null,
          content: { content_type: 'code', language: 'unknown', response_format_name: null, text: '85 / 100 * 100' },
          status: 'finished_successfully',
          end_turn: false,
          weight: 1,
          metadata: { model_slug: 'gpt-4o' },
          recipient: 'python',
          channel: null,
        },
        parent: 'aaa3-u2',
        children: ['c2-out'],
      },
      'c2-out': {
        id: 'c2-out',
        message: {
          id: 'c2-out',
          author: { role: 'tool', name: 'python', metadata: {} },
          create_time: 1737900204.0,
          update_time: 1737900204.2,
          content: { content_type: 'execution_output', text: '85.0' },
          status: 'finished_successfully',
          end_turn: null,
          weight: 1,
          metadata: { aggregate_result: { status: 'success' } },
          recipient: 'all',
          channel: null,
        },
        parent: 'c1-code',
        children: ['c3-answer'],
      },
      'c3-answer': {
        id: 'c3-answer',
        message: {
          id: 'c3-answer',
          author: { role: 'assistant', name: null, metadata: {} },
          create_time: 1737900206.7,
          update_time: null,
          content: { content_type: 'text', parts: ['That is 85 % hydration, a fairly wet starter.'] },
          status: 'finished_successfully',
          end_turn: true,
          weight: 1,
          metadata: { model_slug: 'gpt-4o', finish_details: { type: 'stop' } },
          recipient: 'all',
          channel: null,
        },
        parent: 'c2-out',
        children: [],
      },
    },
    moderation_results: [],
    current_node: 'c3-answer',
    plugin_ids: null,
    conversation_id: '6795f0a2-1b3c-8000-9c3d-2f1e0a7b4c55',
    conversation_template_id: null,
    gizmo_id: null,
    gizmo_type: null,
    is_archived: false,
    is_starred: null,
    safe_urls: [],
    blocked_urls: [],
    default_model_slug: 'gpt-4o',
    conversation_origin: null,
    voice: null,
    async_status: null,
    disabled_tool_ids: [],
    is_do_not_remember: false,
    memory_scope: 'global_enabled',
    id: '6795f0a2-1b3c-8000-9c3d-2f1e0a7b4c55',
  },
  {
    title: null,
    create_time: 1700000000.0,
    update_time: 1700000050.0,
    mapping: {
      r: { id: 'r', message: null, parent: null, children: ['u'] },
      u: {
        id: 'u',
        message: { id: 'u', author: { role: 'user' }, create_time: 1700000001.0, content: { content_type: 'text', parts: ['ping'] }, recipient: 'all', metadata: {} },
        parent: 'r',
        children: ['a'],
      },
      a: {
        id: 'a',
        message: {
          id: 'a',
          author: { role: 'assistant' },
          create_time: 1700000002.0,
          content: { content_type: 'text', parts: ['pong'] },
          recipient: 'all',
          metadata: { model_slug: 'text-davinci-002-render-sha' },
        },
        parent: 'u',
        children: [],
      },
    },
    current_node: null,
    id: '655e2f10-0000-4000-8000-000000000001',
  },
];

describe('ChatGPT import', () => {
  it('keeps the main branch text of user, assistant and system messages', async () => {
    const h = await fresh();
    expect(await importChatGpt(h, JSON.parse(JSON.stringify(chatgptExport)))).toEqual({ imported: 2, replaced: 0, skipped: 0 });
    const conv = h.getConversation('chatgpt-6795f0a2-1b3c-8000-9c3d-2f1e0a7b4c55')!;
    expect(conv).toMatchObject({
      title: 'Sourdough starter feeding',
      source: 'import',
      model: 'gpt-4o',
      createdAt: 1737900000512,
      updatedAt: 1737900312094,
      messageCount: 4,
    });
    const msgs = h.messages(conv.id);
    expect(msgs.map((m) => [m.seq, m.role, m.content])).toEqual([
      [0, 'user', 'How often should I feed a rye sourdough starter?'],
      [1, 'assistant', 'Once a day at room temperature; once a week if it lives in the fridge.'],
      [2, 'user', 'Here is my jar. Work out the hydration: 100 g flour, 85 g water.'],
      [3, 'assistant', 'That is 85 % hydration, a fairly wet starter.'],
    ]);
    expect(msgs[1]).toMatchObject({ model: 'gpt-4o', status: 'complete', createdAt: 1737900010900 });

    const untitled = h.getConversation('chatgpt-655e2f10-0000-4000-8000-000000000001')!;
    expect(untitled.title).toBe('Imported conversation');
    expect(h.messages(untitled.id).map((m) => m.content)).toEqual(['ping', 'pong']);

    // Newest first in the listing, by ChatGPT's update_time.
    expect(h.listConversations().items.map((c) => c.id)).toEqual([conv.id, untitled.id]);
    // Importing the same file again adds nothing.
    expect(await importAny(h, JSON.parse(JSON.stringify(chatgptExport)))).toEqual({ imported: 0, replaced: 0, skipped: 2 });
    expect(h.stats().conversations).toBe(2);
  });

  it('refuses something that is not a ChatGPT export', async () => {
    const h = await fresh();
    await expect(importChatGpt(h, [{ title: 'x' }])).rejects.toThrow(/no "mapping"/);
    await expect(importChatGpt(h, { conversations: [] })).rejects.toBeInstanceOf(HistoryInputError);
  });
});

describe('Hearth export and import', () => {
  it('round-trips every conversation and message, and a re-import duplicates nothing', async () => {
    const a = await fresh();
    const c1 = await a.createConversation({ model: 'qwen2.5-7b', system: 'Be brief.' });
    await a.addMessage(c1.id, { role: 'system', content: 'Be brief.' });
    await a.addMessage(c1.id, { role: 'user', content: 'Why is the sky blue? 🌤️' });
    const w = await a.startAnswer(c1.id, { model: 'qwen2.5-7b', node: 'desk-3090' });
    w.append('Rayleigh scattering.');
    await w.finish({ status: 'complete', usage: { prompt_tokens: 10, completion_tokens: 4, total_tokens: 14 }, timings: { ttftMs: 90, totalMs: 300 } });
    await a.saveCompletion(
      { id: 'chatcmpl-abc', model: 'llama-3.1-8b', created: 1737000000, messages: [{ role: 'user', content: 'hi' }], metadata: { app: 'notes' } },
      { content: 'hello', node: 'pi-5' },
    );
    await importChatGpt(a, JSON.parse(JSON.stringify(chatgptExport)));

    const doc = exportHistory(a, new Date('2025-02-01T00:00:00Z'));
    expect(doc).toMatchObject({ format: 'hearth-history', version: 1, exportedAt: '2025-02-01T00:00:00.000Z' });
    expect(doc.conversations).toHaveLength(4);
    // The streamed form is the same document.
    expect(JSON.parse([...exportHistoryJson(a, new Date('2025-02-01T00:00:00Z'))].join(''))).toEqual(JSON.parse(JSON.stringify(doc)));

    const b = await fresh();
    const text = JSON.stringify(doc);
    expect(await importHearthExport(b, JSON.parse(text))).toEqual({ imported: 4, replaced: 0, skipped: 0 });
    expect(JSON.parse(JSON.stringify(exportHistory(b, new Date('2025-02-01T00:00:00Z'))))).toEqual(JSON.parse(text));
    expect(b.getCompletion('chatcmpl-abc')?.answer?.content).toBe('hello');
    expect(b.listCompletions().items.map((c) => c.id)).toEqual(['chatcmpl-abc']);

    expect(await importAny(b, JSON.parse(text))).toEqual({ imported: 0, replaced: 0, skipped: 4 });
    expect(b.stats()).toMatchObject({ conversations: 4, messages: a.stats().messages });

    // A newer copy of a conversation replaces the stored one.
    const newer = JSON.parse(text);
    newer.conversations = newer.conversations.filter((c: { id: string }) => c.id === c1.id);
    newer.conversations[0].updatedAt += 1000;
    newer.conversations[0].title = 'Sky colour';
    newer.conversations[0].messages.pop();
    expect(await importHearthExport(b, newer)).toEqual({ imported: 0, replaced: 1, skipped: 0 });
    expect(b.getConversation(c1.id)).toMatchObject({ title: 'Sky colour', messageCount: 2 });
    expect(b.messages(c1.id)).toHaveLength(2);
  });

  it('refuses a bad file with the path of the first bad field, writing nothing', async () => {
    const h = await fresh();
    await expect(importHearthExport(h, { format: 'hearth-history', version: 2, conversations: [] })).rejects.toThrow(/version 2 is not supported/);
    await expect(importHearthExport(h, { format: 'other' })).rejects.toThrow(/"format" must be "hearth-history"/);
    const bad = {
      format: 'hearth-history',
      version: 1,
      exportedAt: '2025-01-01T00:00:00Z',
      conversations: [
        { id: 'ok', title: 'fine', createdAt: 1, updatedAt: 2, source: 'chat', messages: [] },
        { id: 'bad', title: 'x', createdAt: 1, updatedAt: 2, messages: [{ role: 'user', content: 42 }] },
      ],
    };
    await expect(importHearthExport(h, bad)).rejects.toThrow('import: conversations[1].messages[0]: "content" must be a string');
    expect(h.stats().conversations).toBe(0);
  });
});
