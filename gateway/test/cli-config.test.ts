import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startSimNode } from '../../bench/sim-node.ts';
import { ConfigError, loadConfig } from '../config.ts';
import { parseCli } from '../cli.ts';
import { startBundle } from './harness.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BUNDLE = join(ROOT, 'dist/hearth.mjs');
const tmp = () => mkdtempSync(join(tmpdir(), 'hearth-cfg-'));

function run(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, args, { cwd, env: { PATH: process.env.PATH, ...env }, timeout: 10_000 }, (err, stdout, stderr) =>
      res({ code: err ? ((err as any).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('configuration: defaults, then file, then HEARTH_* variables, then flags', () => {
  it('has embedded defaults', () => {
    const c = loadConfig();
    expect(c.port).toBe(8808);
    expect(c.data).toBe('./data');
    expect(c.nodes).toEqual([]);
    expect(c.routing.policy).toBe('hearth');
  });

  it('each layer overrides the one before', () => {
    const dir = tmp();
    const file = join(dir, 'hearth.toml');
    writeFileSync(file, 'port = 9000\nhost = "127.0.0.1"\n[timeouts]\nstall_ms = 5000\nconnect_ms = 1000\n[[nodes]]\nurl = "http://10.0.0.5:8080/v1"\napi_key = "k"\n');
    const c = loadConfig({
      file,
      env: { HEARTH_PORT: '9001', HEARTH_TIMEOUTS_STALL_MS: '6000', PATH: '/bin' },
      flags: new Map<string, unknown>([['port', '9002']]),
    });
    expect(c.port).toBe(9002);
    expect(c.host).toBe('127.0.0.1');
    expect(c.timeouts).toMatchObject({ stall_ms: 6000, connect_ms: 1000 });
    expect(c.nodes).toEqual([{ url: 'http://10.0.0.5:8080/v1', api_key: 'k' }]);
  });

  it.each([
    ['an unknown key', 'prot = 1\n', /unknown key "prot"; allowed here: .*port/],
    ['an unknown nested key', '[timeouts]\nstall = 1\n', /unknown key "timeouts.stall"; allowed here: timeouts.connect_ms/],
    ['a bad value', 'port = 99999\n', /invalid value 99999 for "port": expected a whole number from 0 to 65535/],
    ['a bad enum', 'log = "loud"\n', /"log": expected one of silent, error, info, debug/],
    ['a bad node URL', '[[nodes]]\nurl = "ftp://x"\n', /nodes\[0\]: invalid "url"/],
    ['a bad node key', '[[nodes]]\nurl = "http://x:1"\nkey = "k"\n', /unknown key "key"; allowed: url, api_key, name, kind/],
    ['a node key with a line break', '[[nodes]]\nurl = "http://x:1"\napi_key = "k\\n"\n', /nodes\[0\]: "api_key" holds a control character/],
    ['invalid TOML', 'port = = 1\n', /not valid TOML/],
  ])('stops at %s with a message naming it', (_n, text, msg) => {
    const file = join(tmp(), 'c.toml');
    writeFileSync(file, text);
    expect(() => loadConfig({ file })).toThrow(ConfigError);
    expect(() => loadConfig({ file })).toThrow(msg);
  });

  it('rejects an unknown HEARTH_ variable and a bad flag value', () => {
    expect(() => loadConfig({ env: { HEARTH_PROT: '1' } })).toThrow(/unknown variable HEARTH_PROT/);
    expect(() => loadConfig({ flags: new Map([['port', 'eighty']]) })).toThrow(/command line: invalid value "eighty" for "port"/);
  });

  it('reads repeatable --node flags', () => {
    const cli = parseCli(['--node', 'http://a:8080', '--node', 'http://b:11434/v1', '--port', '1234'], {});
    expect(cli.action).toBe('serve');
    const c = loadConfig((cli as any).sources);
    expect(c.nodes.map((n) => n.url)).toEqual(['http://a:8080', 'http://b:11434/v1']);
    expect(c.port).toBe(1234);
  });
});

describe('the bundle', () => {
  it('is built, small, and answers --help and --version', async () => {
    // What the gateway loads at start: the entry and the chunks it imports statically.
    const info = JSON.parse(readFileSync(join(ROOT, 'dist/build-info.json'), 'utf8'));
    expect(info.startBytes).toBeGreaterThanOrEqual(statSync(BUNDLE).size);
    expect(info.startBytes).toBeLessThan(300 * 1024);
    const help = await run([BUNDLE, '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--config FILE[\s\S]*--node URL/);
    const v = await run([BUNDLE, '--version']);
    expect(v.stdout).toMatch(/^hearth \d+\.\d+\.\d+/);
  });

  it('exits 2 with a readable message on a bad flag or config', async () => {
    const bad = await run([BUNDLE, '--bogus']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bogus/);
    const file = join(tmp(), 'c.toml');
    writeFileSync(file, 'prot = 1\n');
    const cfg = await run([BUNDLE, '--config', file]);
    expect(cfg.code).toBe(2);
    expect(cfg.stderr).toMatch(/configuration error: .*unknown key "prot"/);
  });

  it('exits 1 with one line when it cannot start: the chat key unreadable, the port taken', async () => {
    const data = tmp();
    mkdirSync(join(data, 'secret.key')); // unreadable as a file, even for root
    const key = await run([BUNDLE, '--host', '127.0.0.1', '--port', '0', '--data', data]);
    expect(key.code).toBe(1);
    expect(key.stderr).toBe(`hearth: cannot start: cannot read ${join(data, 'secret.key')} (EISDIR): it signs the chat's sessions and forms. Let the user Hearth runs as read it, or remove it to have a new one made (everyone then logs in again).\n`);
    // Without the chat the key is not needed (startBundle rejects with the output if it exits).
    const noChat = await startBundle({ data, node: 'http://127.0.0.1:9', env: { HEARTH_CHAT_ENABLED: 'false' } });
    await noChat.stop();
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const busy = await run([BUNDLE, '--host', '127.0.0.1', '--port', String(port), '--data', tmp()]);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toBe(`hearth: cannot start: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`);
    } finally {
      taken.close();
    }
  });

  it('runs from a copy of dist/ alone (native modules included) and proxies', async () => {
    const where = join(tmp(), 'elsewhere');
    cpSync(join(ROOT, 'dist'), where, { recursive: true });
    const sim = await startSimNode({ models: ['m'], tokensPerSecond: 0 });
    const data = tmp();
    const h = await startBundle({ data, node: sim.url, bundle: join(where, 'hearth.mjs') });
    await h.ready();
    try {
      const url = h.url;
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, store: true }),
      });
      const j = await r.json();
      expect(r.status).toBe(200);
      // The history store (lmdb, native) works from the copy.
      const stored = await (await fetch(`${url}/v1/chat/completions/${j.id}`)).json();
      expect(stored.id).toBe(j.id);
    } finally {
      await h.stop();
      await sim.close();
    }
  });
});

describe('memory', () => {
  const chat = (url: string, extra: Record<string, unknown> = {}) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, ...extra }),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));

  it('never calls fetch in the process (its first use costs a 40 MB peak)', () => {
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== 'test' && e.name !== 'node_modules') walk(p);
        } else if (p.endsWith('.ts') && /\bfetch\(/.test(readFileSync(p, 'utf8'))) offenders.push(p);
      }
    };
    for (const top of ['gateway', 'cluster', 'web-min']) walk(join(ROOT, top));
    expect(offenders).toEqual([]);
  });

  it('serves the API without loading undici (11 MiB), node:tls or node:crypto; the chat loads undici and crypto with its first page', async () => {
    const sim = await startSimNode({ models: ['m'], tokensPerSecond: 0 });
    const data = tmp();
    const dump = join(data, 'modules.txt');
    // Node's list of its own modules loaded so far, written on SIGUSR2 by a preload.
    // Written under another name and renamed, so the test never reads half a list.
    const preload = `import fs from 'node:fs'; process.on('SIGUSR2', () => { fs.writeFileSync(${JSON.stringify(dump + '.part')}, process.moduleLoadList.join('\\n')); fs.renameSync(${JSON.stringify(dump + '.part')}, ${JSON.stringify(dump)}); });`;
    const h = await startBundle({ data, node: sim.url, env: { NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(preload)}` } });
    const loaded = async () => {
      rmSync(dump, { force: true });
      h.proc.kill('SIGUSR2');
      for (let i = 0; i < 100 && !existsSync(dump); i++) await new Promise((r) => setTimeout(r, 20));
      const list = readFileSync(dump, 'utf8').split('\n');
      return { undici: list.includes('NativeModule internal/deps/undici/undici'), tls: list.includes('NativeModule tls'), crypto: list.includes('NativeModule crypto') };
    };
    await h.ready();
    try {
      expect((await chat(h.url)).status).toBe(200);
      const streamed = await fetch(`${h.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true }),
      });
      expect(await streamed.text()).toContain('[DONE]');
      expect((await fetch(`${h.url}/v1/models`)).status).toBe(200);
      expect((await chat(h.url, { model: 'nope' })).status).toBe(404);
      expect((await fetch(`${h.url}/v1/nowhere`)).status).toBe(404);
      expect(await loaded()).toEqual({ undici: false, tls: false, crypto: false });
      const page = await fetch(`${h.url}/`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/text\/html/);
      expect(await loaded()).toMatchObject({ undici: true, crypto: true });
    } finally {
      await h.stop();
      await sim.close();
    }
  });

  it.runIf(process.platform === 'linux')('loads lmdb only once there is history to keep, and at start when there is history on disk', async () => {
    const sim = await startSimNode({ models: ['m'], tokensPerSecond: 0 });
    const data = tmp();
    const lmdbLoaded = (b: { proc: { pid?: number } }) => readFileSync(`/proc/${b.proc.pid}/maps`, 'utf8').includes('lmdb');
    let h = await startBundle({ data, node: sim.url });
    await h.ready();
    try {
      expect((await chat(h.url)).status).toBe(200);
      expect(lmdbLoaded(h)).toBe(false);
      const stored = await chat(h.url, { store: true });
      expect(stored.status).toBe(200);
      expect(lmdbLoaded(h)).toBe(true);
      await h.stop();
      h = await startBundle({ data, node: sim.url });
      await h.ready();
      expect(lmdbLoaded(h)).toBe(true);
      const got = await (await fetch(`${h.url}/v1/chat/completions/${stored.body.id}`)).json();
      expect(got.id).toBe(stored.body.id);
    } finally {
      await h.stop();
      await sim.close();
    }
  });
});

describe('documentation', () => {
  it('the README documents every setting', async () => {
    const { readFileSync } = await import('node:fs');
    const { SETTINGS } = await import('../config-schema.ts');
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    for (const s of SETTINGS) expect(readme, s.key).toContain(`| \`${s.key}\` |`);
  });
});
