// A text browser can read a conversation and post a message (w3m with its own cookie jar).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.ts';

const run = promisify(execFile);
const hasW3m = fs.existsSync('/usr/bin/w3m');
let h: Harness;
let home: string;

// Async on purpose: the server runs in this process.
async function w3m(...args: string[]): Promise<string> {
  const { stdout } = await run('w3m', ['-cookie', '-o', 'accept_cookie=1', '-o', 'use_cookie=1', '-cols', '70', ...args], {
    env: { ...process.env, HOME: home },
    encoding: 'utf8',
    timeout: 15_000,
  });
  return stdout;
}

beforeAll(async () => {
  if (!hasW3m) return;
  h = await startHarness();
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-w3m-'));
});
afterAll(async () => {
  await h?.close();
  if (home) fs.rmSync(home, { recursive: true, force: true });
});

it.skipIf(!hasW3m)('w3m reads a conversation and posts a message', async () => {
  const conv = await h.history.createConversation({ model: 'sim-model', title: 'Plain text please' });
  await h.history.addMessage(conv.id, { role: 'user', content: 'Hello from **w3m**' });
  await h.history.addMessage(conv.id, { role: 'assistant', content: '- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |', model: 'sim-model' });

  const list = await w3m('-dump', `${h.url}/`);
  expect(list).toContain('Plain text please');

  const dump = await w3m('-dump', `${h.url}/c/${conv.id}`);
  expect(dump).toContain('Hello from w3m');
  expect(dump).toMatch(/•\s+one/);
  expect(dump).toContain('Send');

  // What a person does in w3m's form: the token comes from the page, the cookie from w3m's jar.
  const src = await w3m('-dump_source', `${h.url}/c/${conv.id}`);
  const csrf = /name="_csrf" value="([^"]+)"/.exec(src)![1];
  const body = path.join(home, 'body');
  fs.writeFileSync(body, new URLSearchParams({ _csrf: csrf, n: '2', model: 'sim-model', text: 'Posted from w3m' }).toString());
  const answered = await w3m('-post', body, '-dump', `${h.url}/c/${conv.id}/send`);
  expect(answered).toContain('Posted from w3m');
  const msgs = h.history.messages(conv.id);
  expect(msgs.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
  expect(msgs[3].status).toBe('complete');
  expect(answered).toContain(msgs[3].content.trim().split(' ')[0]);
});
