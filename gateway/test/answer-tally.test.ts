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

  it('takes a whole non-streamed answer, timed over the whole request, as an answer with no text is', () => {
    let t = 0;
    const whole = new AnswerTally(() => t);
    t = 2000;
    expect(whole.add([{ choices: [{ message: { content: 'All at once' }, finish_reason: 'length' }], usage: { prompt_tokens: 1, completion_tokens: 40, total_tokens: 41 } }])).toBe('All at once');
    t = 2001;
    expect(whole.finishReason).toBe('length');
    expect(whole.timings()).toEqual({ totalMs: 2001, tokensPerSecond: 20 });
    t = 0;
    const toolsOnly = new AnswerTally(() => t);
    toolsOnly.add([{ choices: [{ delta: { tool_calls: [] } }], usage: { prompt_tokens: 1, completion_tokens: 9, total_tokens: 10 } }, null as never]);
    t = 100;
    expect(toolsOnly.timings()).toEqual({ totalMs: 100, tokensPerSecond: 90 });
    const nothing = new AnswerTally(() => t);
    nothing.add([{ choices: [], usage: { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 } }]);
    t = 200;
    expect(nothing.timings()).toEqual({ totalMs: 100 });
  });
});
