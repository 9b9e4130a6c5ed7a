import type crypto from 'node:crypto';
import { createRequire } from 'node:module';

let loaded: typeof crypto | undefined;

/**
 * node:crypto, loaded on first use. Loading it costs about 2 MiB of resident memory, and a
 * gateway used only through its API, without keys, needs it for nothing (ids of stored
 * conversations, conversation affinity between several nodes, key checks, the chat's sessions).
 */
export const nodeCrypto = (): typeof crypto => (loaded ??= createRequire(import.meta.url)('node:crypto') as typeof crypto);
