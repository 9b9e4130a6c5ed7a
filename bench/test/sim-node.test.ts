import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { startSimNode, expectedAnswer, type SimNode, type SimNodeOptions, type ChatMessage } from '../sim-node.ts';

const nodes: SimNode[] = [];
async function sim(opts: SimNodeOptions = {}): Promise<SimNode> {
  const n = await startSimNode(opts);
  nodes.push(n);
  return n;
}
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
});

const USER: ChatMessage[] = [{ role: 'user', content: 'Tell me about rivers.' }];

/** Minimal but strict SSE parser: events split on blank lines (LF or CRLF), data lines joined by "\n". */
function parseSse(text: string): { data: string[]; comments: number } {
  const data: string[] = [];
  let comments = 0;
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (!block) continue;
    const lines: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) comments++;
      else if (line.startsWith('data:')) lines.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      else if (line) throw new Error(`unexpected SSE line: ${JSON.stringify(line)}`);
    }
    if (lines.length) data.push(lines.join('\n'));
  }
  return { data, comments };
}

function post(node: SimNode, path: string, body: unknown, init: RequestInit = {}) {
  return fetch(node.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: init.signal ?? AbortSignal.timeout(5000),
  });
}

/** Raw HTTP request keeping each socket read as its own Buffer. */
function rawRequest(node: SimNode, path: string, body: unknown): Promise<{ status: number; headers: http.IncomingHttpHeaders; chunks: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const req = http.request(node.url + path, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end(JSON.stringify(body));
  });
}

function contentOf(events: string[]): string {
  let s = '';
  for (const d of events) {
    if (d === '[DONE]') continue;
    const j = JSON.parse(d);
    s += j.choices?.[0]?.delta?.content ?? j.choices?.[0]?.text ?? '';
  }
  return s;
}

describe('streaming', () => {
  it('frames chat chunks like llama-server and ends with [DONE]', async () => {
    const node = await sim({ models: ['tiny'], tokensPerSecond: 0 });
    const res = await post(node, '/v1/chat/completions', { model: 'tiny', messages: USER, stream: true, max_tokens: 12, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const { data } = parseSse(await res.text());
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: null });
    const ids = new Set(chunks.map((c) => c.id));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^chatcmpl-/);
    for (const c of chunks) {
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.model).toBe('tiny');
      expect(typeof c.created).toBe('number');
    }
    const content = chunks.slice(1, 13);
    expect(content.every((c) => typeof c.choices[0].delta.content === 'string' && c.choices[0].finish_reason === null)).toBe(true);
    const finish = chunks[13];
    expect(finish.choices[0]).toMatchObject({ finish_reason: 'length', delta: {} });
    const usage = chunks[14];
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toMatchObject({ completion_tokens: 12 });
    expect(chunks.length).toBe(15);
    expect(contentOf(data)).toBe(expectedAnswer(USER, 12));
  });

  it('uses defaultTokens and finish_reason stop without max_tokens; usage on the finish chunk in finish style', async () => {
    const node = await sim({ tokensPerSecond: 0, defaultTokens: 9, usageStyle: 'finish' });
    const res = await post(node, '/v1/chat/completions', { messages: USER, stream: true });
    const { data } = parseSse(await res.text());
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    const finish = chunks.at(-1);
    expect(finish.choices[0].finish_reason).toBe('stop');
    expect(finish.usage.completion_tokens).toBe(9);
    expect(contentOf(data)).toBe(expectedAnswer(USER, 9));
  });

  it('streams /v1/completions as text_completion chunks', async () => {
    const node = await sim({ tokensPerSecond: 0 });
    const res = await post(node, '/v1/completions', { prompt: 'Once upon', stream: true, max_tokens: 5 });
    const { data } = parseSse(await res.text());
    expect(data.at(-1)).toBe('[DONE]');
    const first = JSON.parse(data[0]);
    expect(first.object).toBe('text_completion');
    expect(first.id).toMatch(/^cmpl-/);
    expect(contentOf(data)).toBe(expectedAnswer('Once upon', 5));
  });

  it('sends ": ping" comments during time to first token', async () => {
    const node = await sim({ ttftMs: 120, pingEveryMs: 30, tokensPerSecond: 0 });
    const res = await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 2 });
    const { data, comments } = parseSse(await res.text());
    expect(comments).toBeGreaterThanOrEqual(1);
    expect(data.at(-1)).toBe('[DONE]');
  });

  it('paces tokens at tokensPerSecond', async () => {
    const node = await sim({ tokensPerSecond: 200 });
    const t = performance.now();
    const res = await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 20 });
    await res.text();
    const ms = performance.now() - t;
    expect(ms).toBeGreaterThanOrEqual(90); // 19 intervals of 5 ms
    expect(ms).toBeLessThan(1000);
  });

  it('CRLF + multi-line data + split UTF-8 still make valid SSE with the expected content', async () => {
    const node = await sim({ tokensPerSecond: 0, lineEnding: '\r\n', multiLineData: true, splitUtf8: true });
    const r = await rawRequest(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 40 });
    expect(r.status).toBe(200);
    // some socket read ends inside a multi-byte sequence
    const dec = new TextDecoder('utf-8', { fatal: true });
    const broken = r.chunks.filter((c) => {
      try {
        dec.decode(c);
        return false;
      } catch {
        return true;
      }
    });
    expect(broken.length).toBeGreaterThan(0);
    const text = Buffer.concat(r.chunks).toString('utf8');
    expect(text).toContain('\r\n\r\n');
    expect(text).not.toMatch(/[^\r]\n/);
    expect(text).toMatch(/data: \{\r\ndata: /);
    const { data } = parseSse(text);
    expect(data.at(-1)).toBe('[DONE]');
    const content = contentOf(data); // JSON.parse of every event
    expect(content).toBe(expectedAnswer(USER, 40, { splitUtf8: true }));
    expect(Buffer.byteLength(content)).toBeGreaterThan(content.length); // really multi-byte
  });
});

describe('non-streaming', () => {
  it('returns one chat.completion with usage', async () => {
    const node = await sim({ models: ['a', 'b'], tokensPerSecond: 0 });
    const res = await post(node, '/v1/chat/completions', { model: 'b', messages: USER, max_tokens: 6 });
    const j = await res.json();
    expect(j).toMatchObject({ object: 'chat.completion', model: 'b', usage: { completion_tokens: 6 } });
    expect(j.id).toMatch(/^chatcmpl-/);
    expect(j.choices[0]).toMatchObject({ finish_reason: 'length', message: { role: 'assistant', content: expectedAnswer(USER, 6) } });
  });

  it('returns one text_completion', async () => {
    const node = await sim({ tokensPerSecond: 0 });
    const j = await (await post(node, '/v1/completions', { prompt: 'abc', max_tokens: 3 })).json();
    expect(j.object).toBe('text_completion');
    expect(j.choices[0].text).toBe(expectedAnswer('abc', 3));
  });

  it('answers 404 for an unknown model and 400 for bad JSON', async () => {
    const node = await sim();
    const r1 = await post(node, '/v1/chat/completions', { model: 'x', messages: USER });
    expect(r1.status).toBe(404);
    expect(await r1.json()).toEqual({ error: { message: "model 'x' not found", type: 'invalid_request_error', code: 'model_not_found', param: 'model' } });
    const r2 = await post(node, '/v1/chat/completions', '{oops');
    expect(r2.status).toBe(400);
    expect((await r2.json()).error.type).toBe('invalid_request_error');
  });
});

describe('continuation via assistant prefill', () => {
  it('prefill + continuation equals the uninterrupted answer, on another node too', async () => {
    const a = await sim({ tokensPerSecond: 0, defaultTokens: 30 });
    const b = await sim({ tokensPerSecond: 0, defaultTokens: 30 });
    const full = expectedAnswer(USER, 30);
    const whole = await (await post(a, '/v1/chat/completions', { messages: USER })).json();
    expect(whole.choices[0].message.content).toBe(full);

    const head = await (await post(a, '/v1/chat/completions', { messages: USER, max_tokens: 11 })).json();
    const prefill = head.choices[0].message.content as string;
    const res = await post(b, '/v1/chat/completions', { messages: [...USER, { role: 'assistant', content: prefill }], stream: true });
    const { data } = parseSse(await res.text());
    const cont = contentOf(data);
    expect(prefill + cont).toBe(full);
    expect(JSON.parse(data.at(-2)!).choices[0].finish_reason).toBe('stop');

    // max_tokens counts only new tokens
    const j = await (await post(b, '/v1/chat/completions', { messages: [...USER, { role: 'assistant', content: prefill }], max_tokens: 4 })).json();
    expect(j.choices[0].message.content).toBe(full.slice(prefill.length, expectedAnswer(USER, 15).length));
    expect(j.usage.completion_tokens).toBe(4);
  });
});

describe('faults', () => {
  it('500 and 429 with Retry-After; `times` clears the fault', async () => {
    const node = await sim({ tokensPerSecond: 0, fault: { type: '500', times: 1 } });
    const r1 = await post(node, '/v1/chat/completions', { messages: USER });
    expect(r1.status).toBe(500);
    expect((await r1.json()).error.message).toBeTruthy();
    expect((await post(node, '/v1/chat/completions', { messages: USER })).status).toBe(200);
    node.setFault({ type: '429', retryAfter: 7 });
    const r2 = await post(node, '/v1/chat/completions', { messages: USER });
    expect(r2.status).toBe(429);
    expect(r2.headers.get('retry-after')).toBe('7');
    await r2.text();
  });

  it('reset-before-headers and hang-before-headers', async () => {
    const node = await sim({ fault: { type: 'reset-before-headers' } });
    await expect(post(node, '/v1/chat/completions', { messages: USER })).rejects.toThrow();
    node.setFault({ type: 'hang-before-headers' });
    await expect(post(node, '/v1/chat/completions', { messages: USER }, { signal: AbortSignal.timeout(150) })).rejects.toThrow();
    expect(node.stats.started).toBe(0);
  });

  it('cut: socket destroyed after N content chunks, no finish, no [DONE]', async () => {
    const node = await sim({ tokensPerSecond: 0, fault: { type: 'cut', afterChunks: 4 } });
    const res = await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 50 });
    let text = '';
    const dec = new TextDecoder();
    const reader = res.body!.getReader();
    await expect(
      (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          text += dec.decode(value, { stream: true });
        }
      })(),
    ).rejects.toThrow();
    const { data } = parseSse(text);
    expect(data).not.toContain('[DONE]');
    expect(contentOf(data)).toBe(expectedAnswer(USER, 4));
    expect(node.stats.faulted).toBe(1);
    expect(await node.idle(1000)).toBe(true);
  });

  it('stall: stops after N chunks, keeps the socket; the client abort frees the slot', async () => {
    const node = await sim({ tokensPerSecond: 0, fault: { type: 'stall', afterChunks: 2 } });
    const ac = new AbortController();
    const res = await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 50 }, { signal: ac.signal });
    const reader = res.body!.getReader();
    let text = '';
    const dec = new TextDecoder();
    const deadline = Date.now() + 2000;
    while (parseSse(text).data.length < 3 && Date.now() < deadline) text += dec.decode((await reader.read()).value);
    const more = await Promise.race([reader.read().then(() => 'data'), new Promise((r) => setTimeout(() => r('silent'), 100))]);
    expect(more).toBe('silent');
    expect(node.stats.active).toBe(1);
    ac.abort();
    expect(await node.idle(1000)).toBe(true);
    expect(node.stats.aborted).toBe(1);
  });

  it('malformed: one bad data line, then the stream continues to [DONE]', async () => {
    const node = await sim({ tokensPerSecond: 0, fault: { type: 'malformed', afterChunks: 3 } });
    const { data } = parseSse(await (await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 6 })).text());
    expect(data[4]).toBe('{not json');
    expect(data.at(-1)).toBe('[DONE]');
    expect(contentOf(data.filter((d) => d !== '{not json'))).toBe(expectedAnswer(USER, 6));
  });

  it('no-done: finish chunk, clean end, no [DONE]', async () => {
    const node = await sim({ tokensPerSecond: 0, fault: { type: 'no-done' } });
    const { data } = parseSse(await (await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 6 })).text());
    expect(data).not.toContain('[DONE]');
    expect(JSON.parse(data.at(-1)!).choices[0].finish_reason).toBe('length');
  });

  it('503-loading answers 503 on every endpoint including /health', async () => {
    const node = await sim({ fault: { type: '503-loading' } });
    const h = await fetch(node.url + '/health');
    expect(h.status).toBe(503);
    expect(await h.json()).toEqual({ error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
    expect((await post(node, '/v1/chat/completions', { messages: USER })).status).toBe(503);
    expect((await fetch(node.url + '/v1/models')).status).toBe(503);
    node.setFault(undefined);
    expect(await (await fetch(node.url + '/health')).json()).toEqual({ status: 'ok' });
  });

  it('400-context like llama-server', async () => {
    const node = await sim({ fault: { type: '400-context' } });
    const r = await post(node, '/v1/chat/completions', { messages: USER, stream: true });
    expect(r.status).toBe(400);
    const j = await r.json();
    expect(j.error.type).toBe('exceed_context_size_error');
    expect(j.error.message).toMatch(/exceeds the available context size/);
  });
});

describe('slots, queueing, abort', () => {
  it('queues beyond the slots (deferred) and serves everyone', async () => {
    const node = await sim({ slots: 2, tokensPerSecond: 200 });
    const all = Promise.all([1, 2, 3, 4].map(() => post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 10 }).then((r) => r.text())));
    await new Promise((r) => setTimeout(r, 20));
    expect(node.stats.active).toBe(2);
    expect(node.stats.deferred).toBe(2);
    const metrics = await (await fetch(node.url + '/metrics')).text();
    expect(metrics).toMatch(/^llamacpp:requests_processing 2$/m);
    expect(metrics).toMatch(/^llamacpp:requests_deferred 2$/m);
    const slots = await (await fetch(node.url + '/slots')).json();
    expect(slots.filter((s: any) => s.is_processing)).toHaveLength(2);
    const texts = await all;
    for (const t of texts) expect(parseSse(t).data.at(-1)).toBe('[DONE]');
    expect(node.stats).toMatchObject({ started: 4, completed: 4, maxActive: 2, active: 0, deferred: 0 });
  });

  it('rejects beyond the slots with 503 when overflow is reject', async () => {
    const node = await sim({ slots: 1, overflow: 'reject', tokensPerSecond: 100 });
    const first = post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 5 });
    await new Promise((r) => setTimeout(r, 10));
    const r = await post(node, '/v1/chat/completions', { messages: USER });
    expect(r.status).toBe(503);
    await (await first).text();
  });

  it('a client abort stops the generation and frees the slot', async () => {
    const node = await sim({ slots: 1, tokensPerSecond: 50 });
    const ac = new AbortController();
    const res = await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 500 }, { signal: ac.signal });
    await res.body!.getReader().read();
    ac.abort();
    expect(await node.idle(1000)).toBe(true);
    expect(node.stats.aborted).toBe(1);
    const j = await (await post(node, '/v1/chat/completions', { messages: USER, max_tokens: 2 })).json();
    expect(j.choices[0].message.content).toBe(expectedAnswer(USER, 2));
  });

  it('a client leaving the queue is dropped from deferred', async () => {
    const node = await sim({ slots: 1, tokensPerSecond: 100 });
    const first = post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 10 });
    await new Promise((r) => setTimeout(r, 10));
    const ac = new AbortController();
    const second = post(node, '/v1/chat/completions', { messages: USER }, { signal: ac.signal }).catch(() => 'aborted');
    await new Promise((r) => setTimeout(r, 10));
    expect(node.stats.deferred).toBe(1);
    ac.abort();
    expect(await second).toBe('aborted');
    await (await first).text();
    expect(await node.idle(1000)).toBe(true);
    expect(node.stats.started).toBe(1);
  });

});

describe('connections', () => {
  it('closeAfterStream advertises keep-alive but closes the socket after a streamed reply', async () => {
    const node = await sim({ tokensPerSecond: 0, closeAfterStream: true });
    const body = JSON.stringify({ messages: USER, stream: true, max_tokens: 3 });
    const sock = net.connect(node.port, '127.0.0.1');
    let text = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (text += d));
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const ok = await Promise.race([closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))]);
    sock.destroy();
    expect(ok).toBe(true);
    expect(text).toMatch(/^Keep-Alive: timeout=5, max=100\r$/im);
    expect(text).toContain('data: [DONE]');
    expect(text.endsWith('0\r\n\r\n')).toBe(true);
  });

  it('kill() drops live streams and stops listening', async () => {
    const node = await startSimNode({ tokensPerSecond: 20 });
    const res = await post(node, '/v1/chat/completions', { messages: USER, stream: true, max_tokens: 100 });
    const reader = res.body!.getReader();
    await reader.read();
    node.kill();
    await expect((async () => { while (!(await reader.read()).done); })()).rejects.toThrow();
    await expect(fetch(node.url + '/v1/models')).rejects.toThrow();
    await node.close();
  });
});

describe('other endpoints and kinds', () => {
  it('auth: 401 without the key, /health stays public', async () => {
    const node = await sim({ apiKey: 'sekrit', tokensPerSecond: 0 });
    const r = await post(node, '/v1/chat/completions', { messages: USER });
    expect(r.status).toBe(401);
    expect((await r.json()).error.type).toBe('authentication_error');
    expect((await post(node, '/v1/chat/completions', { messages: USER, max_tokens: 1 }, { headers: { authorization: 'Bearer sekrit' } })).status).toBe(200);
    expect((await fetch(node.url + '/health')).status).toBe(200);
  });

  it('llama.cpp: /v1/models, /props, embeddings, request log', async () => {
    const node = await sim({ models: ['tiny'], slots: 3 });
    expect(await (await fetch(node.url + '/v1/models')).json()).toMatchObject({ object: 'list', data: [{ id: 'tiny', object: 'model' }] });
    expect(await (await fetch(node.url + '/props')).json()).toMatchObject({ total_slots: 3, build_info: expect.any(String), model_path: expect.any(String) });
    const e1 = await (await post(node, '/v1/embeddings', { input: ['a', 'b'] })).json();
    const e2 = await (await post(node, '/v1/embeddings', { input: 'a' })).json();
    expect(e1.data).toHaveLength(2);
    expect(e1.data[0].embedding).toHaveLength(8);
    expect(e2.data[0].embedding).toEqual(e1.data[0].embedding);
    expect(node.requests.map((r) => r.path)).toEqual(['/v1/models', '/props', '/v1/embeddings', '/v1/embeddings']);
    expect(node.requests[3].body).toEqual({ input: 'a' });
  });

  it('prompt cache: a follow-up turn pays only for its new suffix', async () => {
    const node = await sim({ tokensPerSecond: 0, promptMsPerKChar: 100, defaultTokens: 5 });
    const long: ChatMessage[] = [{ role: 'user', content: 'x'.repeat(2000) }];
    const t1 = await (await post(node, '/v1/chat/completions', { messages: long })).json();
    expect(t1.timings.prompt_ms).toBeGreaterThan(190);
    const follow = [...long, t1.choices[0].message, { role: 'user', content: 'and?' }];
    const t2 = await (await post(node, '/v1/chat/completions', { messages: follow })).json();
    expect(t2.timings.prompt_ms).toBeLessThan(10);
  });

  it('exo: node_id, catalogue, running instances, state, no /health', async () => {
    const node = await sim({ kind: 'exo', models: ['llama-3.2-1b'] });
    expect(typeof (await (await fetch(node.url + '/node_id')).json())).toBe('string');
    const ids = (await (await fetch(node.url + '/v1/models')).json()).data.map((m: any) => m.id);
    expect(ids.length).toBeGreaterThan(1);
    expect(ids).toContain('llama-3.2-1b');
    const ps = await (await fetch(node.url + '/ollama/api/ps')).json();
    expect(ps.models.map((m: any) => m.name)).toEqual(['llama-3.2-1b']);
    const state = await (await fetch(node.url + '/state')).json();
    expect(state.instances).toBeTypeOf('object');
    expect(JSON.stringify(state.topology)).toContain('127.0.0.1');
    const other = ids.find((x: string) => x !== 'llama-3.2-1b');
    const r = await post(node, '/v1/chat/completions', { model: other, messages: USER });
    expect(r.status).toBe(404);
    expect((await r.json()).error.message).toBe(`No instance found for model ${other}`);
    expect((await fetch(node.url + '/health')).status).toBe(404);
  });

  it('ollama and lmstudio native endpoints', async () => {
    const o = await sim({ kind: 'ollama', models: ['llama3.2:1b'] });
    expect((await (await fetch(o.url + '/api/tags')).json()).models[0]).toMatchObject({ name: 'llama3.2:1b', model: 'llama3.2:1b' });
    expect((await (await fetch(o.url + '/api/ps')).json()).models).toHaveLength(1);
    expect((await (await fetch(o.url + '/api/version')).json()).version).toBeTypeOf('string');
    const l = await sim({ kind: 'lmstudio', models: ['qwen'] });
    expect((await (await fetch(l.url + '/api/v0/models')).json()).data[0]).toMatchObject({ id: 'qwen', state: 'loaded' });
  });

  it('refuses wildcard listen addresses', async () => {
    await expect(startSimNode({ host: '0.0.0.0' })).rejects.toThrow(/wildcard/);
  });
});
