// kill -9 in the middle of a streamed answer: after a restart the partial answer is there, marked
// interrupted, holding everything produced until at least one second before the kill.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { openHistory } from '../history/store.ts';

const storeUrl = new URL('../history/store.ts', import.meta.url).href;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

// The child: opens the store, starts an answer, appends a token every 20 ms for ~2.5 s and
// reports the length of the text produced after each append.
const child = `
import { openHistory } from ${JSON.stringify(storeUrl)};
const h = await openHistory({ dir: process.argv[1], mapSize: 64 * 1024 * 1024 });
const c = await h.createConversation({ title: 'crash' });
await h.addMessage(c.id, { role: 'user', content: 'count slowly' });
const w = await h.startAnswer(c.id, { model: 'm', node: 'n' });
process.stdout.write('conv ' + c.id + '\\n');
let text = '';
let i = 0;
const t0 = Date.now();
const tick = setInterval(() => {
  const tok = 'tok' + i++ + ' ';
  text += tok;
  w.append(tok);
  process.stdout.write('len ' + text.length + '\\n');
  if (Date.now() - t0 > 2500) clearInterval(tick);
}, 20);
`;

function expected(len: number): string {
  let s = '';
  for (let i = 0; s.length < len; i++) s += `tok${i} `;
  return s.slice(0, len);
}

it('survives kill -9 mid-stream: the partial answer is stored and marked interrupted', { timeout: 30_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-crash-'));
  dirs.push(dir);
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child, dir], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let convId = '';
  const reports: Array<{ at: number; len: number }> = [];
  let killedAt = 0;
  const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.on('exit', (_code, signal) => resolve(signal)));
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith('conv ')) convId = line.slice(5);
      if (line.startsWith('len ') && !killedAt) {
        reports.push({ at: Date.now(), len: Number(line.slice(4)) });
        if (reports[reports.length - 1].at - reports[0].at >= 2000) {
          killedAt = Date.now();
          proc.kill('SIGKILL');
        }
      }
    }
  });
  const signal = await exited;
  expect(signal, `child stderr: ${stderr}`).toBe('SIGKILL');
  expect(convId).not.toBe('');

  const h = await openHistory({ dir, mapSize: 64 * 1024 * 1024 });
  try {
    expect(h.recovered).toBe(1);
    const [question, answer] = h.messages(convId);
    expect(question).toMatchObject({ role: 'user', content: 'count slowly', status: 'complete' });
    expect(answer).toMatchObject({ role: 'assistant', status: 'interrupted', model: 'm', node: 'n' });
    const producedBySecondBefore = Math.max(0, ...reports.filter((r) => r.at <= killedAt - 1000).map((r) => r.len));
    expect(producedBySecondBefore).toBeGreaterThan(100);
    expect(answer.content.length).toBeGreaterThanOrEqual(producedBySecondBefore);
    expect(answer.content).toBe(expected(answer.content.length));
    expect(h.listConversations().items[0]).toMatchObject({ id: convId, messageCount: 2 });
  } finally {
    await h.close();
  }
});
