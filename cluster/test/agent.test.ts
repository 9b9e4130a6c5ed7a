/** Node agent, unit level: output ring, back-off schedule and process handling with fake servers. */
import { describe, expect, it } from 'vitest';
import { LineRing, stripAnsi } from '../agent/output.ts';
import { Supervisor, backoffDelay, type StateChange } from '../agent/supervisor.ts';
import { HealthWatch, portFromCommand, probeUrl } from '../agent/readiness.ts';
import { fitList, nodeTxt } from '../agent/txt.ts';
import { parseNodeCli, resolveExecutable } from '../agent/cli.ts';
import type { ProbeResult } from '../kinds.ts';

const NODE = process.execPath;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function record(s: Supervisor): StateChange[] {
  const seen: StateChange[] = [];
  s.on('state', (c) => seen.push(c));
  return seen;
}

async function until<T>(f: () => T | undefined | false, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('LineRing', () => {
  it('joins chunks into lines, strips ANSI and CRs, keeps the last N', () => {
    const got: string[] = [];
    const r = new LineRing({ size: 3 }, (l) => got.push(l));
    r.write('\x1b[32mgre');
    r.write('en\x1b[0m\r\nsecond line\r\n');
    r.write('10%\r50%\r100%\r\n\x1b]0;title\x07fourth\n');
    r.write('no newline yet');
    expect(got).toEqual(['green', 'second line', '100%', 'fourth']);
    expect(r.lines()).toEqual(['second line', '100%', 'fourth']);
    r.flush();
    expect(r.lines()).toEqual(['100%', 'fourth', 'no newline yet']);
    expect(r.lines(1)).toEqual(['no newline yet']);
    expect(r.total).toBe(5);
  });

  it('bounds a line that never ends and cuts long lines', () => {
    const r = new LineRing({ size: 2, maxLineChars: 10 });
    r.write('x'.repeat(100));
    expect(r.lines()).toEqual(['x'.repeat(10)]);
    expect(stripAnsi('a\x1b[1;31mb\x1b[Kc\x07')).toBe('abc');
  });
});

describe('back-off', () => {
  it('doubles from the minimum up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, 1000, 30_000))).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });

  it('restarts a crashing server with growing delays, keeping its output', async () => {
    const s = new Supervisor({
      file: NODE,
      args: ['-e', "console.log('\\x1b[32mhello from ' + process.pid + '\\x1b[0m'); setTimeout(() => process.exit(3), 30)"],
      backoffMinMs: 100,
      backoffMaxMs: 400,
      stableMs: 60_000,
    });
    const seen = record(s);
    s.start();
    await until(() => seen.filter((c) => c.state === 'backoff').length >= 4, 10_000, 'four back-offs');
    await s.stop();
    const delays = seen.filter((c) => c.state === 'backoff').map((c) => c.delayMs);
    expect(delays.slice(0, 4)).toEqual([100, 200, 400, 400]);
    const crashes = seen.filter((c) => c.state === 'crashed');
    expect(crashes[0]).toMatchObject({ exitCode: 3 });
    // Each restart waits at least its delay.
    const starts = seen.filter((c) => c.state === 'starting');
    for (let i = 1; i < Math.min(4, starts.length); i++) {
      expect(starts[i].at - crashes[i - 1].at).toBeGreaterThanOrEqual(delays[i - 1]! - 5);
    }
    expect(s.restarts).toBeGreaterThanOrEqual(3);
    expect(s.output.lines().filter((l) => /^hello from \d+$/.test(l)).length).toBeGreaterThanOrEqual(4);
    expect(seen.at(-1)?.state).toBe('stopped');
  }, 15_000);

  it('resets the delay after a run longer than stableMs', async () => {
    const s = new Supervisor({ file: NODE, args: ['-e', 'setTimeout(() => process.exit(1), 250)'], backoffMinMs: 50, backoffMaxMs: 1000, stableMs: 150 });
    const seen = record(s);
    s.start();
    await until(() => seen.filter((c) => c.state === 'backoff').length >= 3, 10_000, 'three back-offs');
    await s.stop();
    expect(seen.filter((c) => c.state === 'backoff').map((c) => c.delayMs).slice(0, 3)).toEqual([50, 50, 50]);
  }, 15_000);

  it('tracks readiness told by the prober, and ignores it when no process runs', async () => {
    const s = new Supervisor({ file: NODE, args: ['-e', 'setInterval(() => {}, 1000)'], stopGraceMs: 1000 });
    const seen = record(s);
    s.setHealth('ready');
    expect(s.state).toBe('idle');
    s.start();
    s.setHealth('ready');
    s.setHealth('unhealthy');
    s.setHealth('ready');
    await s.stop();
    expect(seen.map((c) => c.state)).toEqual(['starting', 'ready', 'unhealthy', 'ready', 'stopping', 'crashed', 'stopped']);
    s.setHealth('ready');
    expect(s.state).toBe('stopped');
  });
});

describe('stopping', () => {
  it('SIGKILLs a server that ignores SIGTERM after the grace period, and its children too', async () => {
    const script = `
      const { spawn } = require('node:child_process');
      process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
      const c = spawn(process.execPath, ['-e', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      console.log('child ' + c.pid);
      setInterval(() => {}, 1000);`;
    const s = new Supervisor({ file: NODE, args: ['-e', script], stopGraceMs: 400 });
    s.start();
    const childPid = Number(await until(() => s.output.lines().map((l) => /^child (\d+)$/.exec(l)?.[1]).find(Boolean), 5000, 'child pid'));
    const pid = s.pid!;
    expect(alive(pid) && alive(childPid)).toBe(true);
    const t0 = Date.now();
    await s.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    expect(s.output.lines()).toContain('ignoring SIGTERM');
    await until(() => !alive(pid) && !alive(childPid), 2000, 'no process left');
    expect(s.status()).toMatchObject({ state: 'stopped', pid: null });
  }, 10_000);

  it('kills what a crashed server left behind before restarting it', async () => {
    const script = `
      const { spawn } = require('node:child_process');
      const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      console.log('child ' + c.pid);
      setTimeout(() => process.exit(1), 100);`;
    const s = new Supervisor({ file: NODE, args: ['-e', script], backoffMinMs: 5000 });
    const seen = record(s);
    s.start();
    await until(() => seen.some((c) => c.state === 'backoff'), 5000, 'crash');
    const childPid = Number(s.output.lines().map((l) => /^child (\d+)$/.exec(l)?.[1]).find(Boolean));
    await until(() => !alive(childPid), 2000, 'orphan killed');
    const t0 = Date.now();
    await s.stop(); // during back-off: no restart, returns at once
    expect(Date.now() - t0).toBeLessThan(100);
    expect(s.state).toBe('stopped');
    expect(s.restarts).toBe(0);
  });
});

describe('HealthWatch', () => {
  it('is ready on the first healthy probe, unhealthy after N failures, ready again after', async () => {
    const answers: Array<ProbeResult | null> = [
      { kind: 'llama.cpp', health: 'loading', models: [] },
      null,
      { kind: 'llama.cpp', health: 'up', models: ['m1'] },
      null,
      { kind: 'llama.cpp', health: 'down', models: [] },
      { kind: 'llama.cpp', health: 'up', models: ['m1'] }, // resets the count
      null,
      null,
      null,
      { kind: 'llama.cpp', health: 'up', models: ['m1', 'm2'] },
    ];
    const events: string[] = [];
    const hints: unknown[] = [];
    let i = 0;
    const w = new HealthWatch({
      baseUrl: 'http://127.0.0.1:1/',
      startIntervalMs: 5,
      intervalMs: 5,
      failures: 3,
      probe: async (_u, o) => {
        hints.push(o.hint);
        return answers[Math.min(i++, answers.length - 1)];
      },
    });
    w.on('ready', (r) => events.push(`ready ${r.models.join('+')}`));
    w.on('unhealthy', (why) => events.push(`unhealthy (${why})`));
    w.start();
    await until(() => i >= answers.length + 1, 3000, 'all probes');
    w.stop();
    expect(events).toEqual(['ready m1', 'unhealthy (no answer)', 'ready m1+m2']);
    expect(hints[0]).toBeUndefined();
    expect(hints.at(-1)).toBe('llama.cpp');
  });

  it('finds the port and where to probe', () => {
    expect(portFromCommand(['-m', 'x.gguf', '--port', '8080'])).toBe(8080);
    expect(portFromCommand(['--port=9931'])).toBe(9931);
    expect(portFromCommand(['--port', 'abc'])).toBeUndefined();
    expect(probeUrl(undefined, 1)).toBe('http://127.0.0.1:1');
    expect(probeUrl('0.0.0.0', 1)).toBe('http://127.0.0.1:1');
    expect(probeUrl('10.0.0.5', 1)).toBe('http://10.0.0.5:1');
    expect(probeUrl('fe80::1', 1)).toBe('http://[fe80::1]:1');
  });
});

describe('TXT records', () => {
  it('describes the node and fits the model list in 255 bytes with whole ids', () => {
    const models = Array.from({ length: 40 }, (_, i) => `model-number-${i}`);
    const txt = nodeTxt({ kind: 'llama.cpp', models });
    expect(txt).toMatchObject({ path: '/v1', kind: 'llama.cpp', agent: 'hearth', version: '1' });
    expect(Buffer.byteLength(`models=${txt.models}`)).toBeLessThanOrEqual(255);
    expect(txt.models.split(',').every((m) => models.includes(m))).toBe(true);
    expect(fitList(['a,b', 'c', 'ü'.repeat(200)], 255)).toBe('c');
  });
});

describe('hearth node arguments', () => {
  it('parses options, the command after --, and the port from the command', () => {
    const c = parseNodeCli(['--name', 'box', '--service-type', '_llama._tcp', '--no-advertise', '--', 'llama-server', '--host', '0.0.0.0', '--port', '8081']);
    expect(c.agent).toMatchObject({ name: 'box', port: 8081, bindHost: '0.0.0.0', serviceTypes: ['_llama._tcp'], advertise: false, command: ['llama-server', '--host', '0.0.0.0', '--port', '8081'] });
    expect(parseNodeCli(['--port', '9000', 'server', '--port', '1']).agent.port).toBe(9000);
    expect(parseNodeCli(['--help']).help).toBe(true);
  });

  it('rejects bad input with a clear message', () => {
    expect(() => parseNodeCli([])).toThrow(/no server command/);
    expect(() => parseNodeCli(['--', 'server'])).toThrow(/port/);
    expect(() => parseNodeCli(['--port', '70000', '--', 'server'])).toThrow(/--port must be/);
    expect(() => parseNodeCli(['--bogus', '--', 'server'])).toThrow(/bogus/);
    expect(() => parseNodeCli(['--service-type', 'http', '--port', '1', '--', 's'])).toThrow(/_name._tcp/);
    expect(resolveExecutable('definitely-not-a-command-hearth')).toBeNull();
    expect(resolveExecutable(NODE)).toBe(NODE);
  });
});
