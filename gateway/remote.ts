import type { Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';

/** The TCP peer of a request (no proxy headers are trusted: Hearth is the front door). */
export function remoteAddress(c: Context): string | undefined {
  return (c.env as HttpBindings | undefined)?.incoming?.socket?.remoteAddress;
}
