// Chat sessions across restarts of the whole gateway on one data folder: a login lasts, a
// logout too, and a key cut short (a power cut while an older Hearth wrote it) is replaced.

import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startHearth, type TestHearth } from '../../gateway/test/harness.ts';
import { formSession } from './harness.ts';

const running: TestHearth[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.close()));
});

async function hearth(data?: string): Promise<TestHearth> {
  const h = await startHearth({ chat: { password: 'correct horse' }, ...(data ? { data } : {}) });
  running.push(h);
  return h;
}

const get = (h: TestHearth, path: string, cookie: string) => fetch(h.url + path, { headers: { cookie }, redirect: 'manual' });
const post = (h: TestHearth, path: string, cookie: string, fields: Record<string, string>) =>
  fetch(h.url + path, { method: 'POST', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields), redirect: 'manual' });

/** Logs in through the form; the session's cookie header. */
async function logIn(h: TestHearth): Promise<string> {
  const form = await formSession(`${h.url}/login`);
  const res = await post(h, '/login', form.cookie, { _csrf: form.csrf, password: 'correct horse' });
  expect(res.status).toBe(303);
  const session = res.headers.getSetCookie().map((c) => c.split(';')[0]).find((c) => c.startsWith('hearth_session='))!;
  return `${form.cookie}; ${session}`;
}

async function restart(h: TestHearth): Promise<TestHearth> {
  await h.close();
  running.splice(running.indexOf(h), 1);
  return hearth(h.config.data);
}

describe('chat sessions across restarts', () => {
  it('a login lasts, and a logout too', async () => {
    let h = await hearth();
    const kept = await logIn(h);
    const ended = await logIn(h);
    h = await restart(h);
    expect((await get(h, '/', kept)).status).toBe(200);
    expect((await get(h, '/', ended)).status).toBe(200);
    const { csrf } = await formSession(`${h.url}/`, ended);
    expect((await post(h, '/logout', ended, { _csrf: csrf })).status).toBe(303);
    expect((await get(h, '/', ended)).status).toBe(303);
    h = await restart(h);
    expect((await get(h, '/', ended)).status).toBe(303);
    expect((await get(h, '/', kept)).status).toBe(200);
    // Written whole, readable by Hearth's user only.
    const file = join(h.config.data, 'sessions-revoked.json');
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')))).toHaveLength(1);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('replaces a key cut short instead of signing with it', async () => {
    const first = await hearth();
    const data = first.config.data;
    await first.close();
    running.splice(0);
    writeFileSync(join(data, 'secret.key'), Buffer.alloc(0));
    const h = await hearth(data);
    await logIn(h);
    const key = readFileSync(join(data, 'secret.key'));
    expect(key.length).toBe(32);
    expect(statSync(join(data, 'secret.key')).mode & 0o777).toBe(0o600);
  });
});
