/**
 * A simulated exo node that behaves as the notes describe (API on IPv4 port 52415, a 20-byte
 * Hello to [ff12::e0a1:de89]:52413 every second, no DNS-SD) is found with no configuration:
 * Hearth hears the Hello from the node's link-local IPv6 address and finds its IPv4 API.
 * Probing is off here, so only the exo multicast route can find it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetLab, netnsUnavailable, type Proc } from './fixtures/netlab.ts';

const why = netnsUnavailable();
if (why) console.warn(`[discovery-exo] skipped: ${why}`);

describe.skipIf(!!why)('exo found from its discovery multicast', () => {
  let lab: NetLab;
  let watch: Proc;
  let exo: Proc;

  beforeAll(async () => {
    lab = new NetLab('10.77.3');
    exo = lab.node(lab.b, 'exo-hello.ts', ['--host', lab.ipB, '--iface', lab.ifB, '--model', 'mlx-community/Qwen3-0.6B-4bit']);
    await exo.waitFor((l) => l.ready, 15_000, 'exo sim ready');
    watch = lab.node(lab.a, 'discovery-watch.ts', [], {
      HEARTH_DISCOVERY_OPTS: JSON.stringify({ advertise: false, probe: false, exo: { silenceMs: 3000 }, timeoutMs: 1000 }),
    });
    await watch.waitFor((l) => l.ev === 'ready', 15_000, 'discovery ready');
  }, 40_000);

  afterAll(async () => {
    await lab?.cleanup();
  }, 15_000);

  it('registers the exo cluster within 8 s, with its running models, as one backend', async () => {
    const n = await watch.waitFor((l) => l.ev === 'added' && l.kind === 'exo', 8000, 'exo node');
    expect(n.baseUrl).toBe(`http://${lab.ipB}:52415`);
    expect(n.sources).toEqual(['exo']);
    expect(n.id).toMatch(/^exo:/);
    expect(n.models).toEqual(['mlx-community/Qwen3-0.6B-4bit']);
    // Hellos keep coming every second: still one entry, never a second one.
    await new Promise((r) => setTimeout(r, 2500));
    expect(new Set(watch.lines.filter((l) => l.kind === 'exo').map((l) => l.id)).size).toBe(1);
  }, 15_000);

  it('withdraws it within 3 s + 5 s after its Hellos stop', async () => {
    exo.child.kill('SIGKILL');
    const r = await watch.waitFor((l) => l.ev === 'removed' && l.kind === 'exo', 8000, 'exo removal');
    expect(r.reason).toMatch(/silent/);
  }, 12_000);
});
