/**
 * Simulated nodes in a process of their own, driven over IPC: a load generator that starts
 * hundreds of requests at once stalls its own event loop for a while, and nodes sharing that
 * loop would start answering late (a delay no balancer can do anything about).
 * The parent calls `startSimHost`; the same file, forked, is the child.
 */
import { fork } from 'node:child_process';
import { startSimNode, type SimNode, type SimNodeOptions, type SimStats } from '../sim-node.ts';
import { stopChild } from './proc.ts';

type Command = { cmd: 'stats' } | { cmd: 'idle'; timeoutMs: number } | { cmd: 'kill'; node: number };
type Reply = { id: number; ok: boolean; value?: unknown; error?: string };

export interface SimHost {
  urls: string[];
  pid: number;
  /** Each node's counters, in the order given. */
  stats(): Promise<SimStats[]>;
  /** Resolves when no node has a generation running or waiting (false on time-out). */
  idle(timeoutMs?: number): Promise<boolean>;
  /** Kill one node abruptly (every socket destroyed, listener closed), as `SimNode.kill`. */
  kill(node: number): Promise<void>;
  close(): Promise<void>;
}

export async function startSimHost(nodes: SimNodeOptions[]): Promise<SimHost> {
  const child = fork(import.meta.filename, ['--sim-host'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<number, (r: Reply) => void>();
  let next = 0;
  const urls = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('sim host did not start in 15 s')), 15_000);
    child.once('message', (m: { urls?: string[] }) => {
      clearTimeout(timer);
      if (m.urls) resolve(m.urls);
      else reject(new Error('sim host sent no URLs'));
    });
    child.once('exit', (code) => reject(new Error(`sim host exited (${code})`)));
    child.send({ nodes });
  });
  child.on('message', (r: Reply) => waiting.get(r.id)?.(r));
  // A child gone (or its channel closed) answers nothing more: fail what waits rather than hang.
  const gone = (why: string) => {
    for (const [id, answer] of waiting) answer({ id, ok: false, error: `sim host ${why}` });
  };
  child.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
  child.on('error', (e) => gone(`failed: ${e.message}`));
  const ask = <T>(c: Command, timeoutMs = 30_000): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`sim host: no answer to ${c.cmd}`));
      }, timeoutMs);
      waiting.set(id, (r) => {
        clearTimeout(timer);
        waiting.delete(id);
        if (r.ok) resolve(r.value as T);
        else reject(new Error(r.error));
      });
      if (!child.connected) return waiting.get(id)!({ id, ok: false, error: 'sim host is gone' });
      child.send({ ...c, id });
    });
  return {
    urls,
    pid: child.pid!,
    stats: () => ask<SimStats[]>({ cmd: 'stats' }),
    idle: (timeoutMs = 10_000) => ask<boolean>({ cmd: 'idle', timeoutMs }, timeoutMs + 5_000),
    kill: (node) => ask<void>({ cmd: 'kill', node }),
    close: () => stopChild(child),
  };
}

// --- the child
if (process.argv.includes('--sim-host') && process.send) {
  let sims: SimNode[] = [];
  const reply = (r: Reply) => process.send!(r);
  process.on('message', async (m: { nodes?: SimNodeOptions[]; id?: number } & Partial<{ cmd: Command['cmd']; timeoutMs: number; node: number }>) => {
    if (m.nodes) {
      sims = await Promise.all(m.nodes.map((o) => startSimNode(o)));
      return process.send!({ urls: sims.map((s) => s.url) });
    }
    const id = m.id!;
    try {
      if (m.cmd === 'stats') reply({ id, ok: true, value: sims.map((s) => ({ ...s.stats })) });
      else if (m.cmd === 'idle') reply({ id, ok: true, value: (await Promise.all(sims.map((s) => s.idle(m.timeoutMs)))).every(Boolean) });
      else if (m.cmd === 'kill') {
        sims[m.node ?? -1]?.kill();
        reply({ id, ok: true });
      }
    } catch (e) {
      reply({ id, ok: false, error: (e as Error).message });
    }
  });
  process.on('SIGTERM', () => void Promise.all(sims.map((s) => s.close())).finally(() => process.exit(0)));
  process.on('disconnect', () => process.exit(0));
}
