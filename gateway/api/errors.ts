import { ClusterError } from '../../cluster/errors.ts';

/** OpenAI's error object: `{"error":{"message","type","code","param"}}`. */
export interface ApiErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

export const badRequest = (message: string, param: string | null = null, code = 'invalid_value') =>
  new ApiError(400, message, 'invalid_request_error', code, param);

/** What the cluster's failure means to an API client. */
export function fromClusterError(e: ClusterError): ApiError {
  switch (e.kind) {
    case 'unknown_model':
      return new ApiError(404, e.message, 'invalid_request_error', 'model_not_found', 'model');
    case 'no_capacity': {
      const retry = String(Math.max(1, Math.ceil(e.extra.retryAfterS ?? 1)));
      return e.extra.busy
        ? new ApiError(429, e.message, 'rate_limit_error', 'nodes_busy', null, { 'retry-after': retry })
        : new ApiError(503, e.message, 'server_error', 'no_node_available', null, { 'retry-after': retry });
    }
    case 'timeout':
      return new ApiError(504, e.message, 'server_error', 'upstream_timeout');
    case 'rejected': {
      const status = e.extra.status ?? 400;
      const err = nodeError(e.extra.body ?? Buffer.alloc(0));
      return new ApiError(status, err.message ?? e.message, err.type ?? 'invalid_request_error', err.code ?? 'rejected_by_node', err.param ?? null);
    }
    case 'aborted':
      return new ApiError(400, e.message, 'invalid_request_error', 'client_closed');
    case 'upstream':
    default:
      return new ApiError(502, e.message, 'server_error', 'upstream_error');
  }
}

/** The message, type, code and param a node put in its error body, whatever its dialect. */
function nodeError(body: Buffer): { message?: string; type?: string; code?: string; param?: string } {
  const text = body.toString('utf8');
  let j: any;
  try {
    j = JSON.parse(text);
  } catch {
    return { message: text.slice(0, 500) || undefined };
  }
  const e = typeof j?.error === 'object' && j.error ? j.error : j;
  const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
  return {
    message: str(e?.message) ?? str(j?.error) ?? str(j?.detail),
    type: str(e?.type),
    code: str(e?.code),
    param: str(e?.param),
  };
}
