import { describe, expect, it } from 'vitest';
import { ChunkTemplate, tokenOf } from '../chunk-template.ts';

const llama = (content: string, extra = '') =>
  `{"choices":[{"finish_reason":null,"index":0,"delta":{"content":${JSON.stringify(content)}}}],"created":1764000000,"id":"chatcmpl-abc","model":"m","system_fingerprint":"b6000","object":"chat.completion.chunk"${extra}}`;

/** A template that has learned from `data`. */
function learned(data: string): ChunkTemplate {
  const t = new ChunkTemplate();
  t.learn(data, JSON.parse(data));
  return t;
}

describe('chunk template', () => {
  it("reads the token of llama-server's content chunks once one has been parsed", () => {
    const t = learned(llama(' Hello'));
    expect(t.kind).toBe('content');
    expect(t.match(llama(' world'))).toBe(' world');
    expect(t.match(llama(''))).toBe('');
    expect(t.match(llama('naïve ☃ 😀'))).toBe('naïve ☃ 😀');
  });

  it('reads escapes in the token through the JSON parser', () => {
    const t = learned(llama('a'));
    expect(t.match(llama('line\nbreak "quoted" \\ back\u0001'))).toBe('line\nbreak "quoted" \\ back\u0001');
    expect(t.match(llama('x').replace('"x"', '"\\u00e9\\/"'))).toBe('é/');
  });

  it('leaves every chunk of another shape to the parser', () => {
    const t = learned(llama('a'));
    for (const other of [
      // finish, usage, role, tool calls, an error, another id, extra whitespace
      llama('a').replace('"finish_reason":null', '"finish_reason":"stop"'),
      llama('a', ',"usage":{"completion_tokens":3}'),
      '{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}]}',
      llama('a').replace('"content":"a"', '"tool_calls":[{"index":0}]'),
      '{"error":{"message":"boom"}}',
      llama('a').replace('chatcmpl-abc', 'chatcmpl-xyz'),
      llama('a').replace('{"choices"', '{ "choices"'),
      '',
      'data',
    ]) {
      expect(t.match(other)).toBeUndefined();
    }
  });

  it('never takes a malformed or differently structured chunk for a token chunk', () => {
    const t = learned(llama('a'));
    const prefix = llama('\u0000').split('"\\u0000"')[0] + '"';
    const suffix = '"' + llama('\u0000').split('"\\u0000"')[1];
    for (const body of [
      // A raw quote would end the string early: here it would even make valid JSON with another key.
      'a","x":"y',
      'a"',
      // A trailing backslash escapes the closing quote.
      'a\\',
      'a\\\\\\',
      // Control characters must be escaped; bad escapes are bad.
      'tab\there',
      'nl\nhere',
      '\\x41',
      '\\u12',
      '\\uZZZZ',
    ]) {
      expect(t.match(prefix + body + suffix), body).toBeUndefined();
    }
  });

  it('agrees with JSON.parse on random token bodies', () => {
    const t = learned(llama('seed'));
    const prefix = llama('\u0000').split('"\\u0000"')[0] + '"';
    const suffix = '"' + llama('\u0000').split('"\\u0000"')[1];
    const alphabet = ['a', ' ', '"', '\\', 'n', 'u', '0', 'e', '9', 'F', '/', '\u0001', '\n', 'é', '😀', ',', ':', '}', ']', '{'];
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    let agreedValid = 0;
    for (let i = 0; i < 20_000; i++) {
      let body = '';
      const len = rand(8);
      for (let k = 0; k < len; k++) body += alphabet[rand(alphabet.length)];
      const data = prefix + body + suffix;
      const got = t.match(data);
      let parsed: unknown;
      try {
        parsed = JSON.parse(data);
      } catch {
        parsed = undefined;
      }
      if (got !== undefined) {
        // Whatever the template reads is valid JSON of the same structure, with that token.
        expect(parsed, data).toBeDefined();
        expect(tokenOf(parsed)?.value, data).toBe(got);
        const back = JSON.parse(data);
        back.choices[0].delta.content = 'seed';
        expect(back).toEqual(JSON.parse(llama('seed')));
        agreedValid++;
      }
    }
    // The random bodies include plenty of valid ones, and those are read without the parser.
    expect(agreedValid).toBeGreaterThan(2000);
  });

  it('learns completions text and reasoning tokens, but only content counts as content', () => {
    const text = (s: string) => `{"choices":[{"text":${JSON.stringify(s)},"index":0,"logprobs":null,"finish_reason":null}],"id":"cmpl-1","object":"text_completion"}`;
    const c = learned(text('one'));
    expect(c.kind).toBe('other');
    expect(c.match(text('two'))).toBe('two');
    const reasoning = (s: string) => `{"choices":[{"finish_reason":null,"index":0,"delta":{"reasoning_content":${JSON.stringify(s)}}}],"id":"x"}`;
    const r = learned(reasoning('hmm'));
    expect(r.kind).toBe('other');
    expect(r.match(reasoning('so'))).toBe('so');
    expect(r.match(`{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"so"}}],"id":"x"}`)).toBeUndefined();
  });

  it('does not learn from a chunk whose token could be read in the wrong place', () => {
    // The token's text also appears as another field's value: ambiguous, so no template.
    const twice = '{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"m"}}],"model":"m"}';
    const t = learned(twice);
    expect(t.match(twice)).toBeUndefined();
    // Duplicate keys: JSON.parse keeps the last; the first is not a token's place.
    const dup = '{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"a","content":"b"}}]}';
    const d = learned(dup);
    expect(d.match(dup.replace('"a"', '"z"'))).toBeUndefined();
    // Several choices, a finish or a delta with two fields are not token chunks.
    for (const data of [
      '{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}',
      '{"choices":[{"finish_reason":"stop","delta":{"content":"a"}}]}',
      '{"choices":[{"delta":{"role":"assistant","content":"a"}}]}',
    ]) {
      expect(tokenOf(JSON.parse(data))).toBeUndefined();
    }
  });

  it('stops learning after a few token chunks that would not serve as templates', () => {
    const t = new ChunkTemplate();
    // A server whose chunks differ in more than the token (a running count) never matches.
    const counting = (i: number) => `{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"t${i}"}}],"n":${i}}`;
    let matched = 0;
    for (let i = 0; i < 50; i++) {
      const data = counting(i);
      if (t.match(data) !== undefined) matched++;
      else t.learn(data, JSON.parse(data));
    }
    expect(matched).toBe(0);
    // Learning has stopped: a chunk of a now-steady shape is still parsed.
    const steady = (s: string) => `{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"${s}"}}],"n":0}`;
    t.learn(steady('a'), JSON.parse(steady('a')));
    expect(t.match(steady('b'))).toBeUndefined();
  });
});
