/** What the cluster knows about one inference backend (a server, or a whole exo cluster). */

export const NODE_KINDS = ['llama.cpp', 'exo', 'ollama', 'lmstudio', 'openai'] as const;
export type NodeKind = (typeof NODE_KINDS)[number];

/** Where a node was learned. A node can be known from several sources at once. */
export type NodeSource = 'static' | 'mdns' | 'probe' | 'exo' | 'agent';

/** `loading`: answers but cannot serve yet (llama-server 503); known, never routed to. */
export type NodeHealth = 'unknown' | 'up' | 'loading' | 'down';

export interface NodeLoad {
  /** Slots the node has in all (llama-server `total_slots`), when it says. */
  slots?: number;
  /** Slots busy according to the node itself (`/slots`, `/metrics`). */
  busy?: number;
  /** Requests waiting inside the node's own queue (llama-server `requests_deferred`). */
  deferred?: number;
  /** When these figures were read (ms since epoch). */
  at: number;
}

export interface NodeInfo {
  /** Stable identity: the same machine found twice (mDNS, probing, static) is one node. */
  id: string;
  /** Human-readable name (mDNS instance name, configured name, or host:port). */
  name: string;
  kind: NodeKind;
  /** Origin of the server, e.g. `http://10.0.0.5:8080`; no trailing slash, no `/v1`. */
  baseUrl: string;
  /** Path prefix of the OpenAI-compatible API on that origin, normally `/v1`. */
  apiPath: string;
  /** Sent as `Authorization: Bearer` to the node; never shown to clients. */
  apiKey?: string;
  /** Model ids the node can serve now (exo: running instances, not the catalogue). */
  models: string[];
  health: NodeHealth;
  load?: NodeLoad;
  sources: NodeSource[];
  /** Last time any source confirmed the node (ms since epoch). */
  lastSeen: number;
  /** Consecutive failed probes; the registry drops discovered nodes past a limit. */
  failedProbes: number;
  /** The kind is a guess (a configured node without `kind`): the next probe classifies it. */
  kindUnconfirmed?: boolean;
}

/** A node is usable when it answered its last probe and is not loading. */
export function isUsable(node: NodeInfo): boolean {
  return node.health === 'up';
}

/** `http://host:8080/v1/` -> `{ baseUrl: 'http://host:8080', apiPath: '/v1' }`. */
export function splitNodeUrl(url: string): { baseUrl: string; apiPath: string } {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`node URL must be http(s): ${url}`);
  let path = u.pathname.replace(/\/+$/, '');
  if (path === '') path = '/v1';
  return { baseUrl: `${u.protocol}//${u.host}`, apiPath: path };
}
