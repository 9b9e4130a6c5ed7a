import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { llamaAvailable, llamaMissing, startLlama, type Llama } from '../../bench/lib/llama.ts';
import { ChunkTemplate, tokenOf } from '../../cluster/chunk-template.ts';
import { SseParser } from '../../cluster/sse.ts';
import { chatBody, contentOf, post, sseData, startHearth, type TestHearth } from './harness.ts';

if (!llamaAvailable()) console.warn(`skipping the real llama-server tests: ${llamaMissing}`);

describe.skipIf(!llamaAvailable())('through Hearth to a real llama-server', () => {
  let llama: Llama;
  let h: TestHearth;
  beforeAll(async () => {
    llama = await startLlama({ parallel: 2, alias: 'tiny' });
    h = await startHearth({ nodes: [{ url: llama.url }] });
  });
  afterAll(async () => {
    await h?.close();
    await llama?.stop();
  });

  const messages = [{ role: 'user' as const, content: 'Say something about the river.' }];

  it('classifies the node as llama.cpp and lists its model', async () => {
    const node = h.hearth.registry.list()[0];
    expect(node.kind).toBe('llama.cpp');
    expect(node.health).toBe('up');
    expect(node.load?.slots).toBe(2);
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x' });
    expect((await client.models.list()).data.map((m) => m.id)).toContain('tiny');
  });

  it("reads llama-server's token chunks through the template, a whole answer as one run", async () => {
    const body = chatBody('tiny', { messages, temperature: 0, max_tokens: 64, seed: 1, stream: true });
    const raw = Buffer.from(await (await post(`${llama.url}/v1/chat/completions`, body)).arrayBuffer());
    // The answer as one network read, as a fast node's often arrives.
    const template = new ChunkTemplate();
    const items = new SseParser().push(raw, template);
    const runs = items.filter((i) => 'run' in i);
    const tokenEvents = sseData(raw.toString()).filter((d) => d !== '[DONE]' && tokenOf(JSON.parse(d)));
    // A new run where `created` ticks to the next second.
    expect(runs).toHaveLength(new Set(tokenEvents.map((d) => JSON.parse(d).created)).size);
    expect(runs.reduce((n, r) => n + r.events, 0)).toBe(tokenEvents.length);
    expect(runs.map((r) => r.tokens).join('')).toBe(contentOf(raw.toString()));
  });

  it('at temperature 0, streamed and non-streamed content through Hearth equals a direct request', async () => {
    const body = chatBody('tiny', { messages, temperature: 0, max_tokens: 48, seed: 1 });
    const direct = await (await post(`${llama.url}/v1/chat/completions`, body)).json();
    const viaJson = await (await post(`${h.api}/chat/completions`, body)).json();
    expect(viaJson.choices[0].message.content).toBe(direct.choices[0].message.content);
    const directStream = contentOf(await (await post(`${llama.url}/v1/chat/completions`, { ...body, stream: true })).text());
    const viaStream = contentOf(await (await post(`${h.api}/chat/completions`, { ...body, stream: true })).text());
    expect(viaStream).toBe(directStream);
    expect(viaStream).toBe(direct.choices[0].message.content);
  });

  it('streams through the openai SDK, many times in a row (llama-server closes each streamed connection)', async () => {
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x', maxRetries: 0 });
    for (let i = 0; i < 12; i++) {
      const stream = await client.chat.completions.create({ model: 'tiny', messages, stream: true, max_tokens: 16, stream_options: { include_usage: true }, ...({ ignore_eos: true } as object) });
      let usage;
      for await (const c of stream) if (c.usage) usage = c.usage;
      expect(usage?.completion_tokens).toBe(16);
    }
  });

  it('a client abort frees the slot within one second', async () => {
    const ac = new AbortController();
    const res = await fetch(`${h.api}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chatBody('tiny', { messages, stream: true, max_tokens: 3000, ignore_eos: true })),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    const busy = await (await fetch(`${llama.url}/slots`)).json();
    expect(busy.some((s: any) => s.is_processing)).toBe(true);
    ac.abort();
    const t0 = Date.now();
    let idle = false;
    while (Date.now() - t0 < 1000) {
      const slots = await (await fetch(`${llama.url}/slots`)).json();
      if (slots.every((s: any) => !s.is_processing)) {
        idle = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(idle).toBe(true);
  });

  it('nothing from /slots reaches a client', async () => {
    const slots = await (await fetch(`${llama.url}/slots`)).text();
    expect(slots).toContain('n_ctx');
    for (const path of ['/models', '/slots', '/state', '/metrics']) {
      const text = await (await fetch(`${h.api}${path}`)).text();
      expect(text).not.toContain('n_ctx');
      expect(text).not.toContain('is_processing');
    }
    expect(await (await fetch(`${h.url}/readyz`)).text()).not.toContain('slot');
  });
});
