import type { ProbeResult } from '../kinds.ts';

/** One TXT string (`key=value`) holds at most 255 bytes (RFC 6763 6.1). */
const MAX_TXT_BYTES = 255;

/**
 * Comma-joined ids that fit in `maxBytes` (UTF-8). Whole ids only: a cut id would name a model
 * that does not exist. Ids containing a comma cannot be listed and are left out.
 */
export function fitList(ids: string[], maxBytes: number): string {
  let out = '';
  for (const id of ids) {
    if (!id || id.includes(',')) continue;
    const next = out ? `${out},${id}` : id;
    if (Buffer.byteLength(next) > maxBytes) break;
    out = next;
  }
  return out;
}

/** The TXT records of an agent-run node. Never holds anything secret: the whole LAN reads it. */
export function nodeTxt(probe: Pick<ProbeResult, 'kind' | 'models'>, apiPath = '/v1'): Record<string, string> {
  return {
    path: apiPath,
    kind: probe.kind,
    models: fitList(probe.models, MAX_TXT_BYTES - 'models='.length),
    agent: 'hearth',
    version: '1',
  };
}
