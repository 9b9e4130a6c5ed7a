import { badRequest } from './errors.ts';

export type Endpoint = 'chat' | 'completions' | 'embeddings';

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const MAX_MESSAGES = 10_000;

/**
 * Checks what the gateway itself relies on (model, messages/prompt/input, sizes, stream);
 * every other field passes through to the node untouched.
 */
export function validateBody(endpoint: Endpoint, body: unknown): { model: string; stream: boolean } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badRequest('The request body must be a JSON object.', null, 'invalid_json');
  }
  const b = body as Record<string, unknown>;
  if (typeof b.model !== 'string' || b.model.trim() === '') {
    throw badRequest("'model' is required: a string naming one of the models from GET /v1/models.", 'model', 'missing_required_parameter');
  }
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw badRequest("'stream' must be true or false.", 'stream');
  for (const k of ['max_tokens', 'max_completion_tokens', 'n'] as const) {
    const v = b[k];
    if (v !== undefined && v !== null && (!Number.isInteger(v) || (v as number) < (k === 'n' ? 1 : 0))) {
      throw badRequest(`'${k}' must be a ${k === 'n' ? 'positive' : 'non-negative'} whole number.`, k);
    }
  }
  if (b.stream_options !== undefined && b.stream_options !== null && (typeof b.stream_options !== 'object' || Array.isArray(b.stream_options))) {
    throw badRequest("'stream_options' must be an object.", 'stream_options');
  }
  if (endpoint === 'chat') validateMessages(b.messages);
  if (endpoint === 'completions' && !isTextOrList(b.prompt)) {
    throw badRequest("'prompt' is required: a string or an array of strings.", 'prompt', 'missing_required_parameter');
  }
  if (endpoint === 'embeddings' && !isTextOrList(b.input) && !(Array.isArray(b.input) && b.input.length > 0)) {
    throw badRequest("'input' is required: a string or a non-empty array.", 'input', 'missing_required_parameter');
  }
  return { model: b.model, stream: b.stream === true && endpoint !== 'embeddings' };
}

function isTextOrList(v: unknown): boolean {
  return typeof v === 'string' || (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string'));
}

function validateMessages(messages: unknown): void {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw badRequest("'messages' is required: a non-empty array of {role, content}.", 'messages', 'missing_required_parameter');
  }
  if (messages.length > MAX_MESSAGES) throw badRequest(`'messages' holds more than ${MAX_MESSAGES} messages.`, 'messages');
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw badRequest(`'messages[${i}]' must be an object.`, `messages[${i}]`);
    const role = (m as Record<string, unknown>).role;
    if (typeof role !== 'string' || !ROLES.has(role)) {
      throw badRequest(`'messages[${i}].role' must be one of ${[...ROLES].join(', ')}.`, `messages[${i}].role`);
    }
    const content = (m as Record<string, unknown>).content;
    const ok = typeof content === 'string' || Array.isArray(content) || ((content === null || content === undefined) && (role === 'assistant' || role === 'tool'));
    if (!ok) throw badRequest(`'messages[${i}].content' must be a string or an array of content parts.`, `messages[${i}].content`);
  });
}
