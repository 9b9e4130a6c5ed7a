// Export of the whole history as a download (Hearth's format, FORMAT.md) and import of a file
// (Hearth's format or ChatGPT's conversations.json).

import type { Context } from 'hono';
import { Hono } from 'hono';
import { HistoryInputError } from '../gateway/history/errors.ts';
import { exportHistoryJson, importAny } from '../gateway/history/export.ts';
import type { History } from '../gateway/history/store.ts';
import { html } from './html.ts';
import { csrfField, errorPage, page, PAGE_HEADERS, send } from './layout.ts';
import type { WebEnv } from './types.ts';

export const IMPORT_MAX_BYTES = 64 * 1024 * 1024;

function importForm(c: Context<WebEnv>) {
  return page(c, {
    title: 'Import',
    body: html`<h1>Import conversations</h1><p>A Hearth export, or ChatGPT’s <code>conversations.json</code> (Settings → Data controls → Export). Conversations already here are kept unless the file has a newer copy; importing a file twice changes nothing.</p>
<form method="post" action="/import" enctype="multipart/form-data">${csrfField(c)}<label for="file">File</label><input id="file" type="file" name="file" accept=".json,application/json" required><p><button class="pri">Import</button></p></form>`,
  });
}

export function transferRoutes(history: History): Hono<WebEnv> {
  const app = new Hono<WebEnv>();

  app.get('/export', (c) => {
    const day = new Date().toISOString().slice(0, 10);
    const enc = new TextEncoder();
    const chunks = exportHistoryJson(history);
    const body = new ReadableStream<Uint8Array>({
      pull(ctl) {
        const n = chunks.next();
        if (n.done) ctl.close();
        else ctl.enqueue(enc.encode(n.value));
      },
    });
    return c.body(body, 200, {
      ...PAGE_HEADERS,
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Disposition': `attachment; filename="hearth-history-${day}.json"`,
    });
  });

  app.get('/import', (c) => send(c, importForm(c)));

  app.post('/import', async (c) => {
    const body = await c.req.parseBody();
    const file = body.file;
    if (!(file instanceof File) || file.size === 0) return errorPage(c, 400, 'No file', 'Choose a file to import.', '/import');
    let doc: unknown;
    try {
      doc = JSON.parse(await file.text());
    } catch (e) {
      return errorPage(c, 400, 'Not a JSON file', `“${file.name}” is not JSON: ${(e as Error).message}`, '/import');
    }
    try {
      const r = await importAny(history, doc);
      return send(
        c,
        page(c, {
          title: 'Imported',
          body: html`<h1>Imported</h1><p>From “${file.name}”: ${r.imported} new, ${r.replaced} updated, ${r.skipped} already here.</p><p class="act"><a class="btn pri" href="/">Conversations</a></p>`,
        }),
      );
    } catch (e) {
      if (e instanceof HistoryInputError) return errorPage(c, 400, 'This file cannot be imported', e.message, '/import');
      throw e;
    }
  });
  return app;
}
