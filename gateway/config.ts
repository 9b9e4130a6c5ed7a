import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { NODE_KINDS, splitNodeUrl, type NodeKind } from '../cluster/node.ts';
import { SETTINGS, SETTING_BY_KEY, type Setting } from './config-schema.ts';

export interface StaticNode {
  url: string;
  api_key?: string;
  name?: string;
  kind?: NodeKind;
}

export interface Config {
  host: string;
  port: number;
  data: string;
  api_keys: string[];
  nodes: StaticNode[];
  log: 'silent' | 'error' | 'info' | 'debug';
  limits: { body_bytes: number };
  timeouts: { connect_ms: number; first_byte_ms: number; stall_ms: number };
  routing: {
    retries: number;
    policy: 'hearth' | 'round-robin' | 'least-connections';
    affinity: boolean;
    breaker_failures: number;
    breaker_cooldown_ms: number;
    aliases: Record<string, string>;
    fallbacks: Record<string, string[]>;
    queue_size: number;
    queue_wait_ms: number;
    affinity_margin: number;
  };
  probe: { interval_ms: number; timeout_ms: number; max_failures: number };
  discovery: { enabled: boolean; service_types: string[]; interfaces: string[]; probe_hosts: boolean; exo: boolean; advertise: boolean; name: string };
  history: { max_bytes: number; retention_days: number };
  chat: { enabled: boolean; password: string; session_days: number };
}

export class ConfigError extends Error {}


/** A value from the file (typed) or from the environment/flags (text), checked against its setting. */
function coerce(s: Setting, raw: unknown, from: string): unknown {
  const bad = (allowed: string) =>
    new ConfigError(`${from}: invalid value ${JSON.stringify(raw)} for "${s.key}": ${allowed}`);
  const ty = s.type;
  switch (ty.t) {
    case 'string':
      if (typeof raw !== 'string' || (!ty.allowEmpty && raw === '')) throw bad('expected a non-empty string');
      return raw;
    case 'int': {
      const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < ty.min || n > ty.max) {
        throw bad(`expected a whole number from ${ty.min} to ${ty.max}`);
      }
      return n;
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1' || raw === 'yes') return true;
      if (raw === 'false' || raw === '0' || raw === 'no') return false;
      throw bad('expected true or false');
    case 'enum':
      if (typeof raw !== 'string' || !ty.values.includes(raw)) throw bad(`expected one of ${ty.values.join(', ')}`);
      return raw;
    case 'strings': {
      const list = typeof raw === 'string' ? raw.split(',').map((x) => x.trim()).filter(Boolean) : raw;
      if (!Array.isArray(list) || !list.every((x) => typeof x === 'string' && x !== '')) throw bad('expected a list of strings');
      return list;
    }
    case 'map': {
      if (!isTable(raw) || !Object.values(raw).every((v) => typeof v === 'string' && v)) throw bad('expected a table of name = "model id"');
      return { ...raw };
    }
    case 'chains': {
      if (!isTable(raw) || !Object.values(raw).every((v) => Array.isArray(v) && v.every((x) => typeof x === 'string' && x))) {
        throw bad('expected a table of model = ["fallback", ...]');
      }
      return { ...raw };
    }
    case 'nodes': {
      const list = typeof raw === 'string' ? raw.split(',').map((url) => ({ url: url.trim() })).filter((n) => n.url) : raw;
      if (!Array.isArray(list)) throw bad('expected a list of [[nodes]] tables or URLs');
      return list.map((n, i) => checkNode(typeof n === 'string' ? { url: n } : n, `${from}: nodes[${i}]`));
    }
  }
}

function checkNode(n: unknown, where: string): StaticNode {
  if (!isTable(n)) throw new ConfigError(`${where}: expected a table with a "url"`);
  for (const k of Object.keys(n)) {
    if (!['url', 'api_key', 'name', 'kind'].includes(k)) {
      throw new ConfigError(`${where}: unknown key "${k}"; allowed: url, api_key, name, kind`);
    }
  }
  if (typeof n.url !== 'string') throw new ConfigError(`${where}: "url" is required, e.g. "http://10.0.0.5:8080"`);
  try {
    splitNodeUrl(n.url);
  } catch {
    throw new ConfigError(`${where}: invalid "url" ${JSON.stringify(n.url)}: expected an http(s) URL such as http://10.0.0.5:8080`);
  }
  for (const k of ['api_key', 'name'] as const) {
    if (n[k] !== undefined && (typeof n[k] !== 'string' || n[k] === '')) throw new ConfigError(`${where}: "${k}" must be a non-empty string`);
  }
  // Sent in a header: a pasted key with a trailing newline would break every request to the node.
  if (typeof n.api_key === 'string' && /[\x00-\x1f\x7f]/.test(n.api_key)) throw new ConfigError(`${where}: "api_key" holds a control character (a line break?)`);
  if (n.kind !== undefined && !(NODE_KINDS as readonly unknown[]).includes(n.kind)) {
    throw new ConfigError(`${where}: invalid "kind" ${JSON.stringify(n.kind)}: expected one of ${NODE_KINDS.join(', ')}`);
  }
  return n as unknown as StaticNode;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Flatten a parsed TOML document to dotted setting keys, rejecting anything unknown. */
function flattenFile(doc: Record<string, unknown>, file: string): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix + k;
      if (SETTING_BY_KEY.has(key)) out.set(key, v);
      else if (isTable(v) && [...SETTING_BY_KEY.keys()].some((s) => s.startsWith(key + '.'))) walk(v, key + '.');
      else {
        const near = [...SETTING_BY_KEY.keys()].filter((s) => s.startsWith(prefix)).join(', ');
        throw new ConfigError(`${file}: unknown key "${key}"; allowed here: ${near || [...SETTING_BY_KEY.keys()].join(', ')}`);
      }
    }
  };
  walk(doc, '');
  return out;
}

/** `HEARTH_TIMEOUTS_STALL_MS` -> `timeouts.stall_ms`. `HEARTH_CONFIG` names the file. */
export function envKeyFor(key: string): string {
  return 'HEARTH_' + key.replace(/\./g, '_').toUpperCase();
}

function fromEnv(env: NodeJS.ProcessEnv): Map<string, string> {
  const byEnv = new Map(SETTINGS.map((s) => [envKeyFor(s.key), s.key]));
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('HEARTH_') || name === 'HEARTH_CONFIG' || value === undefined) continue;
    const key = byEnv.get(name);
    if (!key) throw new ConfigError(`environment: unknown variable ${name}; allowed: HEARTH_CONFIG, ${[...byEnv.keys()].join(', ')}`);
    out.set(key, value);
  }
  return out;
}

export interface ConfigSources {
  /** Path of a TOML config file. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Settings from command-line flags, by dotted key, already as values or text. */
  flags?: Map<string, unknown>;
}

/** Embedded defaults, then the file, then `HEARTH_*` variables, then flags: each overrides the one before. */
export function loadConfig(src: ConfigSources = {}): Config {
  const values = new Map<string, unknown>(SETTINGS.map((s) => [s.key, structuredClone(s.default)]));
  const layer = (entries: Map<string, unknown>, from: string) => {
    for (const [key, raw] of entries) values.set(key, coerce(SETTING_BY_KEY.get(key)!, raw, from));
  };
  const file = src.file ?? src.env?.HEARTH_CONFIG;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    let doc: Record<string, unknown>;
    try {
      doc = parseToml(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${file}: not valid TOML: ${(e as Error).message}`);
    }
    layer(flattenFile(doc, file), file);
  }
  if (src.env) layer(fromEnv(src.env), 'environment');
  if (src.flags) layer(src.flags, 'command line');

  const cfg: Record<string, any> = {};
  for (const [key, v] of values) {
    const parts = key.split('.');
    let o = cfg;
    for (const p of parts.slice(0, -1)) o = o[p] ??= {};
    o[parts.at(-1)!] = v;
  }
  return cfg as Config;
}
