/**
 * Why the cluster could not answer. The gateway maps each kind to an HTTP status and an
 * OpenAI-shaped error; the cluster itself knows nothing of HTTP routes.
 */
export type ClusterErrorKind =
  | 'unknown_model' // no node serves it, nor ever did
  | 'no_capacity' // known model, but no node can take the request now
  | 'upstream' // nodes failed (reset, 5xx, malformed answer)
  | 'timeout' // nodes did not answer in time
  | 'rejected' // a node refused the request itself (4xx): the client's error, passed through
  | 'aborted'; // the client went away

export class ClusterError extends Error {
  constructor(
    readonly kind: ClusterErrorKind,
    message: string,
    readonly extra: {
      retryAfterS?: number;
      /** For `no_capacity`: nodes are up but full (429), rather than none up at all (503). */
      busy?: boolean;
      /** For `rejected`: the node's status and body, passed to the client as they are. */
      status?: number;
      body?: Buffer;
      /** For `unknown_model`: what can be served instead. */
      available?: string[];
    } = {},
  ) {
    super(message);
  }
}

/** A streamed answer that broke after its first byte reached the client. */
export class StreamBrokenError extends Error {
  constructor(
    /** `client_stalled`: the client stopped reading; nothing is wrong with the node. */
    readonly reason: 'reset' | 'malformed' | 'stall' | 'no_done' | 'upstream_error' | 'client_stalled',
    message: string,
  ) {
    super(message);
  }
}
