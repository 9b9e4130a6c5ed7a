import { describe, expect, it } from 'vitest';
import { AnswerTally } from '../history/answer-tally.ts';

describe('AnswerTally', () => {
  it('adds up a stream: text, finish reason, usage, and timings from the first token on', () => {
    let t = 1000;
    const tally = new AnswerTally(() => t);
    t = 1100;
    expect(tally.add([{ choices: [{ delta: { role: 'assistant' } }] }])).toBe('');
    t = 1250;
    expect(tally.add([{ choices: [{ delta: { content: 'Hel' } }] }, { choices: [{ delta: { content: 'lo' } }] }])).toBe('Hello');
    t = 1400;
    tally.add([{ choices: [{ delta: {}, finish_reason: 'stop' }] }, { choices: [], usage: { prompt_tokens: 5, completion_tokens: 30, total_tokens: 35 } }]);
    t = 1750;
    expect(tally.finishReason).toBe('stop');
    expect(tally.usage?.completion_tokens).toBe(30);
    // 30 tokens over the 0.5 s after the first token.
    expect(tally.timings()).toEqual({ totalMs: 750, ttftMs: 250, tokensPerSecond: 60 });
  });

  it('takes a whole non-streamed answer, and gives no rate without a first token', () => {
    let t = 0;
    const tally = new AnswerTally(() => t);
    expect(tally.add([{ choices: [{ message: { content: 'All at once' }, finish_reason: 'length' }] }])).toBe('All at once');
    expect(tally.finishReason).toBe('length');
    const silent = new AnswerTally(() => t);
    silent.add([{ choices: [{ delta: { tool_calls: [] } }], usage: { prompt_tokens: 1, completion_tokens: 9, total_tokens: 10 } }, null as never]);
    t = 100;
    expect(silent.timings()).toEqual({ totalMs: 100 });
  });
});
