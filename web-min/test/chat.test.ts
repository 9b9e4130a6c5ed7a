// Every flow of the chat in Debian's Chromium with JavaScript switched off.
import fs from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedAnswer } from '../../bench/sim-node.ts';
import { launchBrowser, noJsContext, startHarness, type Harness } from './harness.ts';

let h: Harness;
let browser: Browser;
let ctx: BrowserContext;
let page: Page;

beforeAll(async () => {
  h = await startHarness();
  browser = await launchBrowser();
  ctx = await noJsContext(browser);
  page = await ctx.newPage();
  page.setDefaultTimeout(15_000);
});

afterAll(async () => {
  await browser?.close();
  await h?.close();
});

const convId = () => /\/c\/([^/?#]+)/.exec(page.url())?.[1] ?? '';

/** Starts a chat from /new with the simulated model and waits for the whole answer. */
async function newChat(text: string, system?: string): Promise<string> {
  await page.goto(`${h.url}/new`);
  await page.selectOption('#model', 'sim-model');
  if (system) {
    await page.click('summary');
    await page.fill('#system', system);
  }
  await page.fill('#text', text);
  await page.click('button.pri');
  await page.waitForSelector('.final');
  const conv = h.history.listConversations({ limit: 1 }).items[0];
  return conv.id;
}

describe('chat without JavaScript', () => {
  it('the browser context really has JavaScript off', async () => {
    await page.goto(`${h.url}/new`);
    // A page script could not run anyway (CSP), but this proves the page needs none.
    expect(await page.evaluate(() => typeof document)).toBe('object'); // Playwright's own world still works
    const jsOn = await ctx.newPage();
    await jsOn.setContent('<noscript><p id="n">off</p></noscript>');
    expect(await jsOn.locator('#n').count()).toBe(1); // <noscript> renders only when JS is off
    await jsOn.close();
  });

  it('new chat: model picker fed by the live models, optional system prompt, answer rendered', async () => {
    await page.goto(`${h.url}/new`);
    expect(await page.locator('#model option').allTextContents()).toEqual(['payload-model', 'sim-model']);
    const id = await newChat('What is a **river**?', 'You answer in one word.');
    const answer = expectedAnswer(
      [
        { role: 'system', content: 'You answer in one word.' },
        { role: 'user', content: 'What is a **river**?' },
      ],
      24,
    );
    expect((await page.locator('.final').innerText()).replace(/\s+/g, ' ')).toContain(answer.trim());
    const last = h.sim.requests.at(-1)!;
    expect(last.body.messages[0]).toEqual({ role: 'system', content: 'You answer in one word.' });
    expect(last.body.model).toBe('sim-model');

    await page.goto(`${h.url}/c/${id}`);
    expect(await page.title()).toContain('What is a **river**?'.slice(0, 10));
    expect(await page.locator('.msg.user strong').textContent()).toBe('river'); // markdown rendered
    expect(await page.locator('.msg.assistant').innerText()).toContain(answer.trim());
    expect(await page.locator('details summary').textContent()).toBe('System prompt');
    const msgs = h.history.messages(id);
    expect(msgs.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(msgs[1].content).toBe(answer);
    expect(msgs[1].node).toBe('sim-node');
  });

  it('sending streams text into the page before the answer is complete; Stop keeps it', async () => {
    const id = await newChat('Tell me a long story');
    await page.goto(`${h.url}/c/${id}`);
    h.sim.options.tokensPerSecond = 20;
    h.sim.options.defaultTokens = 400; // 20 s if not stopped
    try {
      await page.fill('#composer textarea', 'Go on, slowly.');
      await page.click('#composer button', { noWaitAfter: true });
      const raw = page.locator('#live .raw');
      await expect.poll(async () => ((await raw.textContent().catch(() => '')) ?? '').length, { timeout: 10_000 }).toBeGreaterThan(20);
      const seen = (await raw.textContent()) ?? '';
      expect(await page.locator('.final').count()).toBe(0); // the answer is still being written
      expect(h.history.messages(id).at(-1)!.status).toBe('streaming');
      await expect.poll(async () => ((await raw.textContent()) ?? '').length).toBeGreaterThan(seen.length); // still growing

      await page.locator('.stop button').click();
      await page.waitForURL(new RegExp(`/c/${id}(#end)?$`));
      const last = h.history.messages(id).at(-1)!;
      expect(last.status).toBe('stopped');
      expect(last.content.length).toBeGreaterThanOrEqual(seen.length);
      const full = expectedAnswer(
        promptOf(id).concat(),
        400,
      );
      expect(full.startsWith(last.content)).toBe(true);
      expect(last.content.length).toBeLessThan(full.length);
      expect(await page.locator('.msg.assistant').last().innerText()).toContain('stopped');
      expect(await h.sim.idle(3000)).toBe(true); // the upstream request was aborted
      expect(h.sim.stats.aborted).toBeGreaterThanOrEqual(1);
    } finally {
      h.sim.options.tokensPerSecond = 2000;
      h.sim.options.defaultTokens = 24;
    }
  });

  it('regenerate replaces the last answer', async () => {
    const id = await newChat('Regenerate me');
    await page.goto(`${h.url}/c/${id}`);
    const before = h.history.messages(id);
    const requests = h.sim.requests.length;
    await page.getByRole('button', { name: 'Regenerate', exact: true }).click();
    await page.waitForSelector('.final');
    const after = h.history.messages(id);
    expect(after).toHaveLength(2);
    expect(after[1].id).not.toBe(before[1].id);
    expect(after[1].status).toBe('complete');
    expect(h.sim.requests.length).toBe(requests + 1);
    expect(h.sim.requests.at(-1)!.body.messages).toEqual([{ role: 'user', content: 'Regenerate me' }]);
  });

  it('edit and resend replaces the message and everything after it', async () => {
    const id = await newChat('First question');
    await page.goto(`${h.url}/c/${id}`);
    await page.fill('#composer textarea', 'Second question');
    await page.click('#composer button');
    await page.waitForSelector('.final');
    expect(h.history.messages(id)).toHaveLength(4);
    await page.goto(`${h.url}/c/${id}`);
    await page.locator('.msg.user').first().getByText('Edit and resend').click();
    expect(await page.inputValue('#text')).toBe('First question');
    await page.fill('#text', 'A better first question');
    await page.click('button.pri');
    await page.waitForSelector('.final');
    const msgs = h.history.messages(id);
    expect(msgs.map((m) => m.content.slice(0, 30))).toEqual([
      'A better first question',
      expectedAnswer([{ role: 'user', content: 'A better first question' }], 24).slice(0, 30),
    ]);
  });

  it('rename', async () => {
    const id = await newChat('Rename this one');
    await page.goto(`${h.url}/c/${id}`);
    await page.getByRole('link', { name: 'Rename', exact: true }).click();
    await page.fill('#title', 'Kitchen plans');
    await page.click('button.pri');
    await page.waitForURL(new RegExp(`/c/${id}(#end)?$`));
    expect(await page.locator('h1').textContent()).toBe('Kitchen plans');
    expect(h.history.getConversation(id)!.title).toBe('Kitchen plans');
  });

  it('delete asks for confirmation first', async () => {
    const id = await newChat('Delete this one');
    await page.goto(`${h.url}/c/${id}`);
    await page.getByRole('link', { name: 'Delete', exact: true }).click();
    expect(await page.locator('h1').textContent()).toBe('Delete this conversation?');
    expect(h.history.getConversation(id)).toBeDefined(); // nothing deleted by the GET
    await page.getByRole('link', { name: 'Keep it', exact: true }).click();
    await page.waitForURL(new RegExp(`/c/${id}(#end)?$`));
    await page.getByRole('link', { name: 'Delete', exact: true }).click();
    await page.click('button.pri');
    await page.waitForURL(`${h.url}/`);
    expect(h.history.getConversation(id)).toBeUndefined();
    const res = await page.goto(`${h.url}/c/${id}`);
    expect(res!.status()).toBe(404);
    expect(await page.locator('h1').textContent()).toBe('No such conversation');
  });

  it('the list is newest first and can be searched', async () => {
    await newChat('About pelicans');
    await newChat('About zebras');
    await page.goto(`${h.url}/`);
    const titles = await page.locator('.list .t').allTextContents();
    expect(titles.indexOf('About zebras')).toBe(0);
    expect(titles.indexOf('About pelicans')).toBe(1);
    await page.fill('input[name=q]', 'PELICAN');
    await page.click('.search button');
    expect(page.url()).toContain('q=PELICAN');
    expect(await page.locator('.list .t').allTextContents()).toEqual(['About pelicans']);
    await page.fill('input[name=q]', 'no-such-thing-anywhere');
    await page.click('.search button');
    expect(await page.locator('main').innerText()).toContain('Nothing matches');
  });

  it('export downloads the history and import uploads it back', async () => {
    await page.goto(`${h.url}/`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export all', exact: true }).click()]);
    expect(download.suggestedFilename()).toMatch(/^hearth-history-\d{4}-\d{2}-\d{2}\.json$/);
    const doc = JSON.parse(fs.readFileSync((await download.path())!, 'utf8'));
    expect(doc.format).toBe('hearth-history');
    const count = h.history.stats().conversations;
    expect(doc.conversations).toHaveLength(count);

    // A copy with one new conversation: one new, the rest already here.
    const extra = { ...doc.conversations[0], id: 'imported-1', title: 'From another Hearth', updatedAt: Date.now() };
    extra.messages = extra.messages.map((m: Record<string, unknown>) => ({ ...m, conversationId: 'imported-1' }));
    doc.conversations.push(extra);
    const file = `${h.dir}-import.json`;
    fs.writeFileSync(file, JSON.stringify(doc));
    try {
      await page.goto(`${h.url}/`);
      await page.getByRole('link', { name: 'Import', exact: true }).click();
      await page.setInputFiles('#file', file);
      await page.click('button.pri');
      expect(await page.locator('main').innerText()).toContain(`1 new, 0 updated, ${count} already here`);
      expect(h.history.getConversation('imported-1')!.title).toBe('From another Hearth');
    } finally {
      fs.rmSync(file, { force: true });
    }

    // A broken file gives a readable error.
    fs.writeFileSync(file, '{"format":"hearth-history","version":99,"conversations":[]}');
    try {
      await page.goto(`${h.url}/import`);
      await page.setInputFiles('#file', file);
      const res = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/import') && r.request().method() === 'POST'), page.click('button.pri')]);
      expect(res[0].status()).toBe(400);
      expect(await page.locator('h1').textContent()).toBe('This file cannot be imported');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('a conversation page closed mid-answer keeps writing; the page shows it and can stop it', async () => {
    const id = await newChat('Background answer');
    h.sim.options.tokensPerSecond = 20;
    h.sim.options.defaultTokens = 400;
    try {
      await page.goto(`${h.url}/c/${id}`);
      await page.fill('#composer textarea', 'Keep going');
      await page.click('#composer button', { noWaitAfter: true });
      await page.locator('#live .raw').filter({ hasText: /\w/ }).waitFor();
      await page.goto('about:blank'); // leave the streamed page
      await expect.poll(() => h.history.messages(id).at(-1)!.content.length, { timeout: 5000 }).toBeGreaterThan(0);
      await page.goto(`${h.url}/c/${id}`);
      expect(await page.locator('meta[http-equiv=refresh]').count()).toBe(1);
      expect(await page.locator('.msg.assistant').last().innerText()).toContain('being written');
      await page.getByRole('button', { name: 'Stop', exact: true }).click();
      await page.waitForURL(new RegExp(`/c/${id}(#end)?$`));
      expect(h.history.messages(id).at(-1)!.status).toBe('stopped');
      expect(await page.locator('#composer').count()).toBe(1);
    } finally {
      h.sim.options.tokensPerSecond = 2000;
      h.sim.options.defaultTokens = 24;
    }
  });

  it('a node failure shows a readable error in the conversation', async () => {
    const id = await newChat('Before the failure');
    h.sim.setFault({ type: '500', times: 4 });
    try {
      await page.goto(`${h.url}/c/${id}`);
      await page.fill('#composer textarea', 'This will fail');
      await page.click('#composer button');
      await page.waitForSelector('.final');
      expect(await page.locator('.final').innerText()).toMatch(/node failed|answered 500/);
      expect(h.history.messages(id).at(-1)!.status).toBe('error');
    } finally {
      h.sim.setFault(undefined);
    }
  });

  it('on a phone the page fits 360 px and the input sits at the bottom', async () => {
    const phone = await noJsContext(browser, { width: 360, height: 640 });
    try {
      const p = await phone.newPage();
      const id = h.history.listConversations({ limit: 1 }).items[0].id;
      for (let i = 0; i < 4; i++) {
        await h.history.addMessage(id, { role: 'user', content: `Filler question ${i} ` + 'word '.repeat(60) });
        await h.history.addMessage(id, { role: 'assistant', content: '```\n' + 'a_very_long_line_of_code_'.repeat(20) + '\n```\n\n| a | b | c |\n|---|---|---|\n| ' + 'wide '.repeat(30) + '| x | y |' });
      }
      await p.goto(`${h.url}/c/${id}`);
      expect(await p.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
      const box = (await p.locator('#composer').boundingBox())!;
      expect(box.y + box.height).toBeGreaterThan(640 - 2); // sticky at the bottom of the screen
      expect(box.y + box.height).toBeLessThanOrEqual(640 + 1);
      for (const b of await p.locator('button, .btn, select, .list a').all()) {
        const bb = await b.boundingBox();
        if (bb) expect(bb.height).toBeGreaterThanOrEqual(40);
      }
      const fontSize = await p.evaluate(() => getComputedStyle(document.body).fontSize);
      expect(parseFloat(fontSize)).toBeGreaterThanOrEqual(16);
    } finally {
      await phone.close();
    }
  });

  it("keeps a table's column alignment under the page's CSP", async () => {
    const { id } = await h.history.createConversation({ model: 'sim-model', title: 'Aligned' });
    await h.history.addMessage(id, { role: 'user', content: 'A table, please.' });
    await h.history.addMessage(id, { role: 'assistant', content: '| left | centre | right |\n|:--|:-:|--:|\n| a | b | c |' });
    await page.goto(`${h.url}/c/${id}`);
    const aligns = await page.evaluate(() => Array.from(document.querySelectorAll('.msg td')).slice(-3).map((td) => getComputedStyle(td).textAlign));
    expect(aligns).toEqual(['left', 'center', 'right']);
  });

  it('follows the system dark mode', async () => {
    const dark = await noJsContext(browser, { dark: true });
    try {
      const p = await dark.newPage();
      await p.goto(`${h.url}/`);
      const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
      expect(bg).toBe('rgb(19, 20, 22)');
    } finally {
      await dark.close();
    }
  });
});

function promptOf(id: string) {
  const conv = h.history.getConversation(id)!;
  const msgs = h.history.messages(id).slice(0, -1);
  return [...(conv.system ? [{ role: 'system', content: conv.system }] : []), ...msgs.map((m) => ({ role: m.role, content: m.content }))];
}
