/**
 * A circuit breaker per node: after `threshold` failures in a row the node is skipped for a
 * cool-down; then one trial request is let through (half-open); success closes the breaker,
 * failure opens it again for twice as long (capped). Kept short so that a node that recovers is
 * used again within seconds.
 */
export interface BreakerOptions {
  threshold: number;
  coolDownMs: number;
  maxCoolDownMs: number;
}

interface State {
  failures: number;
  openUntil: number;
  coolDownMs: number;
  trialInFlight: boolean;
}

export class Breakers {
  private readonly states = new Map<string, State>();

  constructor(private readonly opts: BreakerOptions) {}

  private state(id: string): State {
    let s = this.states.get(id);
    if (!s) {
      s = { failures: 0, openUntil: 0, coolDownMs: this.opts.coolDownMs, trialInFlight: false };
      this.states.set(id, s);
    }
    return s;
  }

  /** May a request go to this node now? */
  allows(id: string, now = Date.now()): boolean {
    const s = this.states.get(id);
    if (!s || s.failures < this.opts.threshold) return true;
    return now >= s.openUntil && !s.trialInFlight;
  }

  /** When an open breaker lets its next trial through (0 when closed). */
  openUntil(id: string): number {
    const s = this.states.get(id);
    return s && s.failures >= this.opts.threshold ? s.openUntil : 0;
  }

  /** A request is sent: when the breaker is half-open, it is the trial. */
  onSend(id: string): void {
    const s = this.states.get(id);
    if (s && s.failures >= this.opts.threshold) s.trialInFlight = true;
  }

  onSuccess(id: string): void {
    const s = this.states.get(id);
    if (!s) return;
    s.failures = 0;
    s.trialInFlight = false;
    s.coolDownMs = this.opts.coolDownMs;
  }

  onFailure(id: string, now = Date.now()): void {
    const s = this.state(id);
    const wasOpen = s.failures >= this.opts.threshold;
    s.failures++;
    s.trialInFlight = false;
    if (s.failures >= this.opts.threshold) {
      if (wasOpen) s.coolDownMs = Math.min(s.coolDownMs * 2, this.opts.maxCoolDownMs);
      s.openUntil = now + s.coolDownMs;
    }
  }

  /** A request that ended without saying anything about the node (client abort, 4xx). */
  onNeutral(id: string): void {
    const s = this.states.get(id);
    if (s) s.trialInFlight = false;
  }
}
