import { Hono } from 'hono';
import type { Balancer } from '../../cluster/balancer.ts';
import type { ModelRoutes } from '../../cluster/model-routes.ts';
import { ApiError, errorResponse } from './errors.ts';

const CREATED = Math.floor(Date.now() / 1000);

const entry = (id: string) => ({ id, object: 'model' as const, created: CREATED, owned_by: 'hearth' });

/** GET /models and /models/{id}: the union of the models the usable nodes serve now. */
export function modelRoutes(balancer: Balancer, routes?: ModelRoutes): Hono {
  const app = new Hono();
  /** Served model ids plus the aliases that point at one of them. */
  const listed = () => {
    const served = balancer.models();
    return [...served, ...(routes?.visibleAliases(served) ?? [])].sort();
  };
  app.get('/models', (c) => c.json({ object: 'list', data: listed().map(entry) }));
  // Model ids are often file paths (llama-server names a model by its -m path): match slashes too.
  app.get('/models/:id{.+}', (c) => {
    const id = c.req.param('id');
    const models = listed();
    if (models.includes(id)) return c.json(entry(id));
    return errorResponse(
      c,
      new ApiError(404, `The model '${id}' does not exist. Available: ${models.join(', ') || '(none: no node is up)'}`, 'invalid_request_error', 'model_not_found', 'model'),
    );
  });
  return app;
}
