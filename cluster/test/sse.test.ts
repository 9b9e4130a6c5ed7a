import { describe, expect, it } from 'vitest';
import { SseParser, formatSse, type SseItem } from '../sse.ts';

const bytes = (s: string) => Buffer.from(s, 'utf8');

/** Push each piece; returns every item and whether each push was verbatim. */
function feed(pieces: (string | Buffer)[]): { items: SseItem[]; verbatim: boolean[] } {
  const p = new SseParser();
  const items: SseItem[] = [];
  const verbatim: boolean[] = [];
  for (const piece of pieces) {
    items.push(...p.push(typeof piece === 'string' ? bytes(piece) : piece));
    verbatim.push(p.verbatim);
  }
  return { items, verbatim };
}

describe('SSE parser', () => {
  it('reads data events with LF, CRLF and CR line ends, comments and multi-line data alike', () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const text = `: ping${eol}${eol}data: {"a":1}${eol}${eol}event: x${eol}data: one${eol}data:two${eol}${eol}data: [DONE]${eol}${eol}`;
      expect(feed([text]).items, JSON.stringify(eol)).toEqual([{ comment: 'ping' }, { data: '{"a":1}' }, { data: 'one\ntwo', event: 'x' }, { data: '[DONE]' }]);
      // Split at every byte, the same events come out.
      expect(feed([...bytes(text)].map((b) => Buffer.from([b]))).items).toEqual(feed([text]).items);
    }
  });

  it('keeps a multi-byte character split across reads whole', () => {
    const b = bytes('data: é😀\n\n');
    expect(feed([b.subarray(0, 7), b.subarray(7, 9), b.subarray(9)]).items).toEqual([{ data: 'é😀' }]);
  });

  it('says a push is verbatim only when its bytes are exactly its events as formatSse writes them', () => {
    const ev = (s: string) => `data: {"t":${JSON.stringify(s)}}\n\n`;
    expect(feed([ev('a'), ev('b') + ev('é') + 'data: [DONE]\n\n']).verbatim).toEqual([true, true]);
    expect(feed(['data: a\ndata: b\n\n']).verbatim).toEqual([true]);
    const not = {
      'CRLF line ends': 'data: a\r\n\r\n',
      'no space after the colon': 'data:a\n\n',
      'a comment': ': ping\n\ndata: a\n\n',
      'an event name': 'event: x\ndata: a\n\n',
      'an extra blank line': 'data: a\n\n\n',
      'a partial event at the end': 'data: a\n\ndata: b',
      'an event without its blank line': 'data: a\n',
      'nothing complete': 'data: a',
    };
    for (const [what, text] of Object.entries(not)) expect(feed([text]).verbatim, what).toEqual([false]);
    // A push that completes an event begun before, or that follows a split character, is not verbatim.
    expect(feed(['data: a', '\n\ndata: b\n\n']).verbatim).toEqual([false, false]);
    expect(feed(['data: a', '\n\ndata: b\n\n', 'data: c\n\n']).verbatim).toEqual([false, false, true]);
    const b = bytes('data: é\n\n');
    expect(feed([b.subarray(0, 7), b.subarray(7), bytes('data: x\n\n')]).verbatim).toEqual([false, false, true]);
    // An event name read before its data is part of the event, not of the bytes forwarded.
    const named = feed(['event: x\n', 'data: a\n\n']);
    expect(named.items).toEqual([{ data: 'a', event: 'x' }]);
    expect(named.verbatim).toEqual([false, false]);
  });

  it('never calls bytes that are not UTF-8 verbatim: they are written out again, valid', () => {
    const bad = Buffer.concat([bytes('data: {"t":"'), Buffer.from([0xc3]), bytes('"}\n\n')]);
    const f = feed([bad]);
    expect(f.verbatim).toEqual([false]);
    expect(f.items).toEqual([{ data: '{"t":"\uFFFD"}' }]);
    const out = Buffer.from(f.items.map(formatSse).join(''), 'utf8');
    expect(out.toString('utf8')).toBe('data: {"t":"\uFFFD"}\n\n');
  });

  it('re-serialises every verbatim push to the very same bytes (random streams)', () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const data = ['data: {"x":1}', 'data: a b', 'data:  two spaces', 'data: é', 'data: [DONE]'];
    const odd = ['data:', 'data:no-space', ': c', 'event: e', 'id: 1', '', 'data: a\r'];
    let verbatimPushes = 0;
    for (let i = 0; i < 3000; i++) {
      // Events of one or two data lines, then now and then one line swapped for an odd one.
      const lines: string[] = [];
      for (let e = 1 + rand(4); e > 0; e--) {
        for (let d = 1 + rand(2); d > 0; d--) lines.push(data[rand(data.length)]);
        lines.push('');
      }
      if (rand(3) === 0) lines[rand(lines.length)] = odd[rand(odd.length)];
      const text = lines.join('\n') + '\n';
      const p = new SseParser();
      const items = p.push(bytes(text));
      if (p.verbatim) {
        verbatimPushes++;
        expect(items.map(formatSse).join(''), JSON.stringify(text)).toBe(text);
      }
    }
    expect(verbatimPushes).toBeGreaterThan(1500);
  });

  it('knows when an unfinished event is held', () => {
    const p = new SseParser();
    p.push(bytes('data: a\n'));
    expect(p.pending).toBe(true);
    p.push(bytes('\n'));
    expect(p.pending).toBe(false);
  });
});
