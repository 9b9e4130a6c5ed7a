/**
 * Child processes of the benchmarks: Hearth (the real bundle), nginx (the baseline proxy) and
 * simulated nodes in their own process; plus CPU time and peak memory read from /proc.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { buildSync } from 'esbuild';
import { join, resolve } from 'node:path';
import { freePort } from './llama.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BUNDLE = join(ROOT, 'dist/hearth.mjs');
export const NGINX = process.env.HEARTH_BENCH_NGINX ?? '/usr/sbin/nginx';

/**
 * Waits until `ready` finds what it needs in a child's output so far (stdout and stderr
 * together); rejects if the child exits first or after `ms`.
 */
function untilOutput<T>(proc: ChildProcess, what: string, ready: (out: string) => T | undefined, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start in ${ms / 1000} s:\n${out}`)), ms);
    const on = (b: Buffer) => {
      out = (out + b).slice(-20_000);
      const value = ready(out);
      if (value === undefined) return;
      clearTimeout(timer);
      resolve(value);
    };
    proc.stdout?.on('data', on);
    proc.stderr?.on('data', on);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready:\n${out}`));
    });
  });
}

let clkTck: number | undefined;
/** Clock ticks per second of /proc/PID/stat times. */
export function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** User and kernel CPU seconds a process has used so far (its own threads, not its children). */
export function cpuTimes(pid: number): { user: number; kernel: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime is field 14, stime 15.
  return { user: Number(f[11]) / clockTicks(), kernel: Number(f[12]) / clockTicks() };
}

/** A field of /proc/PID/status in kB (VmHWM: peak RSS, VmRSS: current). */
export function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Direct children of a process (nginx's workers). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function tomlValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  throw new Error(`cannot write ${JSON.stringify(v)} as TOML`);
}

export interface HearthOptions {
  nodes: { url: string; kind?: string; name?: string }[];
  /** Extra settings by dotted key, e.g. `{ 'routing.policy': 'round-robin' }`. */
  settings?: Record<string, string | number | boolean | string[]>;
  /** Fixed port (start-up timing); default 0. */
  port?: number;
  /** Default 'info' (needed to learn the port). */
  log?: string;
}

export interface HearthProc {
  url: string;
  port: number;
  pid: number;
  proc: ChildProcess;
  dir: string;
  stop(): Promise<void>;
}

/** Write a TOML config for Hearth into a fresh temp dir; returns the file. */
export function writeHearthConfig(dir: string, o: HearthOptions): string {
  const top: string[] = [`host = "127.0.0.1"`, `port = ${o.port ?? 0}`, `data = ${JSON.stringify(join(dir, 'data'))}`, `log = "${o.log ?? 'info'}"`];
  const tables = new Map<string, string[]>([['discovery', ['enabled = false']]]);
  for (const [key, value] of Object.entries(o.settings ?? {})) {
    const dot = key.lastIndexOf('.');
    if (dot < 0) top.push(`${key} = ${tomlValue(value)}`);
    else {
      const t = key.slice(0, dot);
      if (!tables.has(t)) tables.set(t, []);
      tables.get(t)!.push(`${key.slice(dot + 1)} = ${tomlValue(value)}`);
    }
  }
  let text = top.join('\n') + '\n';
  for (const [t, lines] of tables) text += `\n[${t}]\n${lines.join('\n')}\n`;
  for (const n of o.nodes) {
    text += `\n[[nodes]]\nurl = ${JSON.stringify(n.url)}\n`;
    if (n.kind) text += `kind = ${JSON.stringify(n.kind)}\n`;
    if (n.name) text += `name = ${JSON.stringify(n.name)}\n`;
  }
  const file = join(dir, 'hearth.toml');
  writeFileSync(file, text);
  return file;
}

/** The Node flags Hearth runs with, taken from `npm start` so the bench measures what users run. */
export const NODE_FLAGS: string[] = (() => {
  const start: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start;
  const m = /\bnode((?: --\S+)*) dist\/hearth\.mjs/.exec(start);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
})();

/**
 * For investigating, never for figures that are reported: BENCH_NODE_FLAGS adds Node flags to
 * every Hearth the bench starts, BENCH_PROFILE=DIR writes a CPU profile of each there (build
 * with BUILD_NO_MINIFY=1 for readable names).
 */
export const EXTRA_FLAGS: string[] = [
  ...(process.env.BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
  ...(process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : []),
];

/** Start `node FLAGS dist/hearth.mjs --config FILE` and wait for its "listening on" line. */
export async function startHearth(o: HearthOptions): Promise<HearthProc> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-'));
  const file = writeHearthConfig(dir, o);
  const proc = spawn(process.execPath, [...NODE_FLAGS, ...EXTRA_FLAGS, BUNDLE, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir, env: cleanEnv() });
  const url = await untilOutput(proc, 'Hearth', (out) => /listening on (http:\/\/[^\s]+?)\s/.exec(out)?.[1]);
  return {
    url,
    port: Number(new URL(url).port),
    pid: proc.pid!,
    proc,
    dir,
    stop: async () => {
      await stopChild(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The environment without HEARTH_* variables (they would override the config file). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HEARTH_')) env[k] = v;
  return env;
}

export function stopChild(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((res) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return res();
    const force = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => {
      clearTimeout(force);
      res();
    });
    proc.kill(signal);
  });
}

/** Wait until Hearth says it can route (`/readyz`). */
export async function waitReady(url: string, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    try {
      const r = await fetch(`${url}/readyz`);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      /* not yet */
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`${url} not ready after ${timeoutMs} ms`);
    await sleep(20);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once a TCP connection to the port succeeds (polling every `everyMs`). */
export async function waitPort(port: number, timeoutMs: number, everyMs = 2): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`port ${port} not accepting after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// nginx

export interface NginxProc {
  /** One URL per upstream, in the order given. */
  urls: string[];
  masterPid: number;
  workerPid: number;
  dir: string;
  errorLog(): string;
  stop(): Promise<void>;
}

/**
 * nginx as a plain streaming reverse proxy: `proxy_pass` with `proxy_buffering off` and HTTP/1.1
 * keep-alive to the upstream, one worker (Hearth is one thread too), in its own temp prefix.
 */
export async function startNginx(upstreams: string[]): Promise<NginxProc> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-nginx-'));
  for (const d of ['logs', 'tmp']) mkdirSync(join(dir, d));
  const ports: number[] = [];
  for (let i = 0; i < upstreams.length; i++) ports.push(await freePort());
  const servers = upstreams
    .map((u, i) => {
      const host = new URL(u).host;
      return `  upstream up${i} { server ${host}; keepalive 256; }
  server {
    listen 127.0.0.1:${ports[i]};
    location / {
      proxy_pass http://up${i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }
  }`;
    })
    .join('\n');
  const conf = `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  keepalive_requests 100000;
${servers}
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const proc = spawn(NGINX, ['-p', dir, '-c', 'nginx.conf', '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (b) => (err = (err + b).slice(-4000)));
  const exited = new Promise<never>((_, rej) => proc.once('exit', (c) => rej(new Error(`nginx exited (${c}): ${err}`))));
  await Promise.race([Promise.all(ports.map((p) => waitPort(p, 5000))), exited]);
  let workerPid = 0;
  for (let i = 0; i < 100 && !workerPid; i++) {
    workerPid = childPids(proc.pid!)[0] ?? 0;
    if (!workerPid) await sleep(10);
  }
  exited.catch(() => {});
  return {
    urls: ports.map((p) => `http://127.0.0.1:${p}`),
    masterPid: proc.pid!,
    workerPid,
    dir,
    errorLog: () => {
      try {
        return readFileSync(join(dir, 'logs/error.log'), 'utf8');
      } catch {
        return '';
      }
    },
    stop: async () => {
      await stopChild(proc, 'SIGQUIT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Simulated node in its own process

export interface SimProc {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** `bench/sim-node.ts` as a child process (args as on its CLI), so it does not share a core's event loop with the client. */
export async function startSimProcess(args: string[]): Promise<SimProc> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/sim-node.ts'), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await untilOutput(proc, 'sim-node', (out) => / on (http:\/\/\S+)/.exec(out)?.[1], 15_000);
  return { url, pid: proc.pid!, stop: () => stopChild(proc) };
}

export interface BareProxyProc {
  /** One URL per upstream, in the order given. */
  urls: string[];
  pid: number;
  stop(): Promise<void>;
}

/**
 * `bench/bare-proxy.ts`: a bare node:http pipe in front of each upstream, in its own process.
 * Compiled to plain JavaScript first and run with Hearth's Node flags, so that it compares like
 * for like (under tsx, its loader thread alone would add tens of MiB).
 */
export async function startBareProxy(upstreams: string[]): Promise<BareProxyProc> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bare-proxy-'));
  const script = join(dir, 'bare-proxy.mjs');
  buildSync({ entryPoints: [join(ROOT, 'bench/bare-proxy.ts')], outfile: script, platform: 'node', format: 'esm', logLevel: 'warning' });
  const proc = spawn(process.execPath, [...NODE_FLAGS, script, ...upstreams], { stdio: ['ignore', 'pipe', 'inherit'], env: cleanEnv() });
  proc.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const urls = await untilOutput(proc, 'bare proxy', (out) => {
    const got = [...out.matchAll(/listening (\d+)/g)].map((m) => `http://127.0.0.1:${m[1]}`);
    return got.length === upstreams.length ? got : undefined;
  });
  return {
    urls,
    pid: proc.pid!,
    stop: () => stopChild(proc),
  };
}
