// The no-open-relay rule over a real network: Hearth in one network namespace, a client with a
// public address in another (TEST-NET-3, joined by a veth pair; nothing leaves the machine).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetLab, netnsUnavailable } from '../../cluster/test/fixtures/netlab.ts';
import { BUNDLE } from './harness.ts';

const unavailable = netnsUnavailable();
let lab: NetLab | undefined;
const dirs: string[] = [];

afterEach(async () => {
  await lab?.cleanup();
  lab = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Hearth (the bundle) in namespace a, listening on its public-looking address. */
async function hearthIn(l: NetLab, env: Record<string, string> = {}): Promise<string> {
  const data = mkdtempSync(join(tmpdir(), 'hearth-access-'));
  dirs.push(data);
  const p = l.run(l.a, [process.execPath, BUNDLE, '--host', l.ipA, '--port', '8808', '--data', data], { HEARTH_DISCOVERY_ENABLED: 'false', ...env });
  for (let i = 0; i < 200 && !p.stderr.some((s) => s.includes('listening on')); i++) await new Promise((r) => setTimeout(r, 25));
  if (!p.stderr.some((s) => s.includes('listening on'))) throw new Error(`Hearth did not start: ${p.stderr.join('\n')}`);
  return `http://${l.ipA}:8808`;
}

/** curl from namespace b: the status and the body. */
function curlFromB(l: NetLab, url: string, headers: string[] = []): { status: number; body: string } {
  const r = spawnSync('ip', ['netns', 'exec', l.b, 'curl', '-sS', '--max-time', '5', ...headers.flatMap((h) => ['-H', h]), '-w', '\n%{http_code}', url], { encoding: 'utf8' });
  const out = r.stdout.trimEnd();
  const nl = out.lastIndexOf('\n');
  return { status: Number(out.slice(nl + 1)), body: out.slice(0, nl) };
}

describe.skipIf(unavailable)('access from a public address, over a real network', () => {
  it('no key configured: 403 that says how to add one; health checks stay open', async () => {
    lab = new NetLab('203.0.113');
    const url = await hearthIn(lab);
    const denied = curlFromB(lab, `${url}/v1/models`);
    expect(denied.status).toBe(403);
    const e = JSON.parse(denied.body).error;
    expect(e.type).toBe('permission_error');
    expect(e.message).toMatch(/api_keys/);
    expect(curlFromB(lab, `${url}/healthz`).status).toBe(200);
  });

  it('a key configured: served with it, 401 without', async () => {
    lab = new NetLab('203.0.113');
    const url = await hearthIn(lab, { HEARTH_API_KEYS: 'sesame' });
    expect(curlFromB(lab, `${url}/v1/models`).status).toBe(401);
    const ok = curlFromB(lab, `${url}/v1/models`, ['Authorization: Bearer sesame']);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).object).toBe('list');
  });
});
