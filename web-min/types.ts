import type { HttpBindings } from '@hono/node-server';
import type { Dispatcher } from '../cluster/dispatch.ts';
import type { History } from '../gateway/history/store.ts';
import type { RevokedStore } from '../gateway/chat-files.ts';
import type { Conversation } from '../gateway/history/types.ts';

export interface WebMinDeps {
  history: History;
  dispatcher: Dispatcher;
  /** Models some usable node serves now (Balancer.models). */
  models: () => string[];
  /** When set, every page but /login needs a session; when not, only private networks are served. */
  password?: string;
  /** Sessions last this many days. */
  sessionDays: number;
  /** Signs sessions and CSRF tokens; random per process when absent (sessions end at restart). */
  secret?: Buffer;
  /** Keeps logouts across restarts; in memory only when absent. */
  revoked?: RevokedStore;
}

export type WebEnv = {
  Bindings: HttpBindings;
  Variables: {
    /** The CSRF token for forms on this page. */
    csrf: string;
    /** A session exists (password mode): show the logout button. */
    loggedIn: boolean;
    /** The request's valid session id, if any (read once, by accessGuard). */
    session: string | undefined;
    /** On /c/:id routes: the conversation, loaded once for the route. */
    conv: Conversation;
  };
};
