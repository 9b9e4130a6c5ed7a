/**
 * Reads a stream's token chunks without parsing each one.
 *
 * Written by hand because it sits on the hottest path in Hearth: every event of a stream is
 * checked to be JSON before it is forwarded (a malformed one must never reach the client), and
 * JSON.parse of a 200-byte chunk, with the objects it builds and the collection after them, was
 * about a seventh of Hearth's CPU time per streamed answer. Servers send runs of chunks that
 * differ only in their token, e.g. llama-server's
 *   {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" the"}}],"created":…,"id":"…",…}
 * Once such a chunk has been parsed, its text around the token is kept as a template. A later
 * chunk that is the template with a valid JSON string body in the token's place is, by
 * construction, valid JSON of the same structure, and its token is all that is new. Everything
 * else (the first chunk, a role or finish chunk, usage, tool calls, an error, a server whose
 * chunks vary elsewhere) is parsed as before.
 *
 * A fast node's whole answer can arrive in one network read: hundreds of such events, which the
 * template also reads as one run (`readRun`): a few native string operations per event, instead
 * of the parser's line splitting and an object per event.
 */

import type { RunReader, SseRun } from './sse.ts';

/** A run of token events of a template's shape: their text, and their tokens joined (unescaped). */
export interface TokenRun extends SseRun {
  tokens: string;
  /** Events whose token is not empty. */
  nonEmpty: number;
}

/** What a template's token is: chat content (a continuation carries it on) or anything else. */
export type TokenKind = 'content' | 'other';

/** A token chunk's single string: its delta's one field (content, reasoning) or a completion's text. */
export function tokenOf(chunk: unknown): { value: string; kind: TokenKind } | undefined {
  const o = chunk as Record<string, any> | null;
  if (o === null || typeof o !== 'object' || o.error) return undefined;
  const choices = o.choices;
  if (!Array.isArray(choices) || choices.length !== 1) return undefined;
  const c = choices[0];
  if (c === null || typeof c !== 'object' || c.finish_reason) return undefined;
  const d = c.delta;
  if (d === undefined) return typeof c.text === 'string' ? { value: c.text, kind: 'other' } : undefined;
  if (d === null || typeof d !== 'object') return undefined;
  const keys = Object.keys(d);
  if (keys.length !== 1 || typeof d[keys[0]] !== 'string') return undefined;
  return { value: d[keys[0]], kind: keys[0] === 'content' ? 'content' : 'other' };
}

/** Characters that end a JSON string, start an escape, or may not appear in one raw. */
const SPECIAL = /["\\\u0000-\u001f]/;
/** What may not appear raw in a JSON string (a run's tokens end at their first unescaped quote). */
const CONTROL = /[\u0000-\u001f]/;
const PROBE = 'hearth-probe-7f3a';
/** Token chunks that may set a template: a server whose chunks vary elsewhere stops costing a learn. */
const LEARN_LIMIT = 8;
/**
 * Events a run reader parses to learn the shape before the stream's reader would (whose answer
 * may be in the same read): the role chunk, the first token, then a few changes of shape. An
 * event that teaches nothing is parsed again where it is read as an item, so this is bounded.
 */
const RUN_LEARN_LIMIT = 4;

export class ChunkTemplate implements RunReader<TokenRun> {
  kind: TokenKind = 'other';
  /** The chunk's text up to and including the token's opening quote. */
  private prefix = '';
  /** The chunk's text from the token's closing quote on. */
  private suffix = '';
  /** A token event's text up to its token. */
  private head = '';
  /** From one token to the next in consecutive token events. */
  private between = '';
  /** From a token event's token to the end of the event. */
  private tail = '';
  private learns = LEARN_LIMIT;
  private runLearns = RUN_LEARN_LIMIT;

  /** The token of a chunk of the learned shape (unescaped), or undefined: parse the chunk. */
  match(data: string): string | undefined {
    const p = this.prefix;
    const s = this.suffix;
    const end = data.length - s.length;
    // Slices compared whole are a memory comparison; startsWith/endsWith go character by character.
    if (p === '' || end < p.length || data.slice(0, p.length) !== p || data.slice(end) !== s) return undefined;
    return stringBody(data.slice(p.length, end));
  }

  /**
   * The token events of the learned shape from `at` (the start of an event) on, read as one run
   * up to the first event of another shape. Between a head and a tail, a token runs to the next
   * quote; when it holds no control character and only whole escapes, its event is the template
   * with a JSON string body in the token's place, as `match` requires of one. Undefined when no
   * such event starts at `at`; null when a token of the run is not a valid string body (then the
   * events are read one by one, and the parser rejects that one).
   */
  readRun(text: string, at: number): TokenRun | null | undefined {
    if (this.head === '' && this.runLearns > 0) this.learnAt(text, at);
    const run = this.scan(text, at);
    if (run !== false) return run;
    // A token event whose text after the token changed (llama-server's `created` ticks every
    // second): learn the new shape from it and read on.
    if (this.runLearns === 0 || !this.learnAt(text, at)) return undefined;
    const again = this.scan(text, at);
    return again === false ? undefined : again;
  }

  /** readRun's reading; false when an event starts like the shape but does not end like it. */
  private scan(text: string, at: number): TokenRun | null | undefined | false {
    const head = this.head;
    if (head === '' || text.slice(at, at + head.length) !== head) return undefined;
    const between = this.between;
    const tail = this.tail;
    let tokens = '';
    let events = 0;
    let nonEmpty = 0;
    let pos = at + head.length;
    let end = at;
    for (;;) {
      const q = closingQuote(text, pos);
      if (q < 0) break;
      // Slices compared whole (see match).
      const more = text.slice(q, q + between.length) === between;
      if (!more && text.slice(q, q + tail.length) !== tail) break;
      if (q > pos) {
        tokens += text.slice(pos, q);
        nonEmpty++;
      }
      events++;
      end = q + tail.length;
      if (!more) break;
      pos = q + between.length;
    }
    if (events === 0) return false;
    if (SPECIAL.test(tokens)) {
      if (CONTROL.test(tokens) || !this.escapesWhole(text, at + head.length, events)) return null;
      tokens = JSON.parse(`"${tokens}"`) as string;
    }
    return { run: text.slice(at, end), end, events, tokens, nonEmpty };
  }

  /**
   * Learn the shape from the event at `at` when it is one whole `data:` line; true when that
   * event now reads as a token event of the shape.
   */
  private learnAt(text: string, at: number): boolean {
    if (text.slice(at, at + 6) !== 'data: ') return false;
    const end = text.indexOf('\n\n', at);
    const data = end < 0 ? '' : text.slice(at + 6, end);
    if (data === '' || data.indexOf('\n') >= 0) return false;
    this.runLearns--;
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      return false;
    }
    this.learn(data, chunk);
    return this.head !== '' && this.match(data) !== undefined;
  }

  /** Each of the `events` tokens of a run read from `pos` is a valid JSON string body on its own. */
  private escapesWhole(text: string, pos: number, events: number): boolean {
    for (let k = 0; k < events; k++) {
      const q = closingQuote(text, pos);
      if (stringBody(text.slice(pos, q)) === undefined) return false;
      pos = q + this.between.length;
    }
    return true;
  }

  /** Learn the shape from a chunk that was parsed and accepted (`chunk` is JSON.parse(data)). */
  learn(data: string, chunk: unknown): void {
    if (this.learns === 0) return;
    const t = tokenOf(chunk);
    if (!t) return;
    this.learns--;
    // The token's place in the text: its encoding, found once and only once...
    const enc = JSON.stringify(t.value);
    const at = data.indexOf(enc);
    if (at < 0 || data.indexOf(enc, at + 1) >= 0) return;
    const prefix = data.slice(0, at + 1);
    const suffix = data.slice(at + enc.length - 1);
    // ...and a probe put in that place is read back as the token (not as another field's value).
    let probe: unknown;
    try {
      probe = JSON.parse(prefix + PROBE + suffix);
    } catch {
      return;
    }
    const back = tokenOf(probe);
    if (back?.value !== PROBE || back.kind !== t.kind) return;
    this.prefix = prefix;
    this.suffix = suffix;
    // Runs are read for events of one `data:` line (JSON written over several is not).
    const oneLine = !/[\r\n]/.test(data);
    this.head = oneLine ? `data: ${prefix}` : '';
    this.tail = oneLine ? `${suffix}\n\n` : '';
    this.between = this.tail + this.head;
    this.kind = t.kind;
  }
}

/**
 * A token's text as the JSON string body it stands in, unescaped; undefined when it is not one.
 * Escapes are read by the parser; a raw quote or control character is refused (a quote could end
 * the string early and still leave valid JSON of another structure).
 */
function stringBody(token: string): string | undefined {
  if (!SPECIAL.test(token)) return token;
  if (token.indexOf('\\') < 0) return undefined;
  try {
    return JSON.parse(`"${token}"`) as string;
  } catch {
    return undefined;
  }
}

/** The quote that ends the JSON string body starting at `pos`: the next one not escaped, or -1. */
function closingQuote(text: string, pos: number): number {
  let q = text.indexOf('"', pos);
  // A quote after an odd number of backslashes is escaped (the opening quote stops the count).
  while (q > 0 && text.charCodeAt(q - 1) === 92) {
    let n = 1;
    while (text.charCodeAt(q - 1 - n) === 92) n++;
    if (n % 2 === 0) break;
    q = text.indexOf('"', q + 1);
  }
  return q;
}
