import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Balancer } from '../../cluster/balancer.ts';
import type { Dispatcher } from '../../cluster/dispatch.ts';
import type { ModelRoutes } from '../../cluster/model-routes.ts';
import type { History } from '../history/store.ts';
import { apiAccess } from '../auth.ts';
import type { Logger } from '../log.ts';
import { completionHandler } from './completions.ts';
import { ApiError } from './errors.ts';
import { ApiRouter, sendError, sendJson, splitTarget } from './http.ts';
import { addModelRoutes } from './models.ts';
import { addStoredCompletionRoutes, storeObserver } from './stored-completions.ts';

export interface ApiDeps {
  balancer: Balancer;
  dispatcher: Dispatcher;
  routes: ModelRoutes;
  history: History;
  apiKeys: readonly string[];
  bodyLimit: number;
  /** At least one node is usable (GET /readyz). */
  ready: () => boolean;
  log: Logger;
}

export interface Api {
  /** Serves the request if it is the API's (/v1 and below, /healthz, /readyz); false if not. */
  serve(incoming: IncomingMessage, outgoing: ServerResponse): boolean;
}

/** The OpenAI-compatible API at /v1, plus /healthz and /readyz (no auth, no node details). */
export function createApi(deps: ApiDeps): Api {
  const probes = new ApiRouter();
  probes.get('/healthz', ({ outgoing }) => sendJson(outgoing, 200, { status: 'ok' }));
  probes.get('/readyz', ({ outgoing }) => {
    const ready = deps.ready();
    sendJson(outgoing, ready ? 200 : 503, { status: ready ? 'ready' : 'no node usable' });
  });

  const v1 = new ApiRouter();
  addModelRoutes(v1, deps.balancer, deps.routes);
  addStoredCompletionRoutes(v1, deps.history, { bodyLimit: deps.bodyLimit });
  const completions = {
    dispatcher: deps.dispatcher,
    bodyLimit: deps.bodyLimit,
    observe: storeObserver(deps.history, { onError: (e) => deps.log.error(`history: ${(e as Error).message}`) }),
  };
  v1.post('/v1/chat/completions', completionHandler('chat', completions));
  v1.post('/v1/completions', completionHandler('completions', completions));
  v1.post('/v1/embeddings', completionHandler('embeddings', completions));
  const access = apiAccess(deps.apiKeys);

  return {
    serve(incoming, outgoing) {
      const target = splitTarget(incoming.url ?? '/');
      const { path } = target;
      const probe = path === '/healthz' || path === '/readyz';
      if (!probe && path !== '/v1' && !path.startsWith('/v1/')) return false;
      const onError = (e: unknown) => {
        deps.log.error(`${incoming.method} ${path}: ${(e as Error)?.stack ?? e}`);
        if (outgoing.headersSent) return void outgoing.destroy();
        sendError(outgoing, new ApiError(500, 'Hearth hit an internal error; the log has the details.', 'server_error', 'internal_error'));
      };
      try {
        if (probe) probes.handle(incoming, outgoing, target, onError);
        else {
          const denied = access(incoming.socket.remoteAddress, incoming.headers.authorization);
          if (denied) sendError(outgoing, denied);
          else v1.handle(incoming, outgoing, target, onError);
        }
      } catch (e) {
        onError(e);
      }
      return true;
    },
  };
}
