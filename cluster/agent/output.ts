/**
 * The recent output of a supervised server: terminal bytes in, plain lines out, the last N kept.
 * Hand-written because it is small: split on newlines, strip ANSI escapes, keep a ring.
 */

// CSI (`ESC [ ... final`), OSC (`ESC ] ... BEL|ESC \`), other two-byte escapes, and C0 controls
// other than tab (newline and carriage return are handled before this runs).
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]|[\x00-\x08\x0b-\x1f\x7f]|\x9b[0-?]*[ -/]*[@-~]/g;

/** Remove terminal escape sequences and control characters from one line. */
export function stripAnsi(s: string): string {
  return s.replace(ANSI, '');
}

export interface LineRingOptions {
  /** Lines kept (default 200). */
  size?: number;
  /** Longer lines are cut to this many characters (default 2000). */
  maxLineChars?: number;
}

/**
 * Accepts chunks of terminal output (any split), calls `onLine` for each complete line and keeps
 * the last `size` lines. A carriage return inside a line keeps only what follows it, as a
 * terminal would show (progress bars).
 */
export class LineRing {
  private readonly size: number;
  private readonly maxLineChars: number;
  private readonly buf: string[] = [];
  private next = 0;
  private partial = '';
  /** Lines seen in total, including the ones no longer kept. */
  total = 0;

  constructor(o: LineRingOptions = {}, private readonly onLine?: (line: string) => void) {
    this.size = Math.max(1, o.size ?? 200);
    this.maxLineChars = Math.max(1, o.maxLineChars ?? 2000);
  }

  write(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const p of parts) this.push(p);
    // A server that never prints a newline must not grow memory without bound.
    if (this.partial.length > this.maxLineChars * 4) {
      this.push(this.partial);
      this.partial = '';
    }
  }

  /** Emit what is left without a newline (the process ended). */
  flush(): void {
    if (this.partial) this.push(this.partial);
    this.partial = '';
  }

  /** The kept lines, oldest first; `n` limits to the last n. */
  lines(n?: number): string[] {
    const all = this.buf.length < this.size ? this.buf.slice() : [...this.buf.slice(this.next), ...this.buf.slice(0, this.next)];
    return n === undefined ? all : all.slice(Math.max(0, all.length - n));
  }

  private push(raw: string): void {
    let line = raw.replace(/\r+$/, '');
    const cr = line.lastIndexOf('\r');
    if (cr >= 0) line = line.slice(cr + 1);
    line = stripAnsi(line).slice(0, this.maxLineChars);
    if (this.buf.length < this.size) this.buf.push(line);
    else this.buf[this.next] = line;
    this.next = (this.next + 1) % this.size;
    this.total++;
    this.onLine?.(line);
  }
}
