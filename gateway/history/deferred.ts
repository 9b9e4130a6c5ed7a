import fs from 'node:fs';
import path from 'node:path';
import { openHistory, openHistorySync, type History, type HistoryOptions } from './store.ts';

/**
 * The history store, opened at start when there is history on disk (so that answers cut by the
 * last shutdown are marked interrupted and old ones pruned at once), and otherwise only when
 * something first uses it: a gateway serving the API alone, with no `store: true` and no chat,
 * never loads lmdb (about 6 MB of resident memory). `onOpen` runs once it is open.
 */
export async function openHistoryWhenNeeded(opts: HistoryOptions, onOpen: (h: History) => void): Promise<History> {
  if (fs.existsSync(path.join(opts.dir, 'data.mdb'))) {
    const h = await openHistory(opts);
    onOpen(h);
    return h;
  }
  // Fail at start, not at first use, when the directory cannot be made or written.
  fs.mkdirSync(opts.dir, { recursive: true });
  fs.accessSync(opts.dir, fs.constants.W_OK);
  let inner: History | undefined;
  let failed: Error | undefined;
  let closed = false;
  const get = (): History => {
    if (closed) throw new Error('the history store is closed');
    if (failed) throw failed;
    if (!inner) {
      try {
        inner = openHistorySync(opts);
      } catch (e) {
        // Remembered: a store that cannot open (say, no lmdb build for this machine) will not
        // open on the next request either, and each try would cost a synchronous open.
        failed = new Error(`the history store in ${opts.dir} could not be opened: ${(e as Error).message}`);
        throw failed;
      }
      onOpen(inner);
      // Nothing old to prune in a store that did not exist at start; the store's own timer
      // keeps pruning from here on.
    }
    return inner;
  };
  return new Proxy({} as History, {
    get(_target, prop) {
      // Not History members: `then` is looked up when a promise resolves to this object.
      if (typeof prop === 'symbol' || prop === 'then') return undefined;
      if (prop === 'dir') return opts.dir;
      if (prop === 'close') {
        return async () => {
          closed = true;
          await inner?.close();
        };
      }
      const h = get();
      const v = (h as unknown as Record<PropertyKey, unknown>)[prop];
      return typeof v === 'function' ? v.bind(h) : v;
    },
  });
}
