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
 */

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
const PROBE = 'hearth-probe-7f3a';
/** Token chunks that may set a template: a server whose chunks vary elsewhere stops costing a learn. */
const LEARN_LIMIT = 8;

export class ChunkTemplate {
  kind: TokenKind = 'other';
  /** The chunk's text up to and including the token's opening quote. */
  private prefix = '';
  /** The chunk's text from the token's closing quote on. */
  private suffix = '';
  private learns = LEARN_LIMIT;

  /** The token of a chunk of the learned shape (unescaped), or undefined: parse the chunk. */
  match(data: string): string | undefined {
    const p = this.prefix;
    const s = this.suffix;
    const end = data.length - s.length;
    // Slices compared whole are a memory comparison; startsWith/endsWith go character by character.
    if (p === '' || end < p.length || data.slice(0, p.length) !== p || data.slice(end) !== s) return undefined;
    const token = data.slice(p.length, end);
    if (!SPECIAL.test(token)) return token;
    // Escapes are read by the parser; a raw quote or control character is left to the full parse
    // (a quote could end the string early and still leave valid JSON of another structure).
    if (token.indexOf('\\') < 0) return undefined;
    try {
      return JSON.parse(`"${token}"`) as string;
    } catch {
      return undefined;
    }
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
    this.kind = t.kind;
  }
}
