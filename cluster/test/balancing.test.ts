import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { expectedAnswer, type SimNode } from '../../bench/sim-node.ts';
import { chatBody, contentOf, fleet, post, sseData } from '../../gateway/test/harness.ts';
import { fallbackApplies } from '../dispatch.ts';
import { ClusterError } from '../errors.ts';

const { sim, gateway } = fleet();

const question = [{ role: 'user' as const, content: 'Tell me about the river.' }];
const chats = (n: SimNode) => n.requests.filter((r) => r.path.endsWith('/chat/completions'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a stream cut after its first byte continues on another node', () => {
  it('seamlessly: same text as an uninterrupted answer, one id, one usage block, [DONE]', async () => {
    const a = await sim({ models: ['m'], fault: { type: 'cut', afterChunks: 7, times: 1 }, tokensPerSecond: 500 });
    const b = await sim({ models: ['m'], tokensPerSecond: 500 });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }] });
    const res = await post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 30, stream_options: { include_usage: true } }));
    const text = await res.text();
    expect(a.stats.faulted).toBe(1);
    const data = sseData(text);
    expect(data.at(-1)).toBe('[DONE]');
    expect(contentOf(text)).toBe(expectedAnswer(question, 30));
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.filter((c) => c.choices?.[0]?.delta?.role).length).toBe(1);
    const usages = chunks.filter((c) => c.usage);
    expect(usages).toHaveLength(1);
    expect(usages[0].usage.completion_tokens).toBe(30);
    // The second node was asked to continue the partial answer.
    const cont = chats(b).at(-1)!.body;
    expect(cont.messages.at(-1)).toEqual({ role: 'assistant', content: expectedAnswer(question, 7) });
    expect(cont.max_tokens).toBe(23);
  });

  it('with one id also from a node that sends no role chunk (its first chunk is read through the template)', async () => {
    const a = await sim({ models: ['m'], fault: { type: 'cut', afterChunks: 5, times: 1 }, tokensPerSecond: 500, roleChunk: false });
    const b = await sim({ models: ['m'], roleChunk: false });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }] });
    const text = await (await post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 20 }))).text();
    expect(a.stats.faulted).toBe(1);
    expect(contentOf(text)).toBe(expectedAnswer(question, 20));
    const chunks = sseData(text).slice(0, -1).map((d) => JSON.parse(d));
    expect(new Set(chunks.map((c) => c.id))).toEqual(new Set([chunks[0].id]));
    expect(chunks.filter((c) => c.choices?.[0]?.delta?.role)).toEqual([]);
  });

  it('through the openai SDK, after a stall', async () => {
    const a = await sim({ models: ['m'], fault: { type: 'stall', afterChunks: 4, times: 1 }, tokensPerSecond: 500 });
    const b = await sim({ models: ['m'] });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }], timeouts: { stall_ms: 300 } });
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x' });
    let text = '';
    for await (const c of await client.chat.completions.create({ model: 'm', messages: question, stream: true, max_tokens: 25 })) {
      text += c.choices[0]?.delta?.content ?? '';
    }
    expect(text).toBe(expectedAnswer(question, 25));
  });

  it('restarts cleanly on any node when only the opening chunk was sent', async () => {
    const a = await sim({ models: ['m'], fault: { type: 'cut', afterChunks: 0, times: 1 } });
    const b = await sim({ models: ['m'], kind: 'openai' });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url, kind: 'openai' }] });
    const res = await post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 12 }));
    const text = await res.text();
    expect(contentOf(text)).toBe(expectedAnswer(question, 12));
    expect(sseData(text).at(-1)).toBe('[DONE]');
    expect(chats(b).at(-1)!.body.messages).toHaveLength(1);
  });

  it('ends with an error event and no [DONE] when the other node rejects the prefill', async () => {
    const a = await sim({ models: ['m'], fault: { type: 'cut', afterChunks: 5, times: 1 } });
    const b = await sim({ models: ['m'], fault: { type: '400-context' } });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }] });
    const res = await post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 30 }));
    const data = sseData(await res.text());
    expect(data).not.toContain('[DONE]');
    expect(JSON.parse(data.at(-1)!).error.code).toMatch(/^stream_/);
  });
});

describe('models: aliases and fallback chains', () => {
  it('serves and lists an alias, and the response names the model that answered', async () => {
    const a = await sim({ models: ['/models/llama-3.2-3b-q4.gguf'] });
    const h = await gateway({ nodes: [{ url: a.url }], routing: { aliases: { small: '/models/llama-3.2-3b-q4.gguf' } } });
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x' });
    expect((await client.models.list()).data.map((m) => m.id)).toContain('small');
    const r = await client.chat.completions.create({ model: 'small', messages: question, max_tokens: 3 });
    expect(r.model).toBe('/models/llama-3.2-3b-q4.gguf');
    expect(chats(a).at(-1)!.body.model).toBe('/models/llama-3.2-3b-q4.gguf');
  });

  it('falls back when the model cannot be served, or rejects the prompt as too long for its context', async () => {
    const big = await sim({ models: ['big'], fault: { type: '400-context' } });
    const small = await sim({ models: ['small'] });
    const h = await gateway({ nodes: [{ url: big.url }, { url: small.url }], routing: { fallbacks: { big: ['small'], gone: ['small'] } } });
    const r1 = await (await post(`${h.api}/chat/completions`, chatBody('big', { max_tokens: 3 }))).json();
    expect(r1.model).toBe('small');
    const r2 = await post(`${h.api}/chat/completions`, chatBody('gone', { stream: true, max_tokens: 3 }));
    expect(contentOf(await r2.text())).toBe(expectedAnswer(question, 3));
  });

  it('never falls back on the client\'s own errors', () => {
    const body = (message: string) => Buffer.from(JSON.stringify({ error: { message, type: 'invalid_request_error' } }));
    expect(fallbackApplies(new ClusterError('rejected', 'x', { status: 400, body: body('the request exceeds the available context size') }))).toBe(true);
    expect(fallbackApplies(new ClusterError('rejected', 'x', { status: 400, body: body('content filter: the prompt was rejected') }))).toBe(false);
    expect(fallbackApplies(new ClusterError('rejected', 'x', { status: 422, body: body("'temperature' must be a number") }))).toBe(false);
    expect(fallbackApplies(new ClusterError('aborted', 'x'))).toBe(false);
    expect(fallbackApplies(new ClusterError('upstream', 'x'))).toBe(true);
  });
});

describe('load: slots, queue and the node\'s own signals', () => {
  it('queues in Hearth instead of overfilling a node, and answers 429 with Retry-After beyond the queue', async () => {
    const a = await sim({ models: ['m'], slots: 1, tokensPerSecond: 100 });
    const h = await gateway({ nodes: [{ url: a.url }], routing: { queue_size: 2 } });
    expect(h.hearth.registry.list()[0].load?.slots).toBe(1);
    const send = () => post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 10 }));
    const first = [send(), send(), send()];
    await sleep(30);
    const overflow = await send();
    expect(overflow.status).toBe(429);
    expect(Number(overflow.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    for (const r of await Promise.all(first)) expect(contentOf(await r.text())).toBe(expectedAnswer(question, 10));
    expect(a.stats.maxActive).toBe(1);
  });

  it('a queued request that waits too long gets 429', async () => {
    const a = await sim({ models: ['m'], slots: 1, tokensPerSecond: 20 });
    const h = await gateway({ nodes: [{ url: a.url }], routing: { queue_wait_ms: 200 } });
    const long = post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 20 }));
    await sleep(30);
    const waited = await post(`${h.api}/chat/completions`, chatBody('m', { max_tokens: 2 }));
    expect(waited.status).toBe(429);
    expect((await waited.json()).error.code).toBe('nodes_busy');
    await (await long).text();
  });

  it('counts slots taken by other clients (the node\'s /metrics) and goes elsewhere', async () => {
    const a = await sim({ models: ['m'], slots: 2, tokensPerSecond: 20 });
    const b = await sim({ models: ['m'], slots: 2, tokensPerSecond: 20 });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }], probe: { interval_ms: 100 } });
    // Another client fills node a directly.
    const direct = [0, 1].map(() => post(`${a.url}/v1/chat/completions`, chatBody('m', { stream: true, max_tokens: 40 })));
    await sleep(350);
    const before = chats(b).length;
    const r = await post(`${h.api}/chat/completions`, chatBody('m', { max_tokens: 2 }));
    expect(r.status).toBe(200);
    expect(chats(b).length).toBe(before + 1);
    await Promise.all((await Promise.all(direct)).map((x) => x.text()));
  });

  it('honours a short Retry-After on the only node instead of failing or hammering it', async () => {
    const a = await sim({ models: ['m'], fault: { type: '429', retryAfter: 1, times: 1 } });
    const h = await gateway({ nodes: [{ url: a.url }] });
    const t0 = Date.now();
    const r = await post(`${h.api}/chat/completions`, chatBody('m', { max_tokens: 3 }));
    expect(r.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(chats(a)).toHaveLength(2);
  });
});

describe('circuit breaker', () => {
  it('stops sending to a failing node, then uses it again within seconds of recovery', async () => {
    const a = await sim({ models: ['m'], fault: { type: '500' } });
    const b = await sim({ models: ['m'] });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }], routing: { breaker_failures: 3, breaker_cooldown_ms: 1000, affinity: false } });
    for (let i = 0; i < 12; i++) expect((await post(`${h.api}/chat/completions`, chatBody('m', { max_tokens: 2 }))).status).toBe(200);
    // Three failures open the breaker; at most one half-open trial may fall inside a slow run.
    expect(chats(a).length).toBeGreaterThanOrEqual(3);
    expect(chats(a).length).toBeLessThanOrEqual(4);
    const failed = chats(a).length;
    a.setFault(undefined);
    await sleep(1100);
    // Half-open: one trial succeeds and closes the breaker; a is usable again at once.
    for (let i = 0; i < 4; i++) await (await post(`${h.api}/chat/completions`, chatBody('m', { max_tokens: 2 }))).text();
    expect(chats(a).length).toBeGreaterThanOrEqual(failed + 1);
    await b.close();
    for (let i = 0; i < 3; i++) expect((await post(`${h.api}/chat/completions`, chatBody('m', { max_tokens: 2, stream: true }))).status).toBe(200);
  });
});

describe('speed and affinity', () => {
  it('learns node speeds from traffic and prefers the node that finishes soonest', async () => {
    const slow = await sim({ models: ['m'], tokensPerSecond: 100, slots: 4 });
    const fast = await sim({ models: ['m'], tokensPerSecond: 800, slots: 4 });
    const h = await gateway({ nodes: [{ url: slow.url }, { url: fast.url }], routing: { affinity: false } });
    // Warm-up: two concurrent requests measure both nodes.
    await Promise.all([0, 1].map(() => post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 30 })).then((r) => r.text())));
    const before = { slow: chats(slow).length, fast: chats(fast).length };
    for (let i = 0; i < 6; i++) await (await post(`${h.api}/chat/completions`, chatBody('m', { stream: true, max_tokens: 30 }))).text();
    expect(chats(fast).length - before.fast).toBe(6);
    expect(chats(slow).length - before.slow).toBe(0);
  });

  it('sends a follow-up turn to the node that served the conversation', async () => {
    const a = await sim({ models: ['m'] });
    const b = await sim({ models: ['m'] });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }] });
    const sys = { role: 'system', content: 'You are a long system prompt. '.repeat(50) };
    const turn1 = [sys, { role: 'user', content: 'first question' }];
    const r1 = await (await post(`${h.api}/chat/completions`, { model: 'm', messages: turn1, max_tokens: 5 })).json();
    const servedBy = chats(a).length ? a : b;
    const other = servedBy === a ? b : a;
    // Another conversation keeps the first node busy-ish; the follow-up still goes to its node.
    for (let t = 2; t <= 4; t++) {
      const msgs = [...turn1, { role: 'assistant', content: r1.choices[0].message.content }, { role: 'user', content: `question ${t}` }];
      await (await post(`${h.api}/chat/completions`, { model: 'm', messages: msgs, max_tokens: 5 })).text();
    }
    expect(chats(servedBy)).toHaveLength(4);
    expect(chats(other)).toHaveLength(0);
  });
});
