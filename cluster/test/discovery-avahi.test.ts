/**
 * Interoperability with a real avahi-daemon (Debian's avahi-daemon + avahi-utils) as the mDNS
 * peer, in private network namespaces: a service published with avahi-publish is found by
 * Hearth, and Hearth's own advertisement shows in avahi-browse. avahi-publish/-browse talk to the
 * daemon over D-Bus, so the test runs a private bus (its own config and socket) too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NetLab, netnsUnavailable, type Proc } from './fixtures/netlab.ts';

const missing = ['avahi-daemon', 'avahi-publish', 'avahi-browse', 'dbus-daemon'].filter(
  (b) => spawnSync('sh', ['-c', `command -v ${b} || test -x /usr/sbin/${b}`]).status !== 0,
);
const why = netnsUnavailable() ?? (missing.length ? `missing ${missing.join(', ')} (Debian: avahi-daemon avahi-utils dbus)` : null);
if (why) console.warn(`[discovery-avahi] skipped: ${why}`);

describe.skipIf(!!why)('interoperability with a real avahi-daemon', () => {
  let lab: NetLab;
  let dir: string;
  let watch: Proc;
  let env: Record<string, string>;

  beforeAll(async () => {
    lab = new NetLab('10.77.2');
    dir = mkdtempSync(path.join(tmpdir(), 'hearth-avahi-'));
    const bus = path.join(dir, 'bus');
    env = { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${bus}` };
    writeFileSync(
      path.join(dir, 'bus.conf'),
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=${bus}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy></busconfig>\n`,
    );
    writeFileSync(
      path.join(dir, 'avahi.conf'),
      `[server]\nhost-name=avahipeer\nuse-ipv4=yes\nuse-ipv6=yes\nenable-dbus=yes\n[publish]\npublish-hinfo=no\npublish-workstation=no\n`,
    );
    const dbus = lab.run(lab.b, ['dbus-daemon', `--config-file=${path.join(dir, 'bus.conf')}`, '--nofork', '--print-address']);
    await dbus.waitFor((l) => 'raw' in l || typeof l === 'number', 5000, 'dbus address').catch(() => undefined);
    // A tmpfs over /run (in this command's own mount namespace) gives avahi its own pid file dir.
    const avahi = lab.run(lab.b, ['sh', '-c', `mount -t tmpfs tmpfs /run && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f ${path.join(dir, 'avahi.conf')}`], env);
    await waitStderr(avahi, /Server startup complete/, 10_000);
    const sim = lab.node(lab.b, 'sim-advertise.ts', ['--host', lab.ipB, '--port', '18090', '--kind', 'llama.cpp', '--model', 'avahi-model', '--no-advertise']);
    await sim.waitFor((l) => l.ready, 15_000, 'sim ready');
    lab.run(lab.b, ['avahi-publish', '-s', 'avahi llama', '_llama._tcp', '18090', 'path=/v1', 'kind=llama.cpp'], env);
    watch = lab.node(lab.a, 'discovery-watch.ts', [], {
      HEARTH_DISCOVERY_OPTS: JSON.stringify({
        advertise: { port: 8080, name: 'Hearth avahi test' },
        exo: false,
        probe: false,
        browse: { minQueryIntervalMs: 500, maxQueryIntervalMs: 4000 },
        timeoutMs: 1000,
      }),
    });
    await watch.waitFor((l) => l.ev === 'ready', 15_000, 'discovery ready');
  }, 45_000);

  afterAll(async () => {
    await lab?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 15_000);

  it('finds a service published with avahi-publish within 8 s', async () => {
    const n = await watch.waitFor((l) => l.ev !== 'removed' && l.baseUrl === `http://${lab.ipB}:18090` && l.health === 'up', 8000, 'avahi service');
    expect(n).toMatchObject({ kind: 'llama.cpp', name: 'avahi llama', apiPath: '/v1', models: ['avahi-model'] });
  });

  it("shows Hearth's _openai._tcp (path=/v1) and _http._tcp advertisements in avahi-browse within 10 s", async () => {
    const deadline = Date.now() + 10_000;
    let out = '';
    while (Date.now() < deadline) {
      const r = spawnSync('ip', ['netns', 'exec', lab.b, 'avahi-browse', '-rtp', '_openai._tcp'], { env: { ...process.env, ...env }, timeout: 6000 });
      out = String(r.stdout);
      if (/^=;.*Hearth\\032avahi\\032test;_openai\._tcp;.*;8080;.*"path=\/v1"/m.test(out)) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    expect(out).toMatch(new RegExp(`^=;[^;]+;IPv4;Hearth\\\\032avahi\\\\032test;_openai\\._tcp;local;[^;]+;${lab.ipA.replace(/\./g, '\\.')};8080;"path=/v1"`, 'm'));
    const http = spawnSync('ip', ['netns', 'exec', lab.b, 'avahi-browse', '-rtpk', '_http._tcp'], { env: { ...process.env, ...env }, timeout: 6000 });
    expect(String(http.stdout)).toMatch(/Hearth\\032avahi\\032test;_http\._tcp;.*;8080;"path=\/"/);
  }, 20_000);
});

function waitStderr(p: Proc, re: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (p.stderr.some((l) => re.test(l))) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`avahi-daemon did not start: ${p.stderr.join('\n')}`));
      setTimeout(tick, 100);
    };
    tick();
  });
}
