import type { Balancer } from '../../cluster/balancer.ts';
import type { ModelRoutes } from '../../cluster/model-routes.ts';
import { ApiError } from './errors.ts';
import { sendError, sendJson, type ApiRouter } from './http.ts';

const CREATED = Math.floor(Date.now() / 1000);

const entry = (id: string) => ({ id, object: 'model' as const, created: CREATED, owned_by: 'hearth' });

/** GET /v1/models and /v1/models/{id}: the union of the models the usable nodes serve now. */
export function addModelRoutes(router: ApiRouter, balancer: Balancer, routes?: ModelRoutes): void {
  /** Served model ids plus the aliases that point at one of them. */
  const listed = () => {
    const served = balancer.models();
    return [...served, ...(routes?.visibleAliases(served) ?? [])].sort();
  };
  router.get('/v1/models', ({ outgoing }) => sendJson(outgoing, 200, { object: 'list', data: listed().map(entry) }));
  // Model ids are often file paths (llama-server names a model by its -m path): match slashes too.
  router.get('/v1/models/*id', ({ outgoing, params: { id } }) => {
    const models = listed();
    if (models.includes(id)) return sendJson(outgoing, 200, entry(id));
    sendError(
      outgoing,
      new ApiError(404, `The model '${id}' does not exist. Available: ${models.join(', ') || '(none: no node is up)'}`, 'invalid_request_error', 'model_not_found', 'model'),
    );
  });
}
