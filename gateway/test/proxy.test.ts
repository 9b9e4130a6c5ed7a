import { execFile } from 'node:child_process';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedAnswer, startSimNode, type SimNode } from '../../bench/sim-node.ts';
import { chatBody, contentOf, fleet, post, sseData, startHearth, type TestHearth } from './harness.ts';
import { apiAccess } from '../auth.ts';

/** Sends raw request texts on one connection and returns everything read until it closes. */
/**
 * Takes the chunked framing off a body that starts at `from`, by hand: every chunk must be well
 * formed, the last one empty. Returns the body as text and where it ended.
 */
function unchunk(raw: Buffer, from: number): { text: string; end: number } {
  const pieces: Buffer[] = [];
  let i = from;
  for (;;) {
    const nl = raw.indexOf('\r\n', i);
    const size = parseInt(raw.toString('latin1', i, nl), 16);
    expect(Number.isNaN(size)).toBe(false);
    pieces.push(raw.subarray(nl + 2, nl + 2 + size));
    expect(raw.toString('latin1', nl + 2 + size, nl + 4 + size)).toBe('\r\n');
    i = nl + 4 + size;
    if (size === 0) return { text: Buffer.concat(pieces).toString('utf8'), end: i };
  }
}

function rawExchange(base: string, requests: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(new URL(base).port), '127.0.0.1', () => sock.end(requests.join('')));
    let got = '';
    sock.setEncoding('latin1');
    sock.on('data', (s: string) => (got += s));
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error(`no close within 5 s; got: ${got}`)));
  });
}

const { sim, gateway } = fleet();

const question = [{ role: 'user' as const, content: 'Tell me about the river.' }];

describe('streaming pass-through', () => {
  it('streams a chat through the openai SDK, content identical to the node answer', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: n.url }] });
    const client = new OpenAI({ baseURL: h.api, apiKey: 'client-secret' });
    const stream = await client.chat.completions.create({ model: 'm1', messages: question, stream: true, max_tokens: 40, stream_options: { include_usage: true } });
    let text = '';
    let usage;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(expectedAnswer(question, 40));
    expect(usage?.completion_tokens).toBe(40);
    // The client's key never reaches the node.
    expect(n.requests.at(-1)!.headers.authorization).toBeUndefined();
  });

  it('answers non-streamed chat, completions and embeddings', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: `${n.url}/v1` }] });
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x' });
    const chat = await client.chat.completions.create({ model: 'm1', messages: question, max_tokens: 12 });
    expect(chat.choices[0].message.content).toBe(expectedAnswer(question, 12));
    const comp = await client.completions.create({ model: 'm1', prompt: 'Once upon', max_tokens: 5 });
    expect(comp.choices[0].text).toBe(expectedAnswer('Once upon', 5));
    const compStream = await client.completions.create({ model: 'm1', prompt: 'Once upon', max_tokens: 5, stream: true });
    let t = '';
    for await (const c of compStream) t += c.choices[0]?.text ?? '';
    expect(t).toBe(expectedAnswer('Once upon', 5));
    const emb = await client.embeddings.create({ model: 'm1', input: ['a', 'b'] });
    expect(emb.data).toHaveLength(2);
  });

  it('passes unknown fields through and sends the per-node key, never the client key', async () => {
    const n = await sim({ models: ['m1'], apiKey: 'node-key' });
    const h = await gateway({ nodes: [{ url: n.url, api_key: 'node-key' }] });
    const res = await post(`${h.api}/chat/completions`, chatBody('m1', { max_tokens: 3, mirostat: 2, cache_prompt: true, extra: { deep: [1, 2] } }), {
      authorization: 'Bearer client-secret',
    });
    expect(res.status).toBe(200);
    const seen = n.requests.filter((r) => r.path.endsWith('/chat/completions')).at(-1)!;
    expect(seen.body).toMatchObject({ mirostat: 2, cache_prompt: true, extra: { deep: [1, 2] } });
    expect(seen.headers.authorization).toBe('Bearer node-key');
  });

  it('forwards the body byte for byte while it is unchanged, and rewrites only the model for an alias', async () => {
    const n = await sim({ models: ['long-model-id'] });
    const h = await gateway({ nodes: [{ url: n.url }], routing: { aliases: { short: 'long-model-id' } } });
    // A seed beyond 2^53 and the client's own key order and spacing survive only if nothing
    // parses and re-serialises the body on the way.
    const sent = (model: string) => `{ "seed": 18446744073709551615, "model": "${model}",  "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3 }`;
    const last = () => n.requests.filter((r) => r.path.endsWith('/chat/completions')).at(-1)!;
    let res = await post(`${h.api}/chat/completions`, sent('long-model-id'));
    expect(res.status).toBe(200);
    expect(last().raw).toBe(sent('long-model-id'));
    res = await post(`${h.api}/chat/completions`, sent('short'));
    expect(res.status).toBe(200);
    expect(last().body.model).toBe('long-model-id');
  });

  it.each([
    ['CRLF line ends', { lineEnding: '\r\n' as const }],
    ['ping comment lines', { pingEveryMs: 5, ttftMs: 40 }],
    ['multi-line data', { multiLineData: true }],
    ['usage on the finish chunk', { usageStyle: 'finish' as const }],
    ['UTF-8 split across reads', { splitUtf8: true, tokensPerSecond: 400 }],
  ])('reads %s', async (_name, opts) => {
    const n = await sim({ models: ['m1'], ...opts });
    const h = await gateway({ nodes: [{ url: n.url }] });
    const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true, max_tokens: 30, stream_options: { include_usage: true } }));
    const text = await res.text();
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(contentOf(text)).toBe(expectedAnswer(question, 30, { splitUtf8: 'splitUtf8' in opts }));
    const data = sseData(text);
    expect(data.at(-1)).toBe('[DONE]');
    expect(data.some((d) => d !== '[DONE]' && JSON.parse(d).usage?.completion_tokens === 30)).toBe(true);
    expect(text).not.toContain('\ufffd');
  });

  it('forwards each event as it arrives (nothing held back)', async () => {
    const n = await sim({ models: ['m1'], tokensPerSecond: 20 });
    const h = await gateway({ nodes: [{ url: n.url }] });
    const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true, max_tokens: 10 }));
    const reader = res.body!.getReader();
    const t0 = Date.now();
    const arrivals: number[] = [];
    let reads = 0;
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const n = [...dec.decode(value).matchAll(/"content":"/g)].length;
      if (n) reads++;
      for (let i = 0; i < n; i++) arrivals.push(Date.now() - t0);
    }
    // 10 tokens at 20/s: they arrive spread over ~450 ms, in separate reads, not in one batch at the end.
    expect(arrivals).toHaveLength(10);
    expect(arrivals[9] - arrivals[0]).toBeGreaterThan(300);
    expect(reads).toBeGreaterThanOrEqual(7);
  });

  it('works from curl -N', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: n.url }] });
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        'curl',
        ['-sN', `${h.api}/chat/completions`, '-H', 'content-type: application/json', '-d', JSON.stringify(chatBody('m1', { stream: true, max_tokens: 8 }))],
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );
    expect(contentOf(out)).toBe(expectedAnswer(question, 8));
    expect(out.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('streams to an HTTP/1.0 client unchunked, ended by the close', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: n.url }] });
    const body = JSON.stringify(chatBody('m1', { stream: true, max_tokens: 30 }));
    // Sent without a half-close, which Node takes for a client that went away.
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(new URL(h.url).port), '127.0.0.1', () =>
        sock.write(`POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
      );
      let got = '';
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => (got += d));
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
    });
    const [head, text] = [raw.slice(0, raw.indexOf('\r\n\r\n')), raw.slice(raw.indexOf('\r\n\r\n') + 4)];
    expect(head).toMatch(/^HTTP\/1\.[01] 200/);
    expect(head.toLowerCase()).not.toContain('transfer-encoding');
    expect(text.startsWith('data: {')).toBe(true);
    expect(contentOf(Buffer.from(text, 'latin1').toString('utf8'))).toBe(expectedAnswer(question, 30));
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('forwards nothing that follows [DONE] in the same read', async () => {
    const ev = (c: string) => `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: c }, finish_reason: null }] })}\n\n`;
    const node = http.createServer((req, res) => {
      if (req.url === '/v1/models') return res.end(JSON.stringify({ object: 'list', data: [{ id: 'm1', object: 'model' }] }));
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // One write, so that Hearth reads it in one piece: three tokens, [DONE], then a stray event.
      res.end(ev('a') + ev('b') + ev('c') + 'data: [DONE]\n\n' + ev('stray'));
    });
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', r));
    try {
      const h = await gateway({ nodes: [{ url: `http://127.0.0.1:${(node.address() as AddressInfo).port}`, kind: 'openai' }] });
      const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true }));
      const text = await res.text();
      expect(contentOf(text)).toBe('abc');
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
      expect(text).not.toContain('stray');
    } finally {
      node.close();
    }
  });

  it('answers pipelined streaming requests in order, each whole', async () => {
    const n = await sim({ models: ['m1'], tokensPerSecond: 400 });
    const h = await gateway({ nodes: [{ url: n.url }] });
    const one = (tokens: number) => {
      const body = JSON.stringify(chatBody('m1', { stream: true, max_tokens: tokens }));
      return `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    // Both requests in one write: the second answer waits behind the first one.
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const sock = net.connect(Number(new URL(h.url).port), '127.0.0.1', () => sock.write(one(20) + one(30)));
      const parts: Buffer[] = [];
      sock.on('data', (b: Buffer) => {
        parts.push(b);
        if ((Buffer.concat(parts).toString('latin1').match(/\r\n0\r\n\r\n/g) ?? []).length === 2) sock.end();
      });
      sock.on('close', () => resolve(Buffer.concat(parts)));
      sock.on('error', reject);
      sock.setTimeout(10_000, () => sock.destroy(new Error('no two answers within 10 s')));
    });
    const answers: string[] = [];
    let i = 0;
    while (i < raw.length) {
      const headEnd = raw.indexOf('\r\n\r\n', i);
      expect(raw.toString('latin1', i, headEnd)).toMatch(/^HTTP\/1\.1 200[\s\S]*transfer-encoding: chunked/i);
      const body = unchunk(raw, headEnd + 4);
      answers.push(body.text);
      i = body.end;
    }
    expect(answers).toHaveLength(2);
    expect(answers.map(contentOf)).toEqual([expectedAnswer(question, 20), expectedAnswer(question, 30)]);
    for (const a of answers) expect(a.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('holds the node back while the client reads slowly, then delivers the whole answer in order', async () => {
    const n = await sim({ models: ['m1'], tokensPerSecond: 0 });
    const h = await gateway({ nodes: [{ url: n.url }], timeouts: { stall_ms: 10_000 } });
    const tokens = 60_000;
    const body = JSON.stringify(chatBody('m1', { stream: true, max_tokens: tokens }));
    const sock = net.connect(Number(new URL(h.url).port), '127.0.0.1');
    const parts: Buffer[] = [];
    sock.on('data', (b: Buffer) => parts.push(b));
    const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    // Not reading: the socket buffers fill, Hearth stops reading the node, and the node waits.
    sock.pause();
    const deadline = Date.now() + 5000;
    while (n.stats.started === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 600));
    expect(n.stats.completed).toBe(0);
    sock.resume();
    await closed;
    const raw = Buffer.concat(parts);
    const at = raw.indexOf('\r\n\r\n');
    expect(raw.toString('latin1', 0, at).toLowerCase()).toContain('transfer-encoding: chunked');
    const { text, end } = unchunk(raw, at + 4);
    expect(end).toBe(raw.length);
    expect(contentOf(text)).toBe(expectedAnswer(question, tokens));
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(n.stats.completed).toBe(1);
  });
});

describe('models, health and readiness', () => {
  it('lists the union of models of usable nodes, one entry each', async () => {
    const a = await sim({ models: ['m1', 'shared'] });
    const b = await sim({ models: ['/models/deep/path.gguf', 'shared'] });
    const down = await sim({ models: ['gone'] });
    const downUrl = down.url;
    await down.close();
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }, { url: downUrl }] });
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x' });
    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids.sort()).toEqual(['/models/deep/path.gguf', 'm1', 'shared']);
    expect((await client.models.retrieve('/models/deep/path.gguf')).id).toBe('/models/deep/path.gguf');
    await expect(client.models.retrieve('gone')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
    const health = await fetch(`${h.url}/healthz`);
    expect(health.status).toBe(200);
  });

  it('answers unknown endpoints, bad escapes and HEAD like the rest of the API', async () => {
    const a = await sim({ models: ['org/model'] });
    const h = await gateway({ nodes: [{ url: a.url }] });
    const unknown = await fetch(`${h.api}/nowhere`, { method: 'POST' });
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).error).toMatchObject({ type: 'invalid_request_error', code: 'unknown_url', message: 'Unknown endpoint POST /v1/nowhere.' });
    expect((await fetch(`${h.api}/models`, { method: 'DELETE' })).status).toBe(404);
    const bad = await fetch(`${h.api}/models/%E0%A4%A`);
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.code).toBe('invalid_url');
    expect((await (await fetch(`${h.api}/models/org%2Fmodel`)).json()).id).toBe('org/model');
    const head = await fetch(`${h.api}/models`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect((await fetch(`${h.api}/%6Dodels`)).status).toBe(200);
    // Targets fetch would normalise before sending: absolute-form (which HTTP/1.1 servers must
    // accept), dot segments, a fragment.
    for (const target of ['http://127.0.0.1/v1/models', '/v1/x/../models', '/v1/models#top']) {
      const answer = await rawExchange(h.url, [`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
      expect(answer, target).toMatch(/^HTTP\/1\.1 200 [\s\S]*"org\/model"/);
    }
  });

  it('readyz is 503 with no usable node, and says nothing about nodes', async () => {
    const h = await gateway({ nodes: [{ url: 'http://127.0.0.1:9' }] });
    const res = await fetch(`${h.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.text()).not.toContain('127.0.0.1');
  });
});

describe('errors are OpenAI-shaped', () => {
  let n: SimNode;
  let h: TestHearth;
  beforeAll(async () => {
    n = await startSimNode({ models: ['m1'], tokensPerSecond: 0 });
    h = await startHearth({ nodes: [{ url: n.url }], limits: { body_bytes: 4096 } });
  });
  afterAll(async () => {
    await h.close();
    await n.close();
  });

  const shape = async (res: Response, status: number, code?: string) => {
    expect(res.status).toBe(status);
    const j = await res.json();
    expect(Object.keys(j.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    if (code) expect(j.error.code).toBe(code);
    return j.error;
  };

  it('400 for invalid JSON and invalid fields', async () => {
    await shape(await post(`${h.api}/chat/completions`, '{nope'), 400, 'invalid_json');
    await shape(await post(`${h.api}/chat/completions`, { messages: question }), 400, 'missing_required_parameter');
    expect((await shape(await post(`${h.api}/chat/completions`, { model: 'm1', messages: [] }), 400)).param).toBe('messages');
    expect((await shape(await post(`${h.api}/chat/completions`, { model: 'm1', messages: [{ role: 'wizard', content: 'x' }] }), 400)).param).toBe('messages[0].role');
    expect((await shape(await post(`${h.api}/chat/completions`, chatBody('m1', { max_tokens: -1 })), 400)).param).toBe('max_tokens');
    expect((await shape(await post(`${h.api}/chat/completions`, chatBody('m1', { stream: 'yes' })), 400)).param).toBe('stream');
    await shape(await post(`${h.api}/completions`, { model: 'm1' }), 400, 'missing_required_parameter');
    await shape(await post(`${h.api}/embeddings`, { model: 'm1' }), 400, 'missing_required_parameter');
  });

  it('404 for an unknown model lists what exists; 404 for unknown endpoints', async () => {
    const e = await shape(await post(`${h.api}/chat/completions`, chatBody('nope')), 404, 'model_not_found');
    expect(e.message).toContain('m1');
    await shape(await fetch(`${h.api}/files`), 404);
  });

  it('413 over the body limit, declared or streamed without a length', async () => {
    await shape(await post(`${h.api}/chat/completions`, chatBody('m1', { pad: 'x'.repeat(10_000) })), 413, 'request_too_large');
    const big = new TextEncoder().encode(JSON.stringify(chatBody('m1', { pad: 'x'.repeat(10_000) })));
    const body = new ReadableStream({
      start(c) {
        for (let i = 0; i < big.length; i += 1000) c.enqueue(big.slice(i, i + 1000));
        c.close();
      },
    });
    const res = await fetch(`${h.api}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit);
    await shape(res, 413, 'request_too_large');
  });

  it('passes a node rejection (context size) through with its status', async () => {
    n.setFault({ type: '400-context', times: 1 });
    const e = await shape(await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true })), 400);
    expect(e.message).toMatch(/context/);
  });

  it('surfaces as typed errors in the openai SDK', async () => {
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x', maxRetries: 0 });
    await expect(client.chat.completions.create({ model: 'nope', messages: question })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.chat.completions.create({ model: 'm1', messages: [] })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });
});

describe('access', () => {
  it('401 without or with a wrong key, compared by the gateway; 200 with a right one', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: n.url }], api_keys: ['k-one', 'k-two'] });
    const bad = new OpenAI({ baseURL: h.api, apiKey: 'wrong', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const none = await fetch(`${h.api}/models`);
    expect(none.status).toBe(401);
    expect((await none.json()).error.code).toBe('invalid_api_key');
    const good = new OpenAI({ baseURL: h.api, apiKey: 'k-two' });
    expect((await good.models.list()).data.map((m) => m.id)).toEqual(['m1']);
    // Health endpoints need no key.
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
  });
});

describe('requests the API answers before reading their body', () => {
  it('takes in the rest for a moment, then closes: a client cannot keep Hearth reading', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: n.url }], api_keys: ['k'] });
    const port = Number(new URL(h.url).port);
    const sock = net.connect(port, '127.0.0.1');
    let answer = '';
    sock.setEncoding('latin1');
    sock.on('data', (s: string) => (answer += s));
    sock.on('error', () => {});
    sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n');
    const block = Buffer.alloc(64 * 1024, 32);
    const t0 = Date.now();
    const feeder = setInterval(() => sock.writable && sock.write(block), 5);
    await new Promise<void>((resolve) => sock.once('close', () => resolve()));
    clearInterval(feeder);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(answer).toContain('invalid_api_key');
  });

  it('keeps the connection when the body is small and complete', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: n.url }], api_keys: ['k'] });
    const answers = await rawExchange(h.url, [
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}',
      'GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nConnection: close\r\n\r\n',
    ]);
    expect(answers).toMatch(/^HTTP\/1\.1 401 [\s\S]*HTTP\/1\.1 200 /);
  });
});

describe('failures before the first byte are retried on another node', () => {
  it.each([
    ['500', { type: '500' as const }],
    ['429 with Retry-After', { type: '429' as const, retryAfter: 30 }],
    ['reset before headers', { type: 'reset-before-headers' as const }],
    ['no answer within the first-byte limit', { type: 'hang-before-headers' as const }],
  ])('%s', async (_name, fault) => {
    const bad = await sim({ models: ['m1'], fault });
    const good = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: bad.url }, { url: good.url }], timeouts: { first_byte_ms: 400 } });
    for (let i = 0; i < 4; i++) {
      const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true, max_tokens: 5 }));
      expect(res.status).toBe(200);
      expect(contentOf(await res.text())).toBe(expectedAnswer(question, 5));
    }
    expect(bad.requests.filter((r) => r.path.endsWith('/chat/completions')).length).toBeGreaterThan(0);
  });

  it('pings do not stretch the first-byte limit: no event in time moves to the next node, or ends in 504', async () => {
    const pinging = await sim({ models: ['m1'], pingEveryMs: 40, ttftMs: 10_000 });
    const good = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: pinging.url }, { url: good.url }], timeouts: { first_byte_ms: 300 } });
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true, max_tokens: 5 }));
      expect(contentOf(await res.text())).toBe(expectedAnswer(question, 5));
      expect(Date.now() - t0).toBeLessThan(2_000);
    }
    expect(pinging.requests.filter((r) => r.path.endsWith('/chat/completions')).length).toBeGreaterThan(0);

    const alone = await gateway({ nodes: [{ url: pinging.url }], timeouts: { first_byte_ms: 300 }, routing: { retries: 0 } });
    const t0 = Date.now();
    const res = await post(`${alone.api}/chat/completions`, chatBody('m1', { stream: true }));
    expect(res.status).toBe(504);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('gives up after the configured retries with the right status', async () => {
    const a = await sim({ models: ['m1'], fault: { type: '500' } });
    const b = await sim({ models: ['m1'], fault: { type: '500' } });
    const c = await sim({ models: ['m1'], fault: { type: '500' } });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }, { url: c.url }], routing: { retries: 1 } });
    const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true }));
    expect(res.status).toBe(502);
    expect((await res.json()).error.type).toBe('server_error');
    const hits = [a, b, c].map((n) => n.requests.filter((r) => r.path.endsWith('/chat/completions')).length);
    expect(hits.reduce((x, y) => x + y)).toBe(2);
  });

  it('504 when no node answers in time; 429 with Retry-After when all are busy', async () => {
    const slow = await sim({ models: ['m1'], fault: { type: 'hang-before-headers' } });
    const h = await gateway({ nodes: [{ url: slow.url }], timeouts: { first_byte_ms: 300 }, routing: { retries: 0 } });
    const res = await post(`${h.api}/chat/completions`, chatBody('m1'));
    expect(res.status).toBe(504);
    const busy = await sim({ models: ['m2'], fault: { type: '429', retryAfter: 7 } });
    const h2 = await gateway({ nodes: [{ url: busy.url }], routing: { retries: 0 } });
    const r2 = await post(`${h2.api}/chat/completions`, chatBody('m2'));
    expect(r2.status).toBe(429);
    expect(r2.headers.get('retry-after')).toBe('7');
  });

  it('503 with Retry-After when the model exists but no node is up', async () => {
    const n = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: n.url }], probe: { interval_ms: 100 } });
    await n.close();
    await new Promise((r) => setTimeout(r, 400));
    const res = await post(`${h.api}/chat/completions`, chatBody('m1'));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBeTruthy();
  });

  it('resends once on a fresh connection when a reused keep-alive socket was closed (llama-server style), without failing the node', async () => {
    const n = await sim({ models: ['m1'], closeAfterStream: true });
    const h = await gateway({ nodes: [{ url: n.url }], routing: { retries: 0 } });
    for (let i = 0; i < 30; i++) {
      const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: i % 2 === 0, max_tokens: 3 }));
      expect(res.status).toBe(200);
      await res.text();
      // Give the node's close time to race with the next request's socket reuse.
      if (i % 3 === 0) await new Promise((r) => setImmediate(r));
    }
  });
});

describe('failures after the first byte end the stream with an error event and no [DONE]', () => {
  it.each([
    ['cut mid-stream', { type: 'cut' as const, afterChunks: 3 }],
    ['stall', { type: 'stall' as const, afterChunks: 3 }],
    ['malformed chunk', { type: 'malformed' as const, afterChunks: 3 }],
    ['end without [DONE]', { type: 'no-done' as const }],
  ])('%s', async (_name, fault) => {
    const n = await sim({ models: ['m1'], fault, tokensPerSecond: 200 });
    const h = await gateway({ nodes: [{ url: n.url }], timeouts: { stall_ms: 300 } });
    const res = await post(`${h.api}/chat/completions`, chatBody('m1', { stream: true, max_tokens: 20 }));
    expect(res.status).toBe(200);
    const data = sseData(await res.text());
    expect(data).not.toContain('[DONE]');
    const last = JSON.parse(data.at(-1)!);
    expect(last.error.type).toBe('server_error');
    expect(last.error.message).toMatch(/interrupted/);
    // The SDK raises rather than presenting the cut answer as complete.
    n.setFault(fault);
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'm1', messages: question, stream: true, max_tokens: 20 });
    await expect(
      (async () => {
        for await (const _ of stream) {
          /* drain */
        }
      })(),
    ).rejects.toThrow(/interrupted/);
  });
});

describe('a client that stops reading', () => {
  it('is cut after the stall limit without blaming the node or continuing elsewhere', async () => {
    const a = await sim({ models: ['m1'] });
    const b = await sim({ models: ['m1'] });
    const h = await gateway({ nodes: [{ url: a.url }, { url: b.url }], timeouts: { stall_ms: 300 } });
    // A raw client that sends its request and never reads: Hearth's writes back up, it stops
    // reading the node, and the silence that follows is the client's.
    const body = JSON.stringify(chatBody('m1', { stream: true, max_tokens: 100_000 }));
    const { port } = new URL(h.url);
    const sock = net.connect(Number(port), '127.0.0.1', () => {
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      sock.pause();
    });
    try {
      const deadline = Date.now() + 10_000;
      while (a.stats.started + b.stats.started === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // Within the stall limit (plus slack), the node's generation is stopped...
      expect(await a.idle(5_000)).toBe(true);
      expect(await b.idle(5_000)).toBe(true);
      // ...and nothing is continued on the other node (it would start within milliseconds).
      await new Promise((r) => setTimeout(r, 300));
      expect(a.stats.started + b.stats.started).toBe(1);
    } finally {
      sock.destroy();
    }
    // The node is still used as usual.
    const res = await post(`${h.api}/chat/completions`, chatBody('m1', { max_tokens: 3 }));
    expect(res.status).toBe(200);
  });
});

describe('client abort', () => {
  it('aborts the upstream request at once (SDK abort)', async () => {
    const n = await sim({ models: ['m1'], tokensPerSecond: 50 });
    const h = await gateway({ nodes: [{ url: n.url }] });
    const client = new OpenAI({ baseURL: h.api, apiKey: 'x' });
    const ac = new AbortController();
    const stream = await client.chat.completions.create({ model: 'm1', messages: question, stream: true, max_tokens: 500 }, { signal: ac.signal });
    let got = 0;
    // The SDK ends the iteration (or throws an abort error) once aborted.
    await (async () => {
      for await (const c of stream) {
        if (c.choices[0]?.delta?.content && ++got === 3) ac.abort();
      }
    })().catch((e) => expect(String(e)).toMatch(/abort/i));
    // Chunks that reached the client with the third in one read may still be yielded; 500 are not.
    expect(got).toBeGreaterThanOrEqual(3);
    expect(got).toBeLessThan(20);
    const t0 = Date.now();
    expect(await n.idle(1000)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(n.stats.aborted).toBe(1);
  });
});

describe('no key configured: only local clients', () => {
  // Loopback tests cannot come from other addresses: the access rule itself, per address.
  it('serves private-network peers and tells a public one how to add a key (403)', () => {
    const access = apiAccess([]);
    for (const ip of ['127.0.0.1', '::1', '192.168.1.20', '10.1.2.3', '::ffff:172.20.0.5', '100.101.102.103', 'fd12:3456::1', 'fe80::1%eth0']) {
      expect(access(ip, undefined), ip).toBeUndefined();
    }
    for (const ip of ['203.0.113.7', '8.8.8.8', '::ffff:1.1.1.1', '2001:db8::1', '100.128.0.1', undefined]) {
      const e = access(ip, undefined);
      expect(e?.status, ip).toBe(403);
      expect(e!.body().error.type).toBe('permission_error');
      expect(e!.message).toMatch(/api_keys/);
    }
  });
});
