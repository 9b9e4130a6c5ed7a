/**
 * Runs one server process under a pseudo-terminal (so it prints as it would in a terminal: line
 * buffered, with its progress output), keeps its recent output, and restarts it with exponential
 * back-off when it dies. Readiness is told from outside (`setHealth`), by whoever probes it.
 */
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import { spawn as ptySpawn, type IPty } from 'node-pty';
import { LineRing } from './output.ts';

export type SupervisorState =
  | 'idle'
  | 'starting' // spawned, not yet answering as ready
  | 'ready' // answering health probes
  | 'unhealthy' // running but failing health probes
  | 'exited' // ended with status 0
  | 'crashed' // ended with another status or a signal
  | 'backoff' // waiting before the next start
  | 'stopping'
  | 'stopped';

export interface SupervisorOptions {
  /** Executable (looked up on PATH by the pty helper) and its arguments. */
  file: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** First restart delay (default 1000 ms); doubles each time up to `backoffMaxMs`. */
  backoffMinMs?: number;
  /** Restart delay cap (default 30 000 ms). */
  backoffMaxMs?: number;
  /** A run at least this long resets the delay to `backoffMinMs` (default 60 000 ms). */
  stableMs?: number;
  /** stop(): time between SIGTERM and SIGKILL (default 5000 ms). */
  stopGraceMs?: number;
  /** Lines of output kept (default 200). */
  outputLines?: number;
  /** Injected for tests. */
  spawn?: typeof ptySpawn;
}

export interface StateChange {
  state: SupervisorState;
  previous: SupervisorState;
  pid?: number;
  exitCode?: number;
  signal?: number;
  /** `backoff`: how long until the next start. */
  delayMs?: number;
  restarts: number;
  at: number;
}

export interface SupervisorStatus {
  state: SupervisorState;
  pid: number | null;
  restarts: number;
  /** When the current process started (ms since epoch), null when none runs. */
  startedAt: number | null;
  last: StateChange | null;
}

const SIGNAL_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.signals)) if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);
/** `SIGSEGV` for 11 (node-pty reports a signal by number). */
export const signalName = (n: number | undefined) => (n ? (SIGNAL_NAMES.get(n) ?? `signal ${n}`) : '');

/** The back-off schedule: attempt 0 waits `min`, then doubles, capped at `max`. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
}

export class Supervisor extends EventEmitter<{ state: [StateChange]; line: [string]; error: [Error] }> {
  readonly output: LineRing;
  private readonly o: Required<Omit<SupervisorOptions, 'cwd' | 'env' | 'spawn'>> & Pick<SupervisorOptions, 'cwd' | 'env'>;
  private readonly spawnPty: typeof ptySpawn;
  private pty: IPty | null = null;
  private _state: SupervisorState = 'idle';
  private _restarts = 0;
  private attempt = 0;
  private startedAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private last: StateChange | null = null;
  private exitWaiters: Array<() => void> = [];
  private stopping: Promise<void> | null = null;

  constructor(opts: SupervisorOptions) {
    super();
    this.o = {
      file: opts.file,
      args: opts.args,
      cwd: opts.cwd,
      env: opts.env,
      backoffMinMs: opts.backoffMinMs ?? 1000,
      backoffMaxMs: opts.backoffMaxMs ?? 30_000,
      stableMs: opts.stableMs ?? 60_000,
      stopGraceMs: opts.stopGraceMs ?? 5000,
      outputLines: opts.outputLines ?? 200,
    };
    this.spawnPty = opts.spawn ?? ptySpawn;
    this.output = new LineRing({ size: this.o.outputLines }, (l) => this.emit('line', l));
  }

  get state(): SupervisorState {
    return this._state;
  }
  /** Pid of the running server (also its process group: the pty makes it a session leader). */
  get pid(): number | null {
    return this.pty?.pid ?? null;
  }
  get restarts(): number {
    return this._restarts;
  }

  status(): SupervisorStatus {
    return { state: this._state, pid: this.pid, restarts: this._restarts, startedAt: this.startedAt, last: this.last };
  }

  start(): void {
    if (this._state !== 'idle') return;
    this.launch();
  }

  /** Called by the health prober: ready / unhealthy while the process runs; ignored otherwise. */
  setHealth(h: 'ready' | 'unhealthy'): void {
    if (!this.pty || this.stopping) return;
    if (this._state === h) return;
    if (this._state === 'starting' || this._state === 'ready' || this._state === 'unhealthy') this.set(h, { pid: this.pty.pid });
  }

  /** SIGTERM, SIGKILL after the grace period; resolves once the process is gone. Idempotent. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      const pty = this.pty;
      if (pty) {
        this.set('stopping', { pid: pty.pid });
        const gone = this.waitExit();
        this.signal(pty.pid, 'SIGTERM');
        const killer = setTimeout(() => this.signal(pty.pid, 'SIGKILL'), this.o.stopGraceMs);
        // If the exit event never comes (it should), give up waiting a little after SIGKILL.
        const giveUp = new Promise<void>((r) => setTimeout(r, this.o.stopGraceMs + 3000).unref());
        await Promise.race([gone, giveUp]);
        clearTimeout(killer);
      }
      this.set('stopped', {});
    })();
    return this.stopping;
  }

  private launch(): void {
    this.timer = null;
    let pty: IPty;
    try {
      pty = this.spawnPty(this.o.file, this.o.args, {
        name: 'xterm-256color',
        cols: 200,
        rows: 50,
        cwd: this.o.cwd ?? process.cwd(),
        env: (this.o.env ?? process.env) as Record<string, string>,
      });
    } catch (e) {
      if (this.listenerCount('error') > 0) this.emit('error', e as Error);
      this.afterExit(127, 0, 0);
      return;
    }
    this.pty = pty;
    this.startedAt = Date.now();
    pty.onData((d) => this.output.write(d));
    pty.onExit(({ exitCode, signal }) => {
      if (this.pty !== pty) return;
      // The server's own children (if any) share its process group: none may outlive it.
      this.signal(pty.pid, 'SIGKILL', true);
      this.output.flush();
      const ran = Date.now() - (this.startedAt ?? Date.now());
      this.pty = null;
      this.startedAt = null;
      this.afterExit(exitCode, signal ?? 0, ran);
    });
    this.set('starting', { pid: pty.pid });
  }

  private afterExit(exitCode: number, signal: number, ranMs: number): void {
    const waiters = this.exitWaiters;
    this.exitWaiters = [];
    const clean = exitCode === 0 && !signal;
    this.set(clean ? 'exited' : 'crashed', { exitCode, signal: signal || undefined });
    waiters.forEach((w) => w());
    if (this.stopping) return;
    // A clean exit is restarted too: a server that ends is a node gone from the cluster.
    if (ranMs >= this.o.stableMs) this.attempt = 0;
    const delayMs = backoffDelay(this.attempt++, this.o.backoffMinMs, this.o.backoffMaxMs);
    this.set('backoff', { delayMs });
    this.timer = setTimeout(() => {
      if (this.stopping) return;
      this._restarts++;
      this.launch();
    }, delayMs);
  }

  private waitExit(): Promise<void> {
    if (!this.pty) return Promise.resolve();
    return new Promise((r) => this.exitWaiters.push(r));
  }

  /** Signal the process group (the pty helper made the server a session leader), else the pid. */
  private signal(pid: number, sig: NodeJS.Signals, groupOnly = false): void {
    try {
      process.kill(-pid, sig);
      return;
    } catch {
      /* no such group */
    }
    if (groupOnly) return;
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }

  private set(state: SupervisorState, extra: Partial<StateChange>): void {
    const change: StateChange = { state, previous: this._state, restarts: this._restarts, at: Date.now(), ...extra };
    this._state = state;
    this.last = change;
    this.emit('state', change);
  }
}
