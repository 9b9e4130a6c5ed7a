import { describe, expect, it } from 'vitest';
import { Cancel } from '../cancel.ts';

describe('Cancel', () => {
  it('calls each listener still added, once, at the first abort', () => {
    const c = new Cancel();
    const calls: string[] = [];
    const a = () => calls.push('a');
    const b = () => calls.push('b');
    c.addEventListener('abort', a);
    c.addEventListener('abort', b, { once: true });
    c.removeEventListener('abort', a);
    expect(c.aborted).toBe(false);
    c.abort();
    c.abort();
    expect(c.aborted).toBe(true);
    expect(calls).toEqual(['b']);
  });

  it('does not call a listener added after the abort, as AbortSignal does not', () => {
    const calls: string[] = [];
    const c = new Cancel();
    c.abort();
    c.addEventListener('abort', () => calls.push('Cancel'));
    const a = new AbortController();
    a.abort();
    a.signal.addEventListener('abort', () => calls.push('AbortSignal'));
    expect(calls).toEqual([]);
  });
});
