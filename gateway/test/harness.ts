/** Starts a real Hearth on loopback for tests, on embedded defaults plus overrides. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { startSimNode, type SimNode, type SimNodeOptions } from '../../bench/sim-node.ts';
import { loadConfig, type Config } from '../config.ts';
import { createHearth, type Hearth } from '../server.ts';

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends any[] ? T[K] : DeepPartial<T[K]>) : T[K] };

export interface TestHearth {
  hearth: Hearth;
  url: string;
  api: string;
  config: Config;
  close(): Promise<void>;
}

function merge(base: any, over: any): any {
  for (const [k, v] of Object.entries(over ?? {})) {
    if (v && typeof v === 'object' && !Array.isArray(v) && base[k] && typeof base[k] === 'object') merge(base[k], v);
    else base[k] = v;
  }
  return base;
}

export async function startHearth(over: DeepPartial<Config> = {}): Promise<TestHearth> {
  const config = merge(loadConfig(), {
    host: '127.0.0.1',
    data: mkdtempSync(join(tmpdir(), 'hearth-test-')),
    port: 0,
    log: 'error',
    discovery: { enabled: false },
    probe: { interval_ms: 200, timeout_ms: 2000 },
    ...over,
  }) as Config;
  const hearth = await createHearth(config);
  const { url } = await hearth.start();
  // Wait until every configured node has been read once.
  const t0 = Date.now();
  while (hearth.registry.list().some((n) => n.health === 'unknown') && Date.now() - t0 < 3000) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return { hearth, url, api: `${url}/v1`, config, close: () => hearth.close() };
}

/** Read a whole SSE response body as text. */
export async function readAll(res: Response): Promise<string> {
  return await res.text();
}

/** Parse an SSE text into its data payloads. */
export function sseData(text: string): string[] {
  return text
    .split(/\r?\n\r?\n/)
    .map((e) => e.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n'))
    .filter((d) => d !== '');
}

/** Concatenated `delta.content` of a chat stream's data events. */
export function contentOf(text: string): string {
  let s = '';
  for (const d of sseData(text)) {
    if (d === '[DONE]') continue;
    const j = JSON.parse(d);
    s += j.choices?.[0]?.delta?.content ?? j.choices?.[0]?.text ?? '';
  }
  return s;
}

export const chatBody = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'Tell me about the river.' }],
  ...extra,
});

export function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

/** Simulated nodes (unthrottled unless told) and gateways, all closed after each test. */
export function fleet() {
  const nodes: SimNode[] = [];
  const hearths: TestHearth[] = [];
  afterEach(async () => {
    await Promise.all(hearths.splice(0).map((h) => h.close()));
    await Promise.all(nodes.splice(0).map((n) => n.close()));
  });
  return {
    async sim(o: SimNodeOptions = {}): Promise<SimNode> {
      const n = await startSimNode({ tokensPerSecond: 0, ...o });
      nodes.push(n);
      return n;
    },
    async gateway(over: DeepPartial<Config>): Promise<TestHearth> {
      const h = await startHearth(over);
      hearths.push(h);
      return h;
    },
  };
}
