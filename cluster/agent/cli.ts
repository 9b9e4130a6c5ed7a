/**
 * `hearth node [options] -- COMMAND ARGS...`: run an inference server under supervision and
 * advertise it over mDNS while it is healthy. How a machine whose server cannot advertise itself
 * joins a Hearth cluster.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_SERVICE_TYPES, NodeAgent, type NodeAgentOptions } from './agent.ts';
import { hostFromCommand, portFromCommand } from './readiness.ts';
import { serveStatus, type StatusServer } from './status.ts';
import { signalName, type StateChange } from './supervisor.ts';

export const NODE_USAGE = `Usage: hearth node [options] -- COMMAND [ARGS...]

Runs an inference server (llama-server or any other) under supervision: shows its output,
restarts it with back-off when it dies, and advertises it over mDNS while it answers healthy.

Example:
  hearth node -- llama-server -m model.gguf --host 0.0.0.0 --port 8080

Options:
  --name NAME             advertised instance name (default: "<hostname> <command> <port>")
  --port PORT             port the server listens on (default: the command's own --port)
  --service-type TYPE     DNS-SD type to advertise, repeatable
                          (default: ${DEFAULT_SERVICE_TYPES.join(' and ')})
  --no-advertise          supervise only
  --interface ADDR        IPv4 address of the network interface for mDNS (default: all)
  --ttl SECONDS           TTL of the advertised records (default 120)
  --status-port PORT      serve a status page and /status.json on 127.0.0.1:PORT
  --backoff-min-ms MS     first restart delay (default 1000); doubles after each failure
  --backoff-max-ms MS     longest restart delay (default 30000)
  --stable-ms MS          a run this long resets the delay (default 60000)
  --stop-grace-ms MS      time between SIGTERM and SIGKILL when stopping (default 5000)
  --health-interval-ms MS health probe interval once ready (default 3000)
  --health-failures N     failed probes that withdraw the advertisement (default 3)
  --health-timeout-ms MS  time-out of one health probe (default 2000)
  --json                  print events as JSON lines instead of text
  -h, --help              show this help
`;

const OPTIONS = {
  name: { type: 'string' },
  port: { type: 'string' },
  'service-type': { type: 'string', multiple: true },
  'no-advertise': { type: 'boolean' },
  interface: { type: 'string' },
  ttl: { type: 'string' },
  'status-port': { type: 'string' },
  'backoff-min-ms': { type: 'string' },
  'backoff-max-ms': { type: 'string' },
  'stable-ms': { type: 'string' },
  'stop-grace-ms': { type: 'string' },
  'health-interval-ms': { type: 'string' },
  'health-failures': { type: 'string' },
  'health-timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

class UsageError extends Error {}

export interface NodeCli {
  help: boolean;
  json: boolean;
  statusPort?: number;
  agent: NodeAgentOptions;
}

function int(v: string | undefined, what: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${what} must be a whole number from ${min} to ${max}, got "${v}"`);
  return Number(v);
}

/** Parse `hearth node` arguments (without the `node`). Throws a UsageError on bad input. */
export function parseNodeCli(argv: string[]): NodeCli {
  // Options end at `--` or at the first word that is not an option: the rest is the command.
  let cut = argv.length;
  let command: string[] = [];
  const valued = new Set(Object.entries(OPTIONS).filter(([, o]) => o.type === 'string').map(([k]) => `--${k}`));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      cut = i;
      command = argv.slice(i + 1);
      break;
    }
    if (!a.startsWith('-')) {
      cut = i;
      command = argv.slice(i);
      break;
    }
    if (valued.has(a)) i++;
  }
  let values;
  try {
    ({ values } = parseArgs({ args: argv.slice(0, cut), options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
  if (values.help) return { help: true, json: false, agent: { command: [], port: 0, name: '' } };
  if (command.length === 0) throw new UsageError('no server command: put it after --, e.g. hearth node -- llama-server -m model.gguf --port 8080');

  const port = int(values.port, '--port', 1, 65535) ?? portFromCommand(command.slice(1));
  if (!port) throw new UsageError("cannot tell the server's port: pass --port PORT to hearth node (or --port to the server)");
  const types = values['service-type'] ?? [];
  for (const t of types) {
    if (!/^_[a-z0-9-]{1,15}\._(tcp|udp)$/i.test(t)) throw new UsageError(`--service-type must look like _name._tcp, got "${t}"`);
  }
  const name = values.name ?? `${os.hostname()} ${path.basename(command[0])} ${port}`;
  if (!name.trim() || Buffer.byteLength(name) > 63) throw new UsageError('--name must be 1 to 63 bytes');

  return {
    help: false,
    json: !!values.json,
    statusPort: int(values['status-port'], '--status-port', 0, 65535),
    agent: {
      command,
      port,
      bindHost: hostFromCommand(command.slice(1)),
      name,
      serviceTypes: types.length ? types : undefined,
      advertise: !values['no-advertise'],
      mdns: values.interface ? { interface: values.interface } : undefined,
      ttl: int(values.ttl, '--ttl', 1, 86_400),
      supervisor: {
        backoffMinMs: int(values['backoff-min-ms'], '--backoff-min-ms', 0, 3_600_000),
        backoffMaxMs: int(values['backoff-max-ms'], '--backoff-max-ms', 0, 3_600_000),
        stableMs: int(values['stable-ms'], '--stable-ms', 0, 86_400_000),
        stopGraceMs: int(values['stop-grace-ms'], '--stop-grace-ms', 0, 600_000),
      },
      health: {
        intervalMs: int(values['health-interval-ms'], '--health-interval-ms', 50, 3_600_000),
        failures: int(values['health-failures'], '--health-failures', 1, 1000),
        timeoutMs: int(values['health-timeout-ms'], '--health-timeout-ms', 50, 600_000),
      },
    },
  };
}

/** Where `file` would be executed from, or null: a clear error beats the pty helper's exec failure. */
export function resolveExecutable(file: string, envPath = process.env.PATH ?? ''): string | null {
  const ok = (p: string) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (file.includes('/')) return ok(file) ? file : null;
  for (const dir of envPath.split(path.delimiter)) if (dir && ok(path.join(dir, file))) return path.join(dir, file);
  return null;
}

function describe(c: StateChange): string {
  switch (c.state) {
    case 'starting':
      return `starting (pid ${c.pid}${c.restarts ? `, restart ${c.restarts}` : ''})`;
    case 'ready':
      return `ready (pid ${c.pid})`;
    case 'unhealthy':
      return `unhealthy: failing health probes (pid ${c.pid})`;
    case 'exited':
      return 'exited with status 0';
    case 'crashed':
      return c.signal ? `died from ${signalName(c.signal)}` : `exited with status ${c.exitCode}`;
    case 'backoff':
      return `restarting in ${((c.delayMs ?? 0) / 1000).toFixed(1)} s`;
    default:
      return c.state;
  }
}

function strip(undef: Record<string, unknown>): void {
  for (const k of Object.keys(undef)) if (undef[k] === undefined) delete undef[k];
}

/** Entry of `hearth node`: -1 keeps the process running (it exits on SIGINT/SIGTERM). */
export async function runNodeAgent(argv: string[]): Promise<number> {
  let cli: NodeCli;
  try {
    cli = parseNodeCli(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`hearth node: ${e.message}\n\n${NODE_USAGE}`);
    return 2;
  }
  if (cli.help) {
    process.stdout.write(NODE_USAGE);
    return 0;
  }
  const o = cli.agent;
  if (!resolveExecutable(o.command[0])) {
    process.stderr.write(`hearth node: command not found or not executable: ${o.command[0]}\n`);
    return 2;
  }
  strip(o.supervisor as Record<string, unknown>);
  strip(o.health as Record<string, unknown>);

  const label = path.basename(o.command[0]);
  const out = (ev: Record<string, unknown>, text: string) =>
    process.stdout.write(cli.json ? `${JSON.stringify({ t: new Date().toISOString(), ...ev })}\n` : `${text}\n`);
  const agent = new NodeAgent(o);
  agent.on('state', (c) => out({ ev: 'state', ...c }, `hearth node: ${describe(c)}`));
  agent.on('line', (line) => out({ ev: 'output', line }, `${label}| ${line}`));
  agent.on('advertised', (ps) =>
    out(
      { ev: 'advertised', name: ps[0]?.name, types: ps.map((p) => p.type), port: ps[0]?.port, host: ps[0]?.host, txt: ps[0]?.txt },
      `hearth node: advertising "${ps[0]?.name}" as ${ps.map((p) => p.type).join(', ')} on port ${ps[0]?.port} (models: ${ps[0]?.txt.models || '-'})`,
    ),
  );
  agent.on('withdrawn', (reason) => out({ ev: 'withdrawn', reason }, `hearth node: advertisement withdrawn (${reason})`));
  agent.on('warning', (w) => out({ ev: 'warning', message: w }, `hearth node: warning: ${w}`));

  const bind = o.bindHost;
  if (o.advertise !== false && (bind === undefined ? /llama-server/.test(label) : /^(127\.|localhost$|::1$|\[::1\]$)/.test(bind))) {
    out({ ev: 'warning', message: 'server listens on loopback only' }, `hearth node: warning: ${label} listens on ${bind ?? '127.0.0.1 (its default)'} only, so other machines cannot reach it; pass --host 0.0.0.0 to it`);
  }

  let status: StatusServer | null = null;
  if (cli.statusPort !== undefined) {
    try {
      status = await serveStatus(cli.statusPort, () => agent.status(), `hearth node: ${o.name}`);
      out({ ev: 'status', url: `http://127.0.0.1:${status.port}/` }, `hearth node: status page at http://127.0.0.1:${status.port}/`);
    } catch (e) {
      process.stderr.write(`hearth node: cannot serve the status page on 127.0.0.1:${cli.statusPort}: ${(e as Error).message}\n`);
      return 1;
    }
  }

  await agent.start();

  let exiting = false;
  const shutdown = async (signal: string) => {
    if (exiting) return;
    exiting = true;
    out({ ev: 'shutdown', signal }, `hearth node: ${signal}: saying goodbye and stopping the server`);
    const graceMs = o.supervisor?.stopGraceMs ?? 5000;
    setTimeout(() => process.exit(1), graceMs + 5000).unref();
    await agent.stop();
    await status?.close();
    process.exit(0);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => void shutdown(sig));
  return -1;
}
