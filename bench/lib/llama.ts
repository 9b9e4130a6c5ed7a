/** Starts the real llama.cpp llama-server (installed by ../shared/llama-rig) for tests and benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
export const LLAMA_SERVER = process.env.HEARTH_TEST_LLAMA_SERVER ?? resolve(ROOT, '.rig/llama/bin/llama-server');
export const TINY_MODEL = process.env.HEARTH_TEST_MODEL ?? resolve(ROOT, '../shared/llama-rig/tiny.gguf');

export const llamaAvailable = (): boolean => existsSync(LLAMA_SERVER) && existsSync(TINY_MODEL);
export const llamaMissing = `real llama-server not installed: run ../shared/llama-rig/install-llama-server.sh .rig/llama (CI does)`;

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

export interface Llama {
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startLlama(opts: { parallel?: number; ctx?: number; alias?: string; extra?: string[] } = {}): Promise<Llama> {
  const port = await freePort();
  const args = ['-m', TINY_MODEL, '--host', '127.0.0.1', '--port', String(port), '-c', String(opts.ctx ?? 4096), '--parallel', String(opts.parallel ?? 4), '--metrics', '--no-webui', ...(opts.alias ? ['--alias', opts.alias] : []), ...(opts.extra ?? [])];
  const proc = spawn(LLAMA_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (b) => (log = (log + b).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`llama-server exited: ${log}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() - t0 > 20_000) throw new Error(`llama-server did not become ready: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    proc,
    stop: () =>
      new Promise((res) => {
        if (proc.exitCode !== null) return res();
        proc.once('exit', () => res());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 3000).unref();
      }),
  };
}
