/**
 * Real multicast in private network namespaces: namespace B runs simulated nodes that advertise
 * over mDNS (and one that only listens on Ollama's port); namespace A runs Hearth's discovery.
 * Needs root (`ip netns`); skipped with a message elsewhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetLab, netnsUnavailable, type Proc } from './fixtures/netlab.ts';

const why = netnsUnavailable();
if (why) console.warn(`[discovery-netns] skipped: ${why}`);

const TTL = 3; // seconds, for every record the simulated nodes advertise

describe.skipIf(!!why)('discovery over real mDNS in a network namespace', () => {
  let lab: NetLab;
  let watch: Proc;
  let llama: Proc;
  let openai: Proc;
  let loading: Proc;

  beforeAll(async () => {
    lab = new NetLab('10.77.1');
    const sim = (port: number, name: string, type: string, extra: string[] = []) =>
      lab.node(lab.b, 'sim-advertise.ts', ['--host', lab.ipB, '--port', String(port), '--name', name, '--type', type, '--ttl', String(TTL), '--hostname', `sim-${port}`, ...extra]);
    llama = sim(18080, 'llama one', '_llama._tcp', ['--kind', 'llama.cpp', '--model', 'qwen-7b']);
    openai = sim(18081, 'openai two', '_openai._tcp', ['--kind', 'openai', '--model', 'gpt-local', '--path', '/v1']);
    loading = sim(18082, 'llama loading', '_llamacpp._tcp', ['--kind', 'llama.cpp', '--fault', '503-loading']);
    // Not advertised: only found by probing the host seen on mDNS (port 11434).
    const ollama = lab.node(lab.b, 'sim-advertise.ts', ['--host', lab.ipB, '--port', '11434', '--kind', 'ollama', '--model', 'llama3.2:1b', '--no-advertise']);
    await Promise.all([llama, openai, loading, ollama].map((p) => p.waitFor((l) => l.ready, 15_000, 'sim node ready')));
    watch = lab.node(lab.a, 'discovery-watch.ts', [], {
      HEARTH_DISCOVERY_OPTS: JSON.stringify({
        chat: true,
        advertise: { port: 8080, name: 'Hearth test' },
        exo: false,
        browse: { minQueryIntervalMs: 500, maxQueryIntervalMs: 4000 },
        probe: { ports: [8080, 11434], rescanMs: 60_000 },
        timeoutMs: 1000,
      }),
    });
    await watch.waitFor((l) => l.ev === 'ready', 15_000, 'discovery ready');
  }, 40_000);

  afterAll(async () => {
    await lab?.cleanup();
  }, 15_000);

  const added = (port: number) => (l: any) => l.ev !== 'removed' && typeof l.baseUrl === 'string' && l.baseUrl.endsWith(`:${port}`);

  it('finds advertised llama.cpp and OpenAI-compatible nodes within 5 s, and they serve traffic', async () => {
    const l = await watch.waitFor((x) => added(18080)(x) && x.health === 'up', 5000, 'llama node');
    expect(l).toMatchObject({ kind: 'llama.cpp', id: `${lab.ipB}:18080`, models: ['qwen-7b'], name: 'llama one' });
    expect(l.sources).toContain('mdns');
    const o = await watch.waitFor((x) => added(18081)(x) && x.health === 'up', 5000, 'openai node');
    expect(o).toMatchObject({ kind: 'openai', apiPath: '/v1', models: ['gpt-local'] });
    const t1 = await watch.waitFor((x) => x.ev === 'traffic' && x.id === l.id, 5000, 'traffic to llama');
    const t2 = await watch.waitFor((x) => x.ev === 'traffic' && x.id === o.id, 5000, 'traffic to openai');
    expect(t1.ok && t2.ok).toBe(true);
  });

  it('knows a loading llama-server (503) within 5 s but marks it loading, not up', async () => {
    const l = await watch.waitFor(added(18082), 5000, 'loading node');
    expect(l.health).toBe('loading');
    expect(watch.lines.some((x) => added(18082)(x) && x.health === 'up')).toBe(false);
  });

  it('finds an unadvertised Ollama by probing the host seen on mDNS within 10 s', async () => {
    const l = await watch.waitFor((x) => added(11434)(x) && x.kind === 'ollama', 10_000, 'ollama by probe');
    expect(l.sources).toEqual(['probe']);
    expect(l.models).toEqual(['llama3.2:1b']);
  });

  it('does not list Hearth itself', () => {
    expect(watch.lines.some((x) => x.name === 'Hearth test' || (typeof x.baseUrl === 'string' && x.baseUrl.includes(lab.ipA)))).toBe(false);
  });

  it('drops a node that says goodbye within 2 s', async () => {
    const t0 = Date.now();
    llama.child.kill('SIGTERM');
    const r = await watch.waitFor((x) => x.ev === 'removed' && x.id === `${lab.ipB}:18080`, 2000, 'goodbye removal');
    expect(r.reason).toMatch(/goodbye/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it(`drops a node that dies silently when its records expire (TTL ${TTL} s) within ${TTL + 3} s`, async () => {
    // Wait for a fresh announcement/refresh cycle so the test measures from a known point.
    openai.child.kill('SIGKILL');
    const r = await watch.waitFor((x) => x.ev === 'removed' && x.id === `${lab.ipB}:18081`, (TTL + 3) * 1000, 'expiry removal');
    expect(r.reason).toMatch(/expired/);
  }, 15_000);
});
