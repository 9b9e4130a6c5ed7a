import { StringDecoder } from 'node:string_decoder';

/**
 * A server-sent event: `data` joins the event's `data:` lines with "\n"; a comment line
 * (": ping") is kept as its own item so silent periods can be forwarded as keep-alives.
 */
export type SseItem = { data: string; event?: string } | { comment: string };

/**
 * Consecutive data events read as one by a `RunReader`: `run` is their text, exactly as received
 * and as `formatSse` would write them; what they carry is the reader's to say.
 */
export interface SseRun {
  run: string;
  /** Where the run ends in the text it was read from. */
  end: number;
  /** How many events it holds. */
  events: number;
}

/**
 * Recognises, at the start of an event, a run of events it can vouch for without the parser
 * splitting them into lines (chunk-template.ts: a fast node's whole answer can come in one read).
 * Returns undefined when no run starts at `at`, and null when one seemed to but did not hold:
 * then it is not asked again for the rest of that push.
 */
export interface RunReader<R extends SseRun = SseRun> {
  readRun(text: string, at: number): R | null | undefined;
}

/**
 * Incremental SSE reader. Written by hand because it sits on the hot path of every streamed
 * token and is small: it accepts LF, CRLF and CR line ends, comment lines, multi-line data,
 * and multi-byte UTF-8 split across network reads (the decoder keeps partial sequences).
 */
export class SseParser {
  private readonly decoder = new StringDecoder('utf8');
  private rest = '';
  /** The data lines of the event being read, joined with "\n"; undefined before the first. */
  private data: string | undefined;
  private event: string | undefined;
  private lastWasCR = false;
  /** The last bytes pushed ended with a line feed: nothing of theirs is held back. */
  private endedClean = true;
  /**
   * The bytes of the last push are exactly its events as `formatSse` writes them: valid UTF-8,
   * whole events of `data: ` lines, each ended by one blank line, nothing held from before or
   * kept for later. Then they can be forwarded as they came instead of being written out again.
   */
  verbatim = false;

  /**
   * Feed bytes; returns the events completed by them. With `runs`, events at the start of which
   * it recognises a run come back as that run (LF line ends only).
   */
  push(chunk: Buffer | string): SseItem[];
  push<R extends SseRun>(chunk: Buffer | string, runs: RunReader<R> | undefined): (SseItem | R)[];
  push<R extends SseRun>(chunk: Buffer | string, runs?: RunReader<R>): (SseItem | R)[] {
    const bytes = typeof chunk !== 'string';
    let text = bytes ? this.decoder.write(chunk) : chunk;
    const clean = this.endedClean && this.rest === '' && this.data === undefined && this.event === undefined;
    this.endedClean = bytes && chunk.length > 0 && chunk[chunk.length - 1] === 10;
    this.verbatim = false;
    // A CRLF may be split across reads: drop the LF that completes a CR already handled.
    if (this.lastWasCR && text.startsWith('\n')) text = text.slice(1);
    this.lastWasCR = text.endsWith('\r');
    const buf = this.rest + text;
    const out: (SseItem | R)[] = [];
    let start = 0;
    if (buf.indexOf('\r') < 0) {
      // LF only (what most servers send): native search rather than a loop over characters.
      let verbatim = bytes && clean;
      let blank = true;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n', start)) {
        if (runs !== undefined && this.data === undefined && this.event === undefined) {
          const run = runs.readRun(buf, start);
          if (run === null) runs = undefined;
          else if (run !== undefined) {
            out.push(run);
            // A run is whole events, the last ended by its blank line.
            start = run.end;
            blank = true;
            continue;
          }
        }
        const isData = nl > start + 5 && buf.startsWith('data:', start);
        const space = isData && buf.charCodeAt(start + 5) === 32;
        // Verbatim lines: `data: ...`, or one blank line ending an event.
        if (verbatim) {
          const isBlank = nl === start;
          verbatim = isBlank ? !blank : space;
          blank = isBlank;
        }
        // A data line (most lines) without the slices of the general reader.
        if (isData) {
          const value = buf.slice(space ? start + 6 : start + 5, nl);
          this.addData(value);
        } else this.line(buf.slice(start, nl), out);
        start = nl + 1;
      }
      this.rest = buf.slice(start);
      // U+FFFD may stand for bytes that are not UTF-8: those are never forwarded as they came.
      this.verbatim = verbatim && blank && this.rest === '' && this.endedClean && out.length > 0 && text.indexOf('\uFFFD') < 0;
      return out;
    }
    for (;;) {
      let nl = -1;
      let width = 1;
      for (let i = start; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c === 10) {
          nl = i;
          break;
        }
        if (c === 13) {
          nl = i;
          if (buf.charCodeAt(i + 1) === 10) width = 2;
          break;
        }
      }
      if (nl < 0) break;
      this.line(buf.slice(start, nl), out);
      start = nl + width;
    }
    this.rest = buf.slice(start);
    return out;
  }

  /** True when bytes of an unfinished event are buffered (a stream that ends here was cut). */
  get pending(): boolean {
    return this.rest.length > 0 || this.data !== undefined;
  }

  private addData(value: string): void {
    this.data = this.data === undefined ? value : `${this.data}\n${value}`;
  }

  private line(line: string, out: unknown[]): void {
    if (line === '') {
      if (this.data !== undefined) out.push(this.event ? { data: this.data, event: this.event } : { data: this.data });
      this.data = undefined;
      this.event = undefined;
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) {
      out.push({ comment: line.slice(1).trimStart() });
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.addData(value);
    else if (field === 'event') this.event = value;
    // `id` and `retry` mean nothing for a one-shot completion stream.
  }
}

/** Serialise one item back to SSE text (LF line ends, one `data:` line per line of data). */
export function formatSse(item: SseItem | SseRun): string {
  if ('run' in item) return item.run;
  if ('comment' in item) return `: ${item.comment}\n\n`;
  const data = item.data.includes('\n') ? item.data.split('\n').join('\ndata: ') : item.data;
  return item.event ? `event: ${item.event}\ndata: ${data}\n\n` : `data: ${data}\n\n`;
}
