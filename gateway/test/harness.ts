/** Starts a real Hearth on loopback for tests, on embedded defaults plus overrides. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterEach } from 'vitest';
import { stopChild } from '../../bench/lib/proc.ts';
import { startSimNode, type SimNode, type SimNodeOptions } from '../../bench/sim-node.ts';
import { loadConfig, type Config } from '../config.ts';
import { createHearth, type Hearth } from '../server.ts';

export const BUNDLE = resolve(import.meta.dirname, '../../dist/hearth.mjs');

export interface BundleProc {
  proc: ChildProcess;
  url: string;
  /** Until /readyz says a node is usable (at most 5 s). */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

/** The built bundle in a process of its own on loopback, discovery off, once it listens. */
export async function startBundle(o: { data: string; node: string; bundle?: string; env?: Record<string, string> }): Promise<BundleProc> {
  const bundle = o.bundle ?? BUNDLE;
  const proc = spawn(process.execPath, [bundle, '--host', '127.0.0.1', '--port', '0', '--data', o.data, '--node', o.node], {
    cwd: dirname(bundle),
    env: { PATH: process.env.PATH, HEARTH_DISCOVERY_ENABLED: 'false', ...o.env },
  });
  const url = await new Promise<string>((res, rej) => {
    let err = '';
    proc.stderr!.on('data', (b) => {
      err += b;
      const m = /listening on (http:\/\/\S+) /.exec(err);
      if (m) res(m[1]);
    });
    proc.once('exit', () => rej(new Error(err)));
  });
  return {
    proc,
    url,
    async ready() {
      for (let i = 0; i < 100 && (await fetch(`${url}/readyz`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 50));
    },
    stop: () => stopChild(proc),
  };
}

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
