import type { IncomingMessage } from 'node:http';
import { ApiError, badRequest } from './errors.ts';

const tooLarge = (limit: number) =>
  new ApiError(413, `The request body is larger than ${limit} bytes (limits.body_bytes).`, 'invalid_request_error', 'request_too_large');

/** The request's JSON body. Throws ApiError 413 past `limit` and 400 for anything that is not JSON. */
export async function readJson(incoming: IncomingMessage, limit: number): Promise<unknown> {
  return (await readJsonWithBytes(incoming, limit)).value;
}

/**
 * As readJson, with the bytes as received (so that an unchanged body can be forwarded as is).
 * Past the limit it stops keeping bytes; the 413 answer (sendJson) takes in the rest, within
 * bounds, so the client reads the answer.
 */
export async function readJsonWithBytes(incoming: IncomingMessage, limit: number): Promise<{ value: unknown; bytes: Buffer }> {
  const declared = incoming.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge(limit);
  const body = await new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let over = false;
    incoming.on('data', (part: Buffer) => {
      if (over) return;
      size += part.length;
      if (size <= limit) return void parts.push(part);
      over = true;
      parts.length = 0;
      reject(tooLarge(limit));
    });
    incoming.on('end', () => resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts)));
    incoming.on('error', reject);
  });
  try {
    return { value: JSON.parse(body.toString('utf8')), bytes: body };
  } catch {
    throw badRequest('The request body is not valid JSON.', null, 'invalid_json');
  }
}
