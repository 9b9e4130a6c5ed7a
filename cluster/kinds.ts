import type { NodeHealth, NodeKind, NodeLoad } from './node.ts';
import { probeGet } from './probe-http.ts';

/** What one look at a server tells: its kind, whether it can serve, what, and how busy it is. */
export interface ProbeResult {
  kind: NodeKind;
  health: NodeHealth;
  models: string[];
  load?: NodeLoad;
  /** A stable id the server reports about itself (exo: the cluster), used to de-duplicate. */
  identity?: string;
  /** exo: IPv4 addresses of the other machines of the same cluster (from `/state`). */
  peers?: string[];
}

export interface ProbeOptions {
  timeoutMs?: number;
  apiKey?: string;
  apiPath?: string;
  hint?: NodeKind;
  signal?: AbortSignal;
}

interface Got {
  status: number;
  body: unknown;
  text: string;
}

async function get(url: string, o: ProbeOptions): Promise<Got | null> {
  const got = await probeGet(url, { timeoutMs: o.timeoutMs ?? 2000, signal: o.signal, headers: o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : undefined });
  if (!got) return null;
  let body: unknown;
  try {
    body = JSON.parse(got.text);
  } catch {
    body = undefined;
  }
  return { status: got.status, body, text: got.text };
}

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

function openAiModelIds(g: Got | null): string[] | null {
  if (!g || g.status !== 200 || !isObj(g.body) || !Array.isArray(g.body.data)) return null;
  return g.body.data.map((m: any) => m?.id).filter((id: unknown): id is string => typeof id === 'string');
}

/** llama-server answers 503 "Loading model" on every endpoint until the model is loaded. */
function isLoading(g: Got | null): boolean {
  return !!g && g.status === 503 && /loading/i.test(g.text);
}

/**
 * Classify what answers at `baseUrl`. Kind-specific endpoints are asked together (one round
 * trip of short time-outs per host); `null` when nothing OpenAI-compatible answers.
 */
export async function detectNode(baseUrl: string, o: ProbeOptions = {}): Promise<ProbeResult | null> {
  if (o.hint) {
    const r = await pollKind(o.hint, baseUrl, o).catch(() => null);
    if (r && r.health !== 'down') return r;
  }
  const [health, nodeId, ollama, lmstudio, models] = await Promise.all([
    get(`${baseUrl}/health`, o),
    get(`${baseUrl}/node_id`, o),
    get(`${baseUrl}/api/version`, o),
    get(`${baseUrl}/api/v0/models`, o),
    get(`${baseUrl}${o.apiPath ?? '/v1'}/models`, o),
  ]);
  if (!health && !nodeId && !ollama && !lmstudio && !models) return null;
  if (nodeId?.status === 200 && typeof nodeId.body === 'string') return pollKind('exo', baseUrl, o);
  if (ollama?.status === 200 && isObj(ollama.body) && typeof ollama.body.version === 'string') return pollKind('ollama', baseUrl, o);
  if (isLoading(health)) return { kind: 'llama.cpp', health: 'loading', models: [] };
  if (health?.status === 200 && isObj(health.body) && health.body.status === 'ok') {
    const props = await get(`${baseUrl}/props`, o);
    if (props?.status === 200 && isObj(props.body) && ('total_slots' in props.body || 'build_info' in props.body)) {
      return pollKind('llama.cpp', baseUrl, o);
    }
  }
  if (lmstudio?.status === 200 && isObj(lmstudio.body) && Array.isArray(lmstudio.body.data)) return pollKind('lmstudio', baseUrl, o);
  const ids = openAiModelIds(models);
  if (ids) return { kind: 'openai', health: 'up', models: ids };
  return null;
}

/** Read a node of a known kind: health, servable models and, where it tells, its load. */
export async function pollKind(kind: NodeKind, baseUrl: string, o: ProbeOptions = {}): Promise<ProbeResult> {
  const apiPath = o.apiPath ?? '/v1';
  switch (kind) {
    case 'llama.cpp': {
      const health = await get(`${baseUrl}/health`, o);
      if (isLoading(health)) return { kind, health: 'loading', models: [] };
      if (!health || health.status !== 200) return { kind, health: 'down', models: [] };
      const [models, load] = await Promise.all([get(`${baseUrl}${apiPath}/models`, o), readLlamaLoad(baseUrl, o)]);
      const ids = openAiModelIds(models);
      return { kind, health: ids ? 'up' : 'down', models: ids ?? [], load };
    }
    case 'exo': {
      const [nodeId, ps, state] = await Promise.all([
        get(`${baseUrl}/node_id`, o),
        get(`${baseUrl}/ollama/api/ps`, o),
        get(`${baseUrl}/state`, o),
      ]);
      if (!nodeId || nodeId.status !== 200) return { kind, health: 'down', models: [] };
      // What runs now, not exo's catalogue from /v1/models.
      const running = isObj(ps?.body) && Array.isArray(ps.body.models) ? ps.body.models : [];
      const models = [...new Set(running.map((m: any) => m?.model ?? m?.name).filter((m: unknown) => typeof m === 'string'))] as string[];
      const { identity, peers } = exoClusterOf(state?.body, nodeId.body);
      return { kind, health: 'up', models, identity, peers };
    }
    case 'ollama': {
      const tags = await get(`${baseUrl}/api/tags`, o);
      if (!tags || tags.status !== 200 || !isObj(tags.body)) return { kind, health: 'down', models: [] };
      // Ollama loads installed models on demand, so every installed model is servable.
      const list = Array.isArray(tags.body.models) ? tags.body.models : [];
      return { kind, health: 'up', models: list.map((m: any) => m?.model ?? m?.name).filter((m: unknown) => typeof m === 'string') };
    }
    case 'lmstudio':
    case 'openai': {
      const ids = openAiModelIds(await get(`${baseUrl}${apiPath}/models`, o));
      return { kind, health: ids ? 'up' : 'down', models: ids ?? [] };
    }
  }
}

/** Busy slots and llama-server's own queue: `/metrics` when enabled, else `/slots`. */
async function readLlamaLoad(baseUrl: string, o: ProbeOptions): Promise<NodeLoad | undefined> {
  const metrics = await get(`${baseUrl}/metrics`, o);
  if (metrics?.status === 200) {
    const num = (name: string) => {
      const m = new RegExp(`^llamacpp:${name}\\s+([0-9.eE+-]+)`, 'm').exec(metrics.text);
      return m ? Number(m[1]) : undefined;
    };
    const busy = num('requests_processing');
    if (busy !== undefined) {
      const slots = await get(`${baseUrl}/props`, o);
      const total = isObj(slots?.body) && typeof slots.body.total_slots === 'number' ? slots.body.total_slots : undefined;
      return { busy, deferred: num('requests_deferred'), slots: total, at: Date.now() };
    }
  }
  const slots = await get(`${baseUrl}/slots`, o);
  if (slots?.status === 200 && Array.isArray(slots.body)) {
    // Only counts leave this function: /slots holds prompts and must never reach a client.
    return { slots: slots.body.length, busy: slots.body.filter((s: any) => s?.is_processing).length, at: Date.now() };
  }
  return undefined;
}

function exoClusterOf(state: unknown, nodeId: unknown): { identity?: string; peers?: string[] } {
  const ids = new Set<string>();
  if (typeof nodeId === 'string') ids.add(nodeId);
  const peers = new Set<string>();
  const topo = isObj(state) ? state.topology : undefined;
  const nodes: unknown = isObj(topo) ? topo.nodes : undefined;
  const visit = (n: any, key?: string) => {
    const id = n?.nodeId ?? n?.node_id ?? n?.id ?? key;
    if (typeof id === 'string') ids.add(id);
    JSON.stringify(n ?? null, (_k, v) => {
      if (typeof v === 'string' && /^\d{1,3}(\.\d{1,3}){3}$/.test(v)) peers.add(v);
      return v;
    });
  };
  if (Array.isArray(nodes)) nodes.forEach((n) => visit(n));
  else if (isObj(nodes)) for (const [k, n] of Object.entries(nodes)) visit(n, k);
  // Every node of a cluster reports the same topology, so its smallest node id names the cluster.
  const identity = ids.size ? `exo:${[...ids].sort()[0]}` : undefined;
  return { identity, peers: peers.size ? [...peers] : undefined };
}
