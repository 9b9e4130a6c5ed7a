/**
 * Every setting Hearth has, in one table: its key in the config file, type, default and meaning.
 * The loader, the environment mapping and the README's reference are all derived from it.
 */
export type SettingType =
  | { t: 'string'; allowEmpty?: boolean }
  | { t: 'int'; min: number; max: number }
  | { t: 'bool' }
  | { t: 'enum'; values: readonly string[] }
  | { t: 'strings' }
  | { t: 'map' } // string -> string table
  | { t: 'chains' } // string -> list of strings table
  | { t: 'nodes' };

export interface Setting {
  key: string;
  type: SettingType;
  default: unknown;
  doc: string;
}

const int = (min: number, max: number) => ({ t: 'int', min, max }) as const;

export const SETTINGS: readonly Setting[] = [
  { key: 'host', type: { t: 'string' }, default: '0.0.0.0', doc: 'Address to listen on.' },
  { key: 'port', type: int(0, 65535), default: 8808, doc: 'Port to listen on (0 picks a free one).' },
  { key: 'data', type: { t: 'string' }, default: './data', doc: 'Folder where state lives (history database).' },
  {
    key: 'api_keys',
    type: { t: 'strings' },
    default: [],
    doc: 'Keys clients send as `Authorization: Bearer KEY`. With none, only loopback and private-network clients are served.',
  },
  {
    key: 'nodes',
    type: { t: 'nodes' },
    default: [],
    doc: 'Static nodes: `[[nodes]]` tables with `url` (e.g. `http://10.0.0.5:8080`, a trailing `/v1` accepted), optional `api_key`, `name`, `kind` (llama.cpp, exo, ollama, lmstudio, openai).',
  },
  { key: 'log', type: { t: 'enum', values: ['silent', 'error', 'info', 'debug'] }, default: 'info', doc: 'How much to log to stderr.' },
  { key: 'limits.body_bytes', type: int(1024, 256 * 1024 * 1024), default: 8 * 1024 * 1024, doc: 'Largest request body accepted (413 beyond).' },
  { key: 'timeouts.connect_ms', type: int(50, 600_000), default: 3000, doc: 'Connecting to a node.' },
  {
    key: 'timeouts.first_byte_ms',
    type: int(100, 3_600_000),
    default: 120_000,
    doc: 'From sending a request to the first byte of the answer (prompt processing of a long prompt on a slow node takes time).',
  },
  { key: 'timeouts.stall_ms', type: int(100, 3_600_000), default: 30_000, doc: 'Longest silence inside a streamed answer before it counts as stalled.' },
  { key: 'routing.retries', type: int(0, 10), default: 2, doc: 'Extra attempts on other nodes when a request fails before its first byte.' },
  { key: 'routing.aliases', type: { t: 'map' }, default: {}, doc: 'Short model names: `[routing.aliases]` `tiny = "/models/tiny-q4.gguf"`.' },
  {
    key: 'routing.fallbacks',
    type: { t: 'chains' },
    default: {},
    doc: 'Fallback chains used when a model fails or cannot be served: `[routing.fallbacks]` `big = ["medium", "small"]`.',
  },
  {
    key: 'routing.policy',
    type: { t: 'enum', values: ['hearth', 'round-robin', 'least-connections'] },
    default: 'hearth',
    doc: '`hearth` picks the node that should finish soonest (measured speed, slots, load, prompt cache); the others exist as baselines for comparison.',
  },
  { key: 'routing.affinity', type: { t: 'bool' }, default: true, doc: "Send a conversation's follow-up turns to the node that holds its prompt cache." },
  { key: 'routing.breaker_failures', type: int(1, 100), default: 3, doc: 'Failures in a row that open a node\'s circuit breaker.' },
  { key: 'routing.breaker_cooldown_ms', type: int(100, 600_000), default: 2000, doc: 'How long an open breaker waits before one trial request (doubles while the node keeps failing, up to 30 s).' },
  { key: 'routing.queue_size', type: int(0, 100_000), default: 64, doc: 'Requests that may wait in Hearth when every node for a model is full (429 beyond).' },
  { key: 'routing.queue_wait_ms', type: int(0, 600_000), default: 30_000, doc: 'Longest wait in that queue before a 429; a waiting request moves up the queue as it uses this up.' },
  {
    key: 'routing.affinity_margin',
    type: int(0, 1000),
    default: 1,
    doc: 'A follow-up turn stays on the node holding its prompt cache unless that node has this many more requests in flight than the best other node.',
  },
  { key: 'probe.interval_ms', type: int(100, 600_000), default: 2000, doc: 'How often every node is read (health, models, slots).' },
  { key: 'probe.timeout_ms', type: int(50, 60_000), default: 1500, doc: 'Time-out of one probe.' },
  { key: 'probe.max_failures', type: int(1, 1000), default: 3, doc: 'Failed probes in a row after which a discovered node is forgotten.' },
  { key: 'discovery.enabled', type: { t: 'bool' }, default: true, doc: 'Find nodes on the network (mDNS, probing, exo).' },
  {
    key: 'discovery.service_types',
    type: { t: 'strings' },
    default: ['_openai._tcp', '_llama._tcp', '_llamacpp._tcp', '_ollama._tcp', '_llm._tcp', '_lmstudio._tcp', '_vllm._tcp', '_hearth-node._tcp'],
    doc: 'DNS-SD service types to browse.',
  },
  {
    key: 'discovery.interfaces',
    type: { t: 'strings' },
    default: [],
    doc: 'Network interfaces (names or IPv4 addresses) for discovery; the first carries mDNS. Empty: the default route\'s.',
  },
  { key: 'discovery.probe_hosts', type: { t: 'bool' }, default: true, doc: 'Probe hosts seen on mDNS on the known ports.' },
  { key: 'discovery.exo', type: { t: 'bool' }, default: true, doc: "Listen for exo's discovery multicast." },
  { key: 'discovery.advertise', type: { t: 'bool' }, default: true, doc: 'Advertise Hearth itself (`_openai._tcp`, `_http._tcp`).' },
  { key: 'discovery.name', type: { t: 'string' }, default: 'Hearth', doc: 'Instance name in the advertisement.' },
  { key: 'history.max_bytes', type: int(0, Number.MAX_SAFE_INTEGER), default: 0, doc: 'Prune the oldest conversations beyond this size (0: no limit).' },
  { key: 'history.retention_days', type: int(0, 36500), default: 0, doc: 'Prune conversations older than this (0: keep forever).' },
  { key: 'chat.enabled', type: { t: 'bool' }, default: true, doc: 'Serve the zero-JavaScript chat page at `/`.' },
  { key: 'chat.password', type: { t: 'string', allowEmpty: true }, default: '', doc: 'Password for the chat page (empty: no login).' },
  { key: 'chat.session_days', type: int(1, 365), default: 30, doc: 'How long a chat login lasts.' },
];

export const SETTING_BY_KEY = new Map(SETTINGS.map((s) => [s.key, s]));
