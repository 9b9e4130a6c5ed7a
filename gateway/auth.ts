import { nodeCrypto } from '../cluster/crypto.ts';
import { ApiError } from './api/errors.ts';
import { isPrivateAddress } from '../cluster/discovery/addresses.ts';

const digest = (s: string) => nodeCrypto().createHash('sha256').update(s).digest();

/** Checks a presented key against every configured key in constant time. */
export function keyChecker(keys: readonly string[]): (presented: string) => boolean {
  // Comparing fixed-length digests keeps the time independent of both content and length.
  const wanted = keys.map(digest);
  return (presented) => {
    const got = digest(presented);
    let ok = false;
    for (const w of wanted) ok = nodeCrypto().timingSafeEqual(w, got) || ok;
    return ok;
  };
}

/**
 * API access: with keys configured, `Authorization: Bearer KEY` is required; with none, only
 * clients on loopback and private networks are served, so Hearth is never an open relay.
 * Returns the error to answer with, or undefined to serve the request.
 */
export function apiAccess(keys: readonly string[]): (remoteAddress: string | undefined, authorization: string | undefined) => ApiError | undefined {
  const check = keyChecker(keys);
  return (remoteAddress, authorization) => {
    if (keys.length === 0) {
      if (isPrivateAddress(remoteAddress)) return undefined;
      return new ApiError(
        403,
        'Hearth serves clients outside the local network only with an API key. Add one under `api_keys` in the config file (or HEARTH_API_KEYS) and send it as `Authorization: Bearer KEY`.',
        'permission_error',
        'not_local',
      );
    }
    const m = /^Bearer\s+(.+)$/i.exec((authorization ?? '').trim());
    if (m && check(m[1])) return undefined;
    return new ApiError(401, m ? 'Incorrect API key provided.' : 'Missing API key: send `Authorization: Bearer KEY`.', 'invalid_request_error', 'invalid_api_key');
  };
}
