// A real chat for tests: web-min routes on 127.0.0.1 with a real history store in a temp dir and
// the real cluster (Registry, Balancer, Dispatcher, UpstreamClient) in front of a simulated node,
// plus a tiny node that streams chosen text (model 'payload-model') to test escaping of answers.

import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { serve, type HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { startSimNode, type SimNode, type SimNodeOptions } from '../../bench/sim-node.ts';
import { Balancer } from '../../cluster/balancer.ts';
import { Dispatcher } from '../../cluster/dispatch.ts';
import { Registry } from '../../cluster/registry.ts';
import { UpstreamClient } from '../../cluster/upstream.ts';
import { openHistory, type History, type HistoryOptions } from '../../gateway/history/store.ts';
import { webMinRoutes } from '../routes.ts';

export interface Harness {
  url: string;
  history: History;
  sim: SimNode;
  /** The next answer of 'payload-model', streamed in these pieces. */
  payloadAnswer: { pieces: string[] };
  dir: string;
  close(): Promise<void>;
}

/** An OpenAI-compatible node that streams `answer.pieces` as content deltas, slowly. */
function startPayloadNode(answer: { pieces: string[] }): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/v1/chat/completions') {
      req.resume();
      req.on('end', async () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const p of answer.pieces) {
          res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: p }, finish_reason: null }] })}\n\n`);
          await new Promise((r) => setTimeout(r, 2));
        }
        res.end(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`);
      });
      return;
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
      }),
    ),
  );
}

export async function startHarness(opts: { password?: string; sim?: SimNodeOptions; history?: Partial<HistoryOptions> } = {}): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-web-min-'));
  const history = await openHistory({ dir, flushIntervalMs: 100, ...opts.history });
  const sim = await startSimNode({ kind: 'openai', models: ['sim-model'], tokensPerSecond: 2000, defaultTokens: 24, ...opts.sim });
  const payloadAnswer = { pieces: ['hello'] };
  const payload = await startPayloadNode(payloadAnswer);
  const registry = new Registry();
  registry.upsert({ id: 'sim', baseUrl: sim.url, kind: 'openai', apiPath: '/v1', models: ['sim-model'], health: 'up', name: 'sim-node' }, 'static');
  registry.upsert({ id: 'payload', baseUrl: payload.url, kind: 'openai', apiPath: '/v1', models: ['payload-model'], health: 'up', name: 'payload-node' }, 'static');
  const balancer = new Balancer(registry);
  const upstream = new UpstreamClient();
  const dispatcher = new Dispatcher(balancer, upstream, { retries: 1, connectTimeoutMs: 2000, firstByteTimeoutMs: 10_000, stallTimeoutMs: 10_000 });
  const app = new Hono<{ Bindings: HttpBindings }>();
  app.route('/', webMinRoutes({ history, dispatcher, models: () => balancer.models(), password: opts.password, sessionDays: 30 }));
  const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => (server.listening ? r() : server.once('listening', () => r())));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    history,
    sim,
    payloadAnswer,
    dir,
    async close() {
      await new Promise<void>((r) => {
        server.close(() => r());
        (server as unknown as { closeAllConnections(): void }).closeAllConnections();
      });
      upstream.close();
      await sim.close();
      await payload.close();
      await history.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 30_000,
  });
}

/** A browser context with JavaScript switched off: everything must work without it. */
export function noJsContext(browser: Browser, opts: { width?: number; height?: number; dark?: boolean } = {}): Promise<BrowserContext> {
  return browser.newContext({
    javaScriptEnabled: false,
    viewport: { width: opts.width ?? 390, height: opts.height ?? 844 },
    colorScheme: opts.dark ? 'dark' : 'light',
    acceptDownloads: true,
  });
}

/** Cookie and CSRF token of a fresh page, for requests made without the browser. */
export async function formSession(url: string, cookie = ''): Promise<{ cookie: string; csrf: string; html: string }> {
  const res = await fetch(url, { headers: cookie ? { cookie } : {}, redirect: 'manual' });
  const html = await res.text();
  const set = res.headers.getSetCookie().map((c) => c.split(';')[0]);
  const jar = new Map(cookie ? cookie.split('; ').map((kv) => kv.split('=') as [string, string]) : []);
  for (const kv of set) {
    const i = kv.indexOf('=');
    jar.set(kv.slice(0, i), kv.slice(i + 1));
  }
  const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
  return { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '), csrf, html };
}
