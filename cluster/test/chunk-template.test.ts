import { describe, expect, it } from 'vitest';
import { ChunkTemplate, tokenOf, type TokenRun } from '../chunk-template.ts';
import { SseParser, type SseItem } from '../sse.ts';

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

describe('token runs', () => {
  const event = (data: string) => `data: ${data}\n\n`;
  const role = '{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1764000000,"id":"chatcmpl-abc","model":"m","object":"chat.completion.chunk"}';
  const finish = llama('').replace('"finish_reason":null', '"finish_reason":"stop"').replace('{"content":""}', '{}');
  const prefix = llama('\u0000').split('"\\u0000"')[0] + '"';
  const suffix = '"' + llama('\u0000').split('"\\u0000"')[1];
  /** A token event with `body` written as is between the quotes (valid JSON or not). */
  const raw = (body: string) => event(prefix + body + suffix);

  /** Pushes each piece through a parser reading runs with `t`: what the stream's reader sees. */
  function read(t: ChunkTemplate, pieces: string[]) {
    const p = new SseParser();
    const items: SseItem[] = [];
    const runs: TokenRun[] = [];
    const verbatim: boolean[] = [];
    for (const piece of pieces) {
      for (const it of p.push(Buffer.from(piece), t)) {
        if ('run' in it) runs.push(it);
        else items.push(it);
      }
      verbatim.push(p.verbatim);
    }
    return { items, runs, verbatim, content: runs.map((r) => r.tokens).join('') };
  }

  it('reads a whole answer that came in one read as one run, learning the shape from its first token', () => {
    const tokens = ['Hello', ',', '', ' naïve', ' ☃😀', ' world'];
    const text = event(role) + tokens.map((s) => event(llama(s))).join('') + event(finish) + event('[DONE]');
    const got = read(new ChunkTemplate(), [text]);
    expect(got.items).toEqual([{ data: role }, { data: finish }, { data: '[DONE]' }]);
    expect(got.runs.map((r) => [r.events, r.nonEmpty])).toEqual([[6, 5]]);
    expect(got.content).toBe(tokens.join(''));
    expect(got.runs[0].run).toBe(tokens.map((s) => event(llama(s))).join(''));
    // Its bytes are still forwarded as they came.
    expect(got.verbatim).toEqual([true]);
  });

  it('reads the same events split anywhere across reads, each exactly once', () => {
    const tokens = ['a', ' b', 'é', '😀', '', 'line\nbreak', ' "q"', ' \\'];
    const text = event(role) + tokens.map((s) => event(llama(s))).join('') + event(finish) + event('[DONE]');
    const b = Buffer.from(text);
    for (const size of [1, 2, 3, 7, 50, 199, 400, 1000]) {
      // Split in bytes, through multi-byte characters too.
      const parser = new SseParser();
      const t = new ChunkTemplate();
      let content = '';
      let events = 0;
      const data: string[] = [];
      for (let i = 0; i < b.length; i += size) {
        for (const it of parser.push(b.subarray(i, i + size), t)) {
          if ('run' in it) {
            content += it.tokens;
            events += it.events;
          } else if ('data' in it) {
            const token = t.match(it.data);
            if (token !== undefined) {
              content += token;
              events++;
            } else if (it.data !== '[DONE]') {
              const chunk = JSON.parse(it.data);
              t.learn(it.data, chunk);
              if (tokenOf(chunk)) {
                content += tokenOf(chunk)!.value;
                events++;
              }
            }
            data.push(it.data);
          }
        }
      }
      expect(content, `reads of ${size}`).toBe(tokens.join(''));
      expect(events, `reads of ${size}`).toBe(tokens.length);
      expect(data.at(-1)).toBe('[DONE]');
    }
  });

  it('decodes escapes in a run', () => {
    // Escaped quotes, and a quote after an escaped backslash closing the token.
    const tokens = ['line\nbreak', ' "quoted"', ' back\\slash', '\u0001', 'tab\t', 'end\\', '\\"', '"'];
    const t = new ChunkTemplate();
    const got = read(t, [tokens.map((s) => event(llama(s))).join('')]);
    expect(got.runs.map((r) => r.events)).toEqual([tokens.length]);
    expect(got.content).toBe(tokens.join(''));
    expect(read(t, [raw('\\u00e9\\/') + raw('x')]).content).toBe('é/x');
  });

  it('leaves events whose token is not a whole JSON string body to the per-event reader', () => {
    const t = new ChunkTemplate();
    read(t, [event(llama('seed'))]);
    for (const bad of ['tab\there', 'nl\nhere', '\\x41', '\\u12', '\\uZZZZ', '\\u00']) {
      // A bad token anywhere in the read: no run holds it (here the whole read goes per event).
      const text = raw('ok') + raw(bad) + raw('41') + raw('fine');
      const got = read(t, [text]);
      expect(got.runs.flatMap((r) => r.run).join(''), JSON.stringify(bad)).not.toContain(bad);
      expect(got.items.length + got.runs.reduce((n, r) => n + r.events, 0), JSON.stringify(bad)).toBe(4);
    }
    // A quote after an odd number of backslashes is part of the token; after an even number it
    // closes it (and a raw quote inside a token leaves the rest of the event unread by the run).
    for (const [body, tokens] of [
      ['a\\\\', 'a\\'],
      ['say \\"hi\\"', 'say "hi"'],
      ['\\\\\\"', '\\"'],
    ] as const) {
      const got = read(t, [raw('x') + raw(body) + raw('y')]);
      expect(got.runs.map((r) => r.events), body).toEqual([3]);
      expect(got.content, body).toBe(`x${tokens}y`);
    }
    const got = read(t, [raw('x') + raw('a"b') + raw('y')]);
    expect(got.runs.map((r) => r.events)).toEqual([1, 1]);
    expect(got.items).toEqual([{ data: prefix + 'a"b' + suffix }]);
  });

  it('ends a run at an event of another shape and starts another after it', () => {
    const t = new ChunkTemplate();
    const stop = llama('c').replace('"finish_reason":null', '"finish_reason":"length"');
    const text = [llama('a'), llama('b'), stop, llama('d'), llama('e')].map(event).join('') + ': ping\n\n' + event(llama('f'));
    const got = read(t, [text]);
    expect(got.runs.map((r) => r.events)).toEqual([2, 2, 1]);
    expect(got.content).toBe('abdef');
    expect(got.items).toEqual([{ data: stop }, { comment: 'ping' }]);
    // A token chunk that carries more (usage here) is a shape of its own, learned where it comes.
    const usage = llama('c', ',"usage":{"completion_tokens":3}');
    const more = read(new ChunkTemplate(), [[llama('a'), llama('b'), usage, llama('d')].map(event).join('')]);
    expect(more.runs.map((r) => r.events)).toEqual([2, 1, 1]);
    expect(more.content).toBe('abcd');
  });

  it("learns the new shape within a read when the text after the token changes (llama-server's created ticks)", () => {
    const later = (s: string) => llama(s).replace('1764000000', '1764000001');
    const text = [llama('a'), llama('b'), later('c'), later('d'), later('e')].map(event).join('') + event(finish.replace('1764000000', '1764000001'));
    const got = read(new ChunkTemplate(), [text]);
    expect(got.runs.map((r) => r.events)).toEqual([2, 3]);
    expect(got.content).toBe('abcde');
    expect(got.items).toHaveLength(1);
  });

  it('does not read runs of JSON written over several data lines', () => {
    const t = new ChunkTemplate();
    const multi = (s: string) => llama(s).replace('{"choices"', '{\n"choices"');
    t.learn(multi('a'), JSON.parse(multi('a')));
    const text = (s: string) => `data: ${multi(s).split('\n').join('\ndata: ')}\n\n`;
    const got = read(t, [text('b') + text('c')]);
    expect(got.runs).toEqual([]);
    expect(got.items).toEqual([{ data: multi('b') }, { data: multi('c') }]);
  });

  it('agrees with JSON.parse on random token bodies read as runs', () => {
    const t = new ChunkTemplate();
    read(t, [event(llama('seed'))]);
    const alphabet = ['a', ' ', '"', '\\', 'n', 'u', '0', 'e', '9', 'F', '/', '\u0001', '\n', 'é', '😀', ',', ':', '}', ']', '{'];
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    let inRuns = 0;
    for (let i = 0; i < 3000; i++) {
      const bodies = Array.from({ length: 1 + rand(6) }, () => Array.from({ length: rand(5) }, () => alphabet[rand(alphabet.length)]).join(''));
      const got = read(t, [bodies.map(raw).join('')]);
      // Every event a run vouches for parses, to the template's structure with that token.
      for (const r of got.runs) {
        const datas = r.run.split('\n\n').filter(Boolean).map((e) => e.slice('data: '.length));
        expect(datas.length).toBe(r.events);
        const values = datas.map((d) => {
          const back = JSON.parse(d);
          const v = back.choices[0].delta.content;
          back.choices[0].delta.content = 'seed';
          expect(back).toEqual(JSON.parse(llama('seed')));
          return v as string;
        });
        expect(r.tokens).toBe(values.join(''));
        expect(r.nonEmpty).toBe(values.filter((v) => v !== '').length);
        inRuns += r.events;
      }
    }
    // Plenty of events are read as runs.
    expect(inRuns).toBeGreaterThan(1000);
  });
});
