// Screenshots of the chat in Debian's Chromium (JavaScript off) for the README:
//   npx tsx web-min/test/screenshots.ts      -> docs/screenshots/*.png
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, noJsContext, startHarness } from './harness.ts';

const out = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');
fs.mkdirSync(out, { recursive: true });

const h = await startHarness();
const browser = await launchBrowser();
try {
  const t0 = Date.now() - 3 * 86_400_000;
  for (const [i, title] of ['Sourdough starter schedule', 'Why is my Pi Zero slow to boot?', 'Birthday card ideas'].entries()) {
    const c = await h.history.createConversation({ model: 'llama-3.1-8b', title, createdAt: t0 + i * 3_600_000 });
    await h.history.addMessage(c.id, { role: 'user', content: title, createdAt: t0 + i * 3_600_000 });
  }
  const conv = await h.history.createConversation({ model: 'sim-model', system: 'You are a concise assistant for a home lab.' });
  await h.history.addMessage(conv.id, { role: 'user', content: 'How do I see which process uses the most memory on the Pi?' });
  await h.history.addMessage(conv.id, {
    role: 'assistant',
    model: 'sim-model',
    node: 'desk-3090',
    usage: { prompt_tokens: 41, completion_tokens: 96, total_tokens: 137 },
    timings: { ttftMs: 180, totalMs: 2400, tokensPerSecond: 42.7 },
    content:
      'Sort processes by resident memory:\n\n```sh\nps -eo pid,rss,comm --sort=-rss | head -5\n```\n\nThings to check:\n\n1. **RSS** is what the process really holds, in KiB.\n2. `systemd-cgtop` shows it per service.\n3. See the [procps manual](https://man7.org/linux/man-pages/man1/ps.1.html).\n\n| Tool | Live | Per service |\n|---|---|---|\n| `top` | yes | no |\n| `systemd-cgtop` | yes | yes |',
  });
  await h.history.addMessage(conv.id, { role: 'user', content: 'And how much is free overall?' });
  await h.history.addMessage(conv.id, { role: 'assistant', model: 'sim-model', node: 'desk-3090', content: 'Run `free -h` and read the **available** column: it counts the cache the kernel can give back.' });

  const shots: Array<{ name: string; width: number; height: number; dark: boolean; path: string }> = [
    { name: 'phone-conversation', width: 390, height: 844, dark: false, path: `/c/${conv.id}` },
    { name: 'phone-conversation-dark', width: 390, height: 844, dark: true, path: `/c/${conv.id}` },
    { name: 'phone-list', width: 390, height: 844, dark: false, path: '/' },
    { name: 'phone-new-chat', width: 390, height: 844, dark: true, path: '/new' },
    { name: 'desktop-conversation', width: 1280, height: 800, dark: false, path: `/c/${conv.id}` },
    { name: 'desktop-conversation-dark', width: 1280, height: 800, dark: true, path: `/c/${conv.id}` },
  ];
  for (const s of shots) {
    const ctx = await noJsContext(browser, s);
    const page = await ctx.newPage();
    await page.goto(h.url + s.path);
    await page.screenshot({ path: path.join(out, `${s.name}.png`) });
    await ctx.close();
  }

  // Mid-answer: the text arrives while the page is still loading; Stop is at hand.
  h.sim.options.tokensPerSecond = 15;
  h.sim.options.defaultTokens = 300;
  const ctx = await noJsContext(browser, { width: 390, height: 844 });
  const page = await ctx.newPage();
  await page.goto(`${h.url}/c/${conv.id}`);
  await page.fill('#composer textarea', 'Write me a short poem about the Pi.');
  await page.click('#composer button', { noWaitAfter: true });
  await page.locator('#live .raw').filter({ hasText: /(\w+\s+){12}/ }).waitFor({ timeout: 15_000 });
  await page.screenshot({ path: path.join(out, 'phone-streaming.png') });
  await page.locator('.stop button').click();
  await page.waitForURL(/\/c\/[^/]+$/);
  await ctx.close();
  console.log(`screenshots written to ${out}`);
} finally {
  await browser.close();
  await h.close();
}
