/**
 * The node agent supervising the real llama-server, seen by an mDNS browser on another "machine":
 * two private network namespaces joined by a veth pair (no traffic leaves this machine). Needs
 * root (`ip netns`) and the llama-server of ../shared/llama-rig; skipped with a message elsewhere.
 */
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LLAMA_SERVER as LLAMA, TINY_MODEL as MODEL, llamaAvailable, llamaMissing } from '../../bench/lib/llama.ts';
import { NetLab, netnsUnavailable, REPO, type Proc } from './fixtures/netlab.ts';

const why = netnsUnavailable() ?? (llamaAvailable() ? null : llamaMissing);
if (why) console.warn(`[agent-netns] skipped: ${why}`);

const PORT = 18_100;
const NAME = 'agent test';
const TYPE = '_hearth-node._tcp.local';
const FQDN = `${NAME}.${TYPE}`;

// Runs `hearth node` exactly as gateway/main.ts does.
const AGENT = `const { runNodeAgent } = await import(${JSON.stringify(path.join(REPO, 'cluster/agent/cli.ts'))});
const code = await runNodeAgent(process.argv.slice(1));
if (code >= 0) process.exitCode = code;`;

// A plain mDNS browser on the other machine: asks for the service type twice a second, prints
// every record it hears about it as a JSON line, and checks the advertised address answers.
const BROWSER = `const { MdnsSocket } = await import(${JSON.stringify(path.join(REPO, 'cluster/discovery/mdns.ts'))});
const m = new MdnsSocket();
await m.ready;
console.log(JSON.stringify({ ev: 'ready' }));
const checked = new Set();
m.on('response', (p, rinfo) => {
  const all = [...(p.answers ?? []), ...(p.additionals ?? [])];
  const rr = all.filter((r) => /_hearth-node\\._tcp\\.local$/i.test(r.name) || /_hearth-node\\._tcp\\.local$/i.test(String(r.data)));
  if (!rr.length) return;
  const a = all.find((r) => r.type === 'A' && r.ttl > 0);
  for (const r of rr) {
    let data = r.data;
    if (r.type === 'TXT') data = Object.fromEntries([].concat(data).map((b) => { const s = Buffer.from(b).toString(); const i = s.indexOf('='); return [s.slice(0, i), s.slice(i + 1)]; }));
    console.log(JSON.stringify({ ev: 'rr', from: rinfo.address, name: r.name, type: r.type, ttl: r.ttl, data, a: a?.data }));
    if (r.type === 'SRV' && r.ttl > 0 && a && !checked.has(a.data + ':' + data.port)) {
      checked.add(a.data + ':' + data.port);
      fetch('http://' + a.data + ':' + data.port + '/health').then((res) => res.text().then((t) => console.log(JSON.stringify({ ev: 'health', url: a.data + ':' + data.port, status: res.status, body: t }))), (e) => console.log(JSON.stringify({ ev: 'health', error: String(e) })));
    }
  }
});
setInterval(() => void m.query([{ name: '${TYPE}', type: 'PTR' }]), 500);`;

describe.skipIf(!!why)('node agent with the real llama-server, over real mDNS', () => {
  let lab: NetLab;
  let agent: Proc;
  let browser: Proc;
  let firstPid = 0;
  const ptr = (live: boolean, after = 0) => (l: any) =>
    l.ev === 'rr' && l.type === 'PTR' && l.name === TYPE && l.data === FQDN && (live ? l.ttl > 0 : l.ttl === 0) && browser.lines.indexOf(l) >= after;

  beforeAll(async () => {
    lab = new NetLab('10.77.9');
    browser = lab.run(lab.a, [process.execPath, '--import', 'tsx', '--input-type=module', '-e', BROWSER]);
    await browser.waitFor((l) => l.ev === 'ready', 10_000, 'browser ready');
    agent = lab.run(lab.b, [
      process.execPath, '--import', 'tsx', '--input-type=module', '-e', AGENT, '--',
      '--json', '--name', NAME, '--backoff-min-ms', '700', '--health-interval-ms', '300', '--health-timeout-ms', '300', '--stop-grace-ms', '2000', '--status-port', '18990',
      '--', LLAMA, '-m', MODEL, '--host', '0.0.0.0', '--port', String(PORT), '-c', '1024', '--parallel', '2',
    ]);
  }, 20_000);

  afterAll(async () => {
    await lab?.cleanup();
  }, 15_000);

  it('starts the server, detects readiness, and advertises it with its TXT records', async () => {
    const ready = await agent.waitFor((l) => l.ev === 'state' && l.state === 'ready', 10_000, 'server ready');
    firstPid = ready.pid;
    expect(firstPid).toBeGreaterThan(0);
    expect(agent.lines.some((l) => l.ev === 'output' && /llama_server|listening/.test(l.line))).toBe(true);
    await browser.waitFor(ptr(true), 5000, 'PTR advertisement');
    const txt = await browser.waitFor((l) => l.ev === 'rr' && l.type === 'TXT' && l.name === FQDN && l.ttl > 0, 3000, 'TXT');
    expect(txt.data).toEqual({ path: '/v1', kind: 'llama.cpp', models: MODEL, agent: 'hearth', version: '1' });
    const srv = await browser.waitFor((l) => l.ev === 'rr' && l.type === 'SRV' && l.name === FQDN && l.ttl > 0, 3000, 'SRV');
    expect(srv.data.port).toBe(PORT);
    expect(srv.a).toBe(lab.ipB);
    // The advertised address really serves, from the other namespace.
    const h = await browser.waitFor((l) => l.ev === 'health', 5000, 'health from the browser side');
    expect(h).toMatchObject({ url: `${lab.ipB}:${PORT}`, status: 200 });
    // It is also advertised as an OpenAI-compatible endpoint.
    const adv = await agent.waitFor((l) => l.ev === 'advertised', 1000, 'advertised event');
    expect(adv.types).toEqual(['_hearth-node._tcp', '_openai._tcp']);
  }, 20_000);

  it('withdraws the advertisement when the server is killed, restarts it with back-off, advertises again', async () => {
    const mark = browser.lines.length;
    const markAgent = agent.lines.length;
    const t0 = Date.now();
    process.kill(firstPid, 'SIGKILL');
    const bye = await browser.waitFor(ptr(false, mark), 3000, 'goodbye (TTL 0)');
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(bye.ttl).toBe(0);
    const after = (p: (l: any) => boolean) => (l: any) => agent.lines.indexOf(l) >= markAgent && p(l);
    const crashed = await agent.waitFor(after((l) => l.ev === 'state' && l.state === 'crashed'), 3000, 'crash seen');
    expect(crashed.signal).toBe(9);
    const backoff = await agent.waitFor(after((l) => l.ev === 'state' && l.state === 'backoff'), 1000, 'backoff');
    expect(backoff.delayMs).toBe(700);
    const restarted = await agent.waitFor(after((l) => l.ev === 'state' && l.state === 'starting'), 3000, 'restart');
    expect(restarted.pid).not.toBe(firstPid);
    expect(restarted.restarts).toBe(1);
    expect(Date.parse(restarted.t) - Date.parse(crashed.t)).toBeGreaterThanOrEqual(650);
    await agent.waitFor(after((l) => l.ev === 'state' && l.state === 'ready'), 10_000, 'ready again');
    const byeAt = browser.lines.indexOf(bye);
    await browser.waitFor(ptr(true, byeAt + 1), 5000, 'advertised again');
    // The status page (from inside the agent's namespace) shows the restart and the output.
    const st = spawnSync('ip', ['netns', 'exec', lab.b, 'curl', '-s', 'http://127.0.0.1:18990/status.json'], { encoding: 'utf8' });
    expect(st.status, `curl: ${st.stderr}`).toBe(0);
    const s = JSON.parse(st.stdout);
    expect(s).toMatchObject({ state: 'ready', restarts: 1, advertising: 'on', lastExit: { signal: 9 }, advertised: [`${NAME}._hearth-node._tcp.local`, `${NAME}._openai._tcp.local`] });
    expect(s.output.some((l: string) => /listening/.test(l))).toBe(true);
  }, 25_000);

  it('withdraws the advertisement while the running server fails health probes, and keeps supervising it', async () => {
    const pid = agent.lines.filter((l) => l.ev === 'state' && l.state === 'starting').at(-1).pid;
    const mark = browser.lines.length;
    const markAgent = agent.lines.length;
    const after = (p: (l: any) => boolean) => (l: any) => agent.lines.indexOf(l) >= markAgent && p(l);
    process.kill(pid, 'SIGSTOP'); // alive but not answering
    try {
      await agent.waitFor(after((l) => l.ev === 'state' && l.state === 'unhealthy'), 5000, 'unhealthy');
      const bye = await browser.waitFor(ptr(false, mark), 3000, 'goodbye while unhealthy');
      await agent.waitFor(after((l) => l.ev === 'withdrawn' && /unhealthy/.test(l.reason)), 1000, 'withdrawn event');
      process.kill(pid, 'SIGCONT');
      await agent.waitFor(after((l) => l.ev === 'state' && l.state === 'ready'), 5000, 'ready after recovery');
      await browser.waitFor(ptr(true, browser.lines.indexOf(bye) + 1), 5000, 'advertised after recovery');
      // Same process throughout: unhealthy is not a crash.
      expect(agent.lines.some(after((l) => l.ev === 'state' && (l.state === 'crashed' || l.state === 'starting')))).toBe(false);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }, 20_000);

  it('says goodbye and leaves no process behind when stopped', async () => {
    const mark = browser.lines.length;
    const pid = agent.lines.filter((l) => l.ev === 'state' && l.state === 'starting').at(-1).pid;
    const exited = new Promise<number | null>((r) => agent.child.once('exit', (code) => r(code)));
    agent.child.kill('SIGTERM');
    await browser.waitFor(ptr(false, mark), 3000, 'goodbye on stop');
    expect(await exited).toBe(0);
    expect(agent.lines.some((l) => l.ev === 'state' && l.state === 'stopped')).toBe(true);
    const left = spawnSync('ip', ['netns', 'pids', lab.b], { encoding: 'utf8' }).stdout.trim();
    expect(left).toBe('');
    expect(() => process.kill(pid, 0)).toThrow();
  }, 15_000);
});
