/**
 * A simulated OpenAI-compatible inference node (llama-server by default; also exo, Ollama and
 * LM Studio flavours) for tests and benchmarks.
 *
 * Written on plain `node:http` so that its own overhead is tiny and it controls sockets exactly:
 * the benchmark measures a gateway against going direct to this node, so the node must never be
 * the bottleneck. Hot path notes:
 *  - one timer per stream at a time (never one per token); each tick writes every token that is
 *    due by now, so a late timer catches up instead of drifting;
 *  - unthrottled (`tokensPerSecond: 0`) streams write all chunks in a tight loop and only stop
 *    for socket backpressure (`drain`);
 *  - chunk JSON is built from a precomputed prefix/suffix around `JSON.stringify(token)`.
 *
 * Content is deterministic: token i of an answer depends only on the prompt (minus a trailing
 * assistant message) and i, so an answer continued from an assistant prefill (on this node or
 * another one) can be checked against `expectedAnswer()`.
 *
 * Usable as a module (`startSimNode`) and as a CLI (`npx tsx bench/sim-node.ts --help`).
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';

// ---------------------------------------------------------------------------------------------
// Public API

export interface SimFault {
  type:
    | '500'
    | '429'
    | 'reset-before-headers'
    | 'cut'
    | 'stall'
    | 'malformed'
    | 'no-done'
    | 'hang-before-headers'
    | '503-loading'
    | '400-context';
  /** for cut/stall/malformed/no-done: after how many content chunks (default 3) */
  afterChunks?: number;
  /** seconds, for 429 (header Retry-After) */
  retryAfter?: number;
  /** how many requests it affects, then it clears (default: forever) */
  times?: number;
}

export type SimNodeKind = 'llama.cpp' | 'openai' | 'exo' | 'ollama' | 'lmstudio';

export interface SimNodeOptions {
  /** default 127.0.0.1; wildcard addresses are refused (no traffic may leave the machine) */
  host?: string;
  /** default 0 (ephemeral) */
  port?: number;
  /** which extra endpoints it imitates; default 'llama.cpp' */
  kind?: SimNodeKind;
  /** default ['sim-model'] (for exo: the models with a running instance) */
  models?: string[];
  /** concurrent generations; default 4 */
  slots?: number;
  /** beyond slots: queue like llama-server (deferred) or 503; default 'queue' */
  overflow?: 'queue' | 'reject';
  /** decode speed per stream; 0 = unthrottled; default 1000 */
  tokensPerSecond?: number;
  /** time to first token; default 0 (plus prompt-length cost below) */
  ttftMs?: number;
  /** extra TTFT per 1000 chars of prompt (prompt processing); default 0 */
  promptMsPerKChar?: number;
  /** prompt cache like llama-server: only the part after the longest cached prefix pays; default true */
  cachePrompt?: boolean;
  /** answer length when max_tokens absent; default 200 */
  defaultTokens?: number;
  /** usage as its own chunk (with stream_options.include_usage) or on the finish chunk; default 'separate' */
  usageStyle?: 'separate' | 'finish';
  /** default '\n' */
  lineEnding?: '\n' | '\r\n';
  /** send SSE comment lines ": ping" during silent periods (ttft); 0 = never */
  pingEveryMs?: number;
  /** split each JSON event over two `data:` lines (valid SSE) */
  multiLineData?: boolean;
  /** open a chat stream with a role-only chunk, as llama-server and OpenAI do; default true */
  roleChunk?: boolean;
  /** multi-byte tokens, and writes that split a multi-byte UTF-8 sequence across two socket writes */
  splitUtf8?: boolean;
  /** like the real llama-server: send `Keep-Alive: timeout=5, max=100` but destroy the socket after each streamed reply */
  closeAfterStream?: boolean;
  /** when set, require `Authorization: Bearer <key>` */
  apiKey?: string;
  fault?: SimFault;
}

export interface SimRequestLog {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  /** The body exactly as received. */
  raw: string;
}

export interface SimStats {
  /** generations that got a slot */
  started: number;
  /** generations that ran to their normal end (including 'no-done' and 'malformed' faults) */
  completed: number;
  /** generations stopped because the client went away */
  aborted: number;
  /** generations ended by a 'cut' fault (socket destroyed by the node) */
  faulted: number;
  /** generations holding a slot now */
  active: number;
  maxActive: number;
  /** requests waiting for a slot now (llama-server's requests_deferred) */
  deferred: number;
}

export interface SimNode {
  /** http://HOST:PORT (no /v1) */
  url: string;
  port: number;
  /** live: tests may change speed etc. between requests */
  options: SimNodeOptions;
  setFault(f: SimFault | undefined): void;
  /** log of received requests (the last 1000) */
  requests: SimRequestLog[];
  stats: SimStats;
  /** Resolves true when no generation is active or waiting; false on timeout (default 5000 ms). */
  idle(timeoutMs?: number): Promise<boolean>;
  /** closes the server and destroys open sockets */
  close(): Promise<void>;
  /** abrupt: destroy every socket at once, stop listening (simulates a node dying) */
  kill(): void;
}

export interface ChatMessage {
  role: string;
  content?: unknown;
  [k: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Deterministic content

const ASCII_WORDS = [
  ' river', ' stone', ' lantern', ' meadow', ' copper', ' harbor', ' willow', ' ember', ' quiet',
  ' orbit', ' maple', ' signal', ' candle', ' valley', ' thread', ' garden', ' falcon', ' silver',
  ' window', ' forest', ' pebble', ' summit', ' breeze', ' anchor', ' marble', ' cedar', ' echo',
  ' hollow', ' prism', ' tide', ' basket', ' glacier', ' pilot', ' lattice', ' clover', ' dune',
  ' ribbon', ' spark', ' tunnel', ' amber', ' canyon', ' feather', ' island', ' jasper', ' kettle',
  ' lemon', ' mirror', ' needle', ' ocean', ' pepper', ' quartz', ' rocket', ' saddle', ' timber',
  ' umbra', ' velvet', ' walnut', ' yonder', ' zephyr', ' acorn', ' bridge', ' cobalt', ' delta',
  ' fable',
];
/** With splitUtf8 on, a quarter of the words carry 2-, 3- and 4-byte UTF-8 sequences. */
const UTF8_WORDS = [
  ...ASCII_WORDS.slice(0, 48),
  ' café', ' naïve', ' señor', ' über', ' crème', ' façade', ' 漢字', ' 東京', ' 水',
  ' 🙂', ' 🌊', ' 🔥', ' Ωmega', ' déjà', ' ☕', ' 𝄞',
];

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Text of an OpenAI message content (string or array of parts). */
function contentText(c: unknown): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    let s = '';
    for (const p of c) if (p && typeof p === 'object' && typeof (p as any).text === 'string') s += (p as any).text;
    return s;
  }
  return '';
}

/** Splits chat messages into the prompt part and a trailing assistant prefill (if any). */
function splitPrefill(messages: ChatMessage[]): { prompt: ChatMessage[]; prefill: string | undefined } {
  const last = messages[messages.length - 1];
  if (last && last.role === 'assistant') return { prompt: messages.slice(0, -1), prefill: contentText(last.content) };
  return { prompt: messages, prefill: undefined };
}

/** The key the answer depends on: the prompt text without a trailing assistant message. */
function answerKey(prompt: ChatMessage[] | string): string {
  if (typeof prompt === 'string') return 'p\u0000' + prompt;
  let s = 'm';
  for (const m of prompt) s += '\u0000' + String(m.role) + '\u0001' + contentText(m.content);
  return s;
}

class Answer {
  private readonly seed: number;
  private readonly words: string[];
  constructor(key: string, utf8: boolean) {
    this.seed = fnv1a(key);
    this.words = utf8 ? UTF8_WORDS : ASCII_WORDS;
  }
  token(i: number): string {
    return this.words[mix((this.seed + Math.imul(i + 1, 0x9e3779b9)) >>> 0) % this.words.length];
  }
  /** How many whole tokens the prefill holds (exact when the prefill is a prefix cut on a token boundary). */
  tokensIn(prefill: string): number {
    let acc = '';
    let k = 0;
    while (acc.length < prefill.length) {
      const t = this.token(k);
      if (!prefill.startsWith(t, acc.length)) break; // not our answer: continue after the matching part
      acc += t;
      k++;
    }
    return k;
  }
}

/**
 * The first `nTokens` tokens of the uninterrupted answer to `messages` (a trailing assistant
 * message is ignored, as the node does). A string is taken as a `/v1/completions` prompt.
 * Pass `{ splitUtf8: true }` for a node started with `splitUtf8` (its vocabulary is different).
 */
export function expectedAnswer(messages: ChatMessage[] | string, nTokens: number, opts?: { splitUtf8?: boolean }): string {
  const a = new Answer(answerKey(typeof messages === 'string' ? messages : splitPrefill(messages).prompt), !!opts?.splitUtf8);
  let s = '';
  for (let i = 0; i < nTokens; i++) s += a.token(i);
  return s;
}

/** Rendering used for prompt-cache accounting (a stand-in for a chat template). */
function renderChat(prompt: ChatMessage[]): string {
  let s = '';
  for (const m of prompt) s += `<|${String(m.role)}|>\n${contentText(m.content)}<|end|>\n`;
  return s + '<|assistant|>\n';
}

function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const EXO_CATALOGUE_EXTRA = [
  'mlx-community/Llama-3.2-1B-Instruct-4bit',
  'mlx-community/Qwen3-30B-A3B-4bit',
  'mlx-community/DeepSeek-V3.1-8bit',
  'mlx-community/gpt-oss-120b-MXFP4-Q8',
];

let idCounter = 0;
function newId(prefix: string): string {
  idCounter = (idCounter + 1) >>> 0;
  return prefix + (Date.now().toString(36) + idCounter.toString(36) + Math.random().toString(36).slice(2, 10)).padEnd(24, '0');
}

function oaiError(status: number, message: string, type: string, code?: string | number | null, param?: string | null, extra?: object) {
  return { status, body: { error: { message, type, code: code ?? status, param: param ?? null, ...extra } } };
}

function isWildcard(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::' || host === '[::]' || host === '::0';
}

interface Waiting {
  start: () => void;
  cancelled: boolean;
}

// ---------------------------------------------------------------------------------------------
// Server

export async function startSimNode(opts: SimNodeOptions = {}): Promise<SimNode> {
  const options: SimNodeOptions = { ...opts };
  if (options.fault) options.fault = { ...options.fault };
  const host = options.host ?? '127.0.0.1';
  if (isWildcard(host)) throw new Error(`sim-node: refusing to listen on wildcard address '${host}'; use 127.0.0.1 or a netns address`);

  const kindOf = (): SimNodeKind => options.kind ?? 'llama.cpp';
  const models = (): string[] => (options.models && options.models.length ? options.models : ['sim-model']);
  const slotCount = (): number => Math.max(1, options.slots ?? 4);

  const sockets = new Set<Socket>();
  const requests: SimRequestLog[] = [];
  const stats: SimStats = { started: 0, completed: 0, aborted: 0, faulted: 0, active: 0, maxActive: 0, deferred: 0 };
  const queue: Waiting[] = [];
  const busySlots = new Set<number>();
  const promptCache: string[] = []; // most recent last; one entry per slot, like llama-server
  const idleWaiters = new Set<() => void>();
  const nodeId = '12D3KooW' + createHash('sha256').update(String(Math.random())).digest('base64url').slice(0, 44);
  let promptTokensTotal = 0;
  let predictedTokensTotal = 0;
  let dead = false;

  /** Consumes one use of the current fault if `pred` matches it; returns it. */
  function takeFault(pred: (f: SimFault) => boolean): SimFault | undefined {
    const f = options.fault;
    if (!f || !pred(f)) return undefined;
    if (f.times !== undefined) {
      f.times--;
      if (f.times <= 0) options.fault = undefined;
    }
    return f;
  }

  function notifyIdle() {
    if (stats.active === 0 && stats.deferred === 0) for (const w of idleWaiters) w();
  }

  function acquireSlot(): number {
    let id = 0;
    while (busySlots.has(id)) id++;
    busySlots.add(id);
    stats.started++;
    stats.active++;
    if (stats.active > stats.maxActive) stats.maxActive = stats.active;
    return id;
  }

  function releaseSlot(id: number) {
    busySlots.delete(id);
    stats.active--;
    while (queue.length && busySlots.size < slotCount()) {
      const w = queue.shift()!;
      if (w.cancelled) continue;
      stats.deferred--;
      w.start();
    }
    notifyIdle();
  }

  function sendJson(res: http.ServerResponse, status: number, body: unknown, headers?: Record<string, string>) {
    if (res.headersSent || res.destroyed) return;
    const s = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(s), ...headers });
    res.end(s);
  }

  function sendErr(res: http.ServerResponse, e: { status: number; body: unknown }, headers?: Record<string, string>) {
    sendJson(res, e.status, e.body, headers);
  }

  function authorized(req: http.IncomingMessage): boolean {
    const key = options.apiKey;
    if (!key) return true;
    const h = req.headers.authorization ?? '';
    const want = Buffer.from('Bearer ' + key);
    const got = Buffer.from(h);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  // ------------------------------------------------------------------ generation

  interface GenRequest {
    chat: boolean;
    model: string;
    stream: boolean;
    includeUsage: boolean;
    answer: Answer;
    first: number; // index of the first new token
    n: number; // number of new tokens
    finishReason: 'stop' | 'length';
    promptText: string; // rendered prompt for cache accounting (includes the prefill)
    promptTokens: number;
  }

  function startGeneration(req: http.IncomingMessage, res: http.ServerResponse, g: GenRequest) {
    const slot = acquireSlot();
    const o = options;
    const eol = o.lineEnding ?? '\n';
    const eol2 = eol + eol;
    const multi = !!o.multiLineData;
    const split = !!o.splitUtf8;
    const tps = Math.max(0, o.tokensPerSecond ?? 1000);
    const interval = tps > 0 ? 1000 / tps : 0;
    const pingEvery = Math.max(0, o.pingEveryMs ?? 0);
    const closeAfter = !!o.closeAfterStream;
    const usageStyle = o.usageStyle ?? 'separate';

    // prompt processing cost, with prompt cache
    let uncached = g.promptText.length;
    if (o.cachePrompt ?? true) {
      let best = 0;
      for (const c of promptCache) best = Math.max(best, commonPrefix(c, g.promptText));
      uncached -= best;
    }
    const ttft = Math.max(0, (o.ttftMs ?? 0) + (uncached / 1000) * (o.promptMsPerKChar ?? 0));
    const t0 = performance.now();
    const tFirst = t0 + ttft;

    const fault = takeFault((f) => f.type === 'cut' || f.type === 'stall' || f.type === 'malformed' || f.type === 'no-done');
    const faultAt = fault ? Math.max(0, fault.afterChunks ?? 3) : -1;

    const created = Math.floor(Date.now() / 1000);
    const id = newId(g.chat ? 'chatcmpl-' : 'cmpl-');
    const modelJson = JSON.stringify(g.model);
    const fp = 'b6000-sim';
    const tail = `,"created":${created},"id":"${id}","model":${modelJson},"system_fingerprint":"${fp}","object":"${g.chat ? 'chat.completion.chunk' : 'text_completion'}"`;
    const contentPrefix = g.chat ? '{"choices":[{"finish_reason":null,"index":0,"delta":{"content":' : '{"choices":[{"text":';
    const contentSuffix = g.chat ? '}}]' + tail + '}' : ',"index":0,"logprobs":null,"finish_reason":null}]' + tail + '}';

    let generated = '';
    let next = 0; // new tokens sent
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    let waitingDrain = false;

    const frame = (json: string): string => (multi ? `data: {${eol}data: ${json.slice(1)}${eol2}` : `data: ${json}${eol2}`);

    const usage = () => ({ completion_tokens: next, prompt_tokens: g.promptTokens, total_tokens: next + g.promptTokens });
    const timings = () => {
      const now = performance.now();
      const predicted = Math.max(0.001, now - tFirst);
      return {
        prompt_n: Math.ceil(uncached / 4),
        prompt_ms: ttft,
        predicted_n: next,
        predicted_ms: predicted,
        predicted_per_second: (next * 1000) / predicted,
      };
    };

    function finishBookkeeping(kind: 'completed' | 'aborted' | 'faulted') {
      if (ended) return;
      ended = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      stats[kind]++;
      predictedTokensTotal += next;
      promptTokensTotal += g.promptTokens;
      if (kind === 'completed') {
        promptCache.push(g.promptText + generated + '<|end|>\n');
        while (promptCache.length > slotCount()) promptCache.shift();
      }
      releaseSlot(slot);
    }

    res.on('close', () => {
      if (!ended) finishBookkeeping('aborted');
    });

    function sendHeaders() {
      if (res.headersSent) return;
      const h: Record<string, string> = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' };
      if (closeAfter) h['Keep-Alive'] = 'timeout=5, max=100';
      res.writeHead(200, h);
    }

    function endStream(withDone: boolean) {
      if (closeAfter) {
        const sock = res.socket;
        res.once('finish', () => sock?.destroy());
      }
      if (withDone) res.write('data: [DONE]' + eol2);
      res.end();
      finishBookkeeping('completed');
    }

    function writeFinish() {
      const fr = `"finish_reason":"${g.finishReason}"`;
      const choice = g.chat ? `{${fr},"index":0,"delta":{}}` : `{"text":"","index":0,"logprobs":null,${fr}}`;
      let json = `{"choices":[${choice}]${tail}`;
      const usageChunk = usageStyle === 'separate' && g.includeUsage;
      if (usageStyle === 'finish') json += `,"usage":${JSON.stringify(usage())}`;
      if (!usageChunk) json += `,"timings":${JSON.stringify(timings())}`;
      res.write(frame(json + '}'));
      if (usageChunk) res.write(frame(`{"choices":[]${tail},"usage":${JSON.stringify(usage())},"timings":${JSON.stringify(timings())}}`));
      endStream(fault?.type !== 'no-done');
    }

    /** Handles a fault due before content chunk `next`; returns true when the pump must stop. */
    function applyFault(): boolean {
      if (!fault || next !== faultAt) return false;
      switch (fault.type) {
        case 'cut':
          finishBookkeeping('faulted');
          cutSocket();
          return true;
        case 'stall':
          return true; // keep the slot and the socket until the client gives up
        case 'malformed':
          res.write(`data: {not json${eol2}`);
          return false;
        default:
          return false;
      }
    }

    /**
     * Destroys the socket once the chunks already written reached the kernel: node's http corks
     * the socket until the next tick, and destroying it earlier would drop them.
     */
    function cutSocket() {
      const sock = res.socket;
      if (!sock) return;
      setImmediate(() => {
        if (sock.writableLength > 0) sock.once('drain', () => sock.destroy());
        else sock.destroy();
      });
    }

    function onDrain() {
      waitingDrain = false;
      pump();
    }

    /** Writes one content chunk; returns false when the pump must pause (drain or utf8 split). */
    function writeToken(): boolean {
      const tok = g.answer.token(g.first + next);
      next++;
      generated += tok;
      const chunk = frame(contentPrefix + JSON.stringify(tok) + contentSuffix);
      if (split) {
        const buf = Buffer.from(chunk, 'utf8');
        // find the first multi-byte sequence and cut inside it
        let cut = -1;
        for (let i = 0; i < buf.length; i++) {
          if (buf[i] >= 0xc0) {
            cut = i + 1;
            break;
          }
        }
        if (cut > 0) {
          res.write(buf.subarray(0, cut));
          timer = setTimeout(() => {
            timer = undefined;
            if (ended || res.destroyed) return;
            if (res.write(buf.subarray(cut))) pump();
            else {
              waitingDrain = true;
              res.once('drain', onDrain);
            }
          }, 3);
          return false;
        }
      }
      if (!res.write(chunk)) {
        waitingDrain = true;
        res.once('drain', onDrain);
        return false;
      }
      return true;
    }

    let roleSent = false;
    let lastPing = t0;

    function pump() {
      if (ended || res.destroyed || waitingDrain) return;
      const now = performance.now();
      if (now < tFirst) {
        // prompt processing: silent, apart from optional pings (which need the headers out)
        if (pingEvery > 0) {
          sendHeaders();
          if (now - lastPing >= pingEvery - 1) {
            lastPing = now;
            res.write(': ping' + eol2);
          }
          timer = setTimeout(pump, Math.min(pingEvery, tFirst - now));
        } else {
          timer = setTimeout(pump, tFirst - now);
        }
        return;
      }
      if (!roleSent) {
        roleSent = true;
        sendHeaders();
        if (g.chat && o.roleChunk !== false) res.write(frame(`{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}]${tail}}`));
      }
      const due = interval > 0 ? Math.min(g.n, Math.floor((now - tFirst) / interval) + 1) : g.n;
      while (next < due) {
        if (applyFault()) return;
        if (!writeToken()) return;
      }
      if (next >= g.n) {
        if (applyFault()) return;
        writeFinish();
        return;
      }
      timer = setTimeout(pump, Math.max(0, tFirst + next * interval - performance.now()));
    }

    if (g.stream) {
      pump();
      return;
    }

    // non-streaming: wait for the whole generation, then one JSON body
    const total = ttft + g.n * interval;
    timer = setTimeout(() => {
      timer = undefined;
      if (ended || res.destroyed) return;
      if (fault?.type === 'cut') {
        finishBookkeeping('faulted');
        cutSocket();
        return;
      }
      if (fault?.type === 'stall') return;
      for (let i = 0; i < g.n; i++) generated += g.answer.token(g.first + i);
      next = g.n;
      if (fault?.type === 'malformed') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{not json');
        finishBookkeeping('completed');
        return;
      }
      const choice = g.chat
        ? { finish_reason: g.finishReason, index: 0, message: { role: 'assistant', content: generated } }
        : { text: generated, index: 0, logprobs: null, finish_reason: g.finishReason };
      sendJson(res, 200, {
        choices: [choice],
        created,
        model: g.model,
        system_fingerprint: fp,
        object: g.chat ? 'chat.completion' : 'text_completion',
        usage: usage(),
        id,
        timings: timings(),
      });
      finishBookkeeping('completed');
    }, total);
  }

  function handleGeneration(req: http.IncomingMessage, res: http.ServerResponse, body: any, chat: boolean) {
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      return sendErr(res, oaiError(400, 'request body must be a JSON object', 'invalid_request_error'));
    }
    const kind = kindOf();
    const served = models();
    const model: string = typeof body.model === 'string' && body.model ? body.model : served[0];
    if (!served.includes(model)) {
      const msg = kind === 'exo' ? `No instance found for model ${model}` : `model '${model}' not found`;
      return sendErr(res, oaiError(404, msg, 'invalid_request_error', 'model_not_found', 'model'));
    }

    let answer: Answer;
    let first = 0;
    let promptText: string;
    const utf8 = !!options.splitUtf8;
    if (chat) {
      if (!Array.isArray(body.messages) || body.messages.length === 0 || !body.messages.every((m: any) => m && typeof m === 'object' && typeof m.role === 'string')) {
        return sendErr(res, oaiError(400, "'messages' must be a non-empty array of messages with a 'role'", 'invalid_request_error', null, 'messages'));
      }
      const { prompt, prefill } = splitPrefill(body.messages as ChatMessage[]);
      answer = new Answer(answerKey(prompt), utf8);
      promptText = renderChat(prompt);
      if (prefill !== undefined) {
        first = answer.tokensIn(prefill);
        promptText += prefill;
      }
    } else {
      const p = body.prompt;
      const prompt = typeof p === 'string' ? p : Array.isArray(p) && p.every((x) => typeof x === 'string') ? p.join('') : undefined;
      if (prompt === undefined) return sendErr(res, oaiError(400, "'prompt' must be a string", 'invalid_request_error', null, 'prompt'));
      answer = new Answer(answerKey(prompt), utf8);
      promptText = prompt;
    }

    const maxRaw = body.max_tokens ?? body.max_completion_tokens ?? body.n_predict;
    const hasMax = typeof maxRaw === 'number' && maxRaw >= 0;
    const natural = Math.max(0, (options.defaultTokens ?? 200) - first);
    const n = hasMax ? Math.floor(maxRaw) : natural;
    const promptTokens = Math.max(1, Math.ceil(promptText.length / 4));

    const ctx400 = takeFault((f) => f.type === '400-context');
    if (ctx400) {
      return sendErr(
        res,
        oaiError(400, 'the request exceeds the available context size, try increasing it', 'exceed_context_size_error', 400, null, {
          n_prompt_tokens: promptTokens,
          n_ctx: 4096,
        }),
      );
    }

    const g: GenRequest = {
      chat,
      model,
      stream: body.stream === true,
      includeUsage: !!(body.stream_options && body.stream_options.include_usage),
      answer,
      first,
      n,
      finishReason: hasMax ? 'length' : 'stop',
      promptText,
      promptTokens,
    };

    if (busySlots.size < slotCount()) return startGeneration(req, res, g);
    if ((options.overflow ?? 'queue') === 'reject') {
      return sendErr(res, oaiError(503, 'all slots are busy', 'unavailable_error', 503));
    }
    const w: Waiting = { cancelled: false, start: () => startGeneration(req, res, g) };
    queue.push(w);
    stats.deferred++;
    res.on('close', () => {
      if (!w.cancelled && queue.includes(w)) {
        w.cancelled = true;
        queue.splice(queue.indexOf(w), 1);
        stats.deferred--;
        notifyIdle();
      }
    });
  }

  function handleEmbeddings(res: http.ServerResponse, body: any) {
    if (!body || typeof body !== 'object') return sendErr(res, oaiError(400, 'request body must be a JSON object', 'invalid_request_error'));
    const served = models();
    const model: string = typeof body.model === 'string' && body.model ? body.model : served[0];
    if (!served.includes(model)) return sendErr(res, oaiError(404, `model '${model}' not found`, 'invalid_request_error', 'model_not_found', 'model'));
    const input = body.input;
    const inputs: string[] | undefined = typeof input === 'string' ? [input] : Array.isArray(input) && input.every((x) => typeof x === 'string') ? input : undefined;
    if (!inputs) return sendErr(res, oaiError(400, "'input' must be a string or an array of strings", 'invalid_request_error', null, 'input'));
    let tokens = 0;
    const data = inputs.map((s, index) => {
      tokens += Math.max(1, Math.ceil(s.length / 4));
      const seed = fnv1a(s);
      const v: number[] = [];
      let norm = 0;
      for (let i = 0; i < 8; i++) {
        const x = mix((seed + Math.imul(i + 1, 0x9e3779b9)) >>> 0) / 0xffffffff - 0.5;
        v.push(x);
        norm += x * x;
      }
      norm = Math.sqrt(norm) || 1;
      return { object: 'embedding', index, embedding: v.map((x) => x / norm) };
    });
    sendJson(res, 200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  }

  // ------------------------------------------------------------------ info endpoints

  const created = Math.floor(Date.now() / 1000);
  const ollamaDetails = { parent_model: '', format: 'gguf', family: 'llama', families: ['llama'], parameter_size: '1B', quantization_level: 'Q4_K_M' };
  const digest = (m: string) => createHash('sha256').update(m).digest('hex');

  function modelList(): unknown {
    const kind = kindOf();
    const ids = kind === 'exo' ? [...models(), ...EXO_CATALOGUE_EXTRA.filter((x) => !models().includes(x))] : models();
    const owned = kind === 'llama.cpp' ? 'llamacpp' : kind === 'ollama' ? 'library' : kind === 'exo' ? 'exo' : kind === 'lmstudio' ? 'organization_owner' : 'system';
    return { object: 'list', data: ids.map((id) => ({ id, object: 'model', created, owned_by: owned })) };
  }

  function ollamaModel(m: string, running: boolean) {
    const base = { name: m, model: m, size: 1_000_000_000, digest: digest(m), details: ollamaDetails };
    return running
      ? { ...base, expires_at: new Date(Date.now() + 300_000).toISOString(), size_vram: 1_000_000_000, context_length: 4096 }
      : { ...base, modified_at: new Date(created * 1000).toISOString() };
  }

  function slotsInfo() {
    const n = slotCount();
    const out = [];
    for (let id = 0; id < n; id++) out.push({ id, id_task: busySlots.has(id) ? id + 1 : -1, n_ctx: 4096, speculative: false, is_processing: busySlots.has(id) });
    return out;
  }

  function metricsText(): string {
    const g = (name: string, help: string, type: string, v: number) => `# HELP llamacpp:${name} ${help}\n# TYPE llamacpp:${name} ${type}\nllamacpp:${name} ${v}\n`;
    return (
      g('prompt_tokens_total', 'Number of prompt tokens processed.', 'counter', promptTokensTotal) +
      g('tokens_predicted_total', 'Number of generation tokens processed.', 'counter', predictedTokensTotal) +
      g('requests_processing', 'Number of requests processing.', 'gauge', stats.active) +
      g('requests_deferred', 'Number of requests deferred.', 'gauge', stats.deferred)
    );
  }

  function exoState() {
    const running = models();
    const instances: Record<string, unknown> = {};
    running.forEach((m, i) => {
      instances[`instance-${i}`] = { instanceId: `instance-${i}`, modelId: m, nodeIds: [nodeId], status: 'running' };
    });
    return {
      instances,
      topology: { nodes: [{ nodeId, ips: ['127.0.0.1'] }], connections: [] },
      nodeNetwork: { [nodeId]: { interfaces: [{ name: 'lo', ipAddress: '127.0.0.1' }] } },
    };
  }

  /** Returns true when handled. */
  function handleInfo(method: string, path: string, res: http.ServerResponse): boolean {
    if (method !== 'GET') return false;
    const kind = kindOf();
    if (path === '/v1/models' || (kind === 'llama.cpp' && path === '/models')) {
      sendJson(res, 200, modelList());
      return true;
    }
    switch (kind) {
      case 'llama.cpp':
        switch (path) {
          case '/health':
          case '/v1/health':
            sendJson(res, 200, { status: 'ok' });
            return true;
          case '/props':
            sendJson(res, 200, {
              total_slots: slotCount(),
              model_path: `/models/${models()[0]}.gguf`,
              chat_template: '{{ messages }}',
              build_info: 'b6000-sim',
              default_generation_settings: { n_ctx: 4096 },
            });
            return true;
          case '/slots':
            sendJson(res, 200, slotsInfo());
            return true;
          case '/metrics': {
            const s = metricsText();
            res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4', 'Content-Length': Buffer.byteLength(s) });
            res.end(s);
            return true;
          }
        }
        return false;
      case 'exo':
        switch (path) {
          case '/node_id':
            sendJson(res, 200, nodeId);
            return true;
          case '/ollama/api/ps':
            sendJson(res, 200, { models: models().map((m) => ollamaModel(m, true)) });
            return true;
          case '/state':
            sendJson(res, 200, exoState());
            return true;
        }
        return false;
      case 'ollama':
        switch (path) {
          case '/api/tags':
            sendJson(res, 200, { models: models().map((m) => ollamaModel(m, false)) });
            return true;
          case '/api/ps':
            sendJson(res, 200, { models: models().map((m) => ollamaModel(m, true)) });
            return true;
          case '/api/version':
            sendJson(res, 200, { version: '0.12.0' });
            return true;
        }
        return false;
      case 'lmstudio':
        if (path === '/api/v0/models') {
          sendJson(res, 200, {
            object: 'list',
            data: models().map((id) => ({
              id,
              object: 'model',
              type: 'llm',
              publisher: 'sim',
              arch: 'llama',
              compatibility_type: 'gguf',
              quantization: 'Q4_K_M',
              state: 'loaded',
              max_context_length: 4096,
            })),
          });
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  // ------------------------------------------------------------------ dispatch

  const server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q >= 0 ? url.slice(0, q) : url;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: any = undefined;
      let bad = false;
      if (raw.length) {
        try {
          body = JSON.parse(raw);
        } catch {
          body = raw;
          bad = true;
        }
      }
      requests.push({ method, path, headers: req.headers, body, raw });
      if (requests.length > 1000) requests.splice(0, requests.length - 1000);
      route(req, res, method, path, body, bad);
    });
  });

  const generationPaths = new Set(['/v1/chat/completions', '/v1/completions', '/chat/completions', '/completions']);

  function route(req: http.IncomingMessage, res: http.ServerResponse, method: string, path: string, body: any, badJson: boolean) {
    const kind = kindOf();
    if (options.fault?.type === '503-loading' && takeFault((f) => f.type === '503-loading')) {
      return sendJson(res, 503, { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
    }
    const isPublic = kind === 'llama.cpp' && (path === '/health' || path === '/v1/health');
    if (!isPublic && !authorized(req)) {
      return sendErr(res, oaiError(401, 'Invalid API Key', 'authentication_error', 'invalid_api_key'));
    }
    const isGen = method === 'POST' && (generationPaths.has(path) && (kind === 'llama.cpp' || path.startsWith('/v1/')));
    if (isGen) {
      const f = takeFault((x) => x.type === '500' || x.type === '429' || x.type === 'reset-before-headers' || x.type === 'hang-before-headers');
      if (f) {
        switch (f.type) {
          case '500':
            return sendErr(res, oaiError(500, 'simulated internal server error', 'server_error', 500));
          case '429':
            return sendErr(res, oaiError(429, 'simulated rate limit', 'rate_limit_error', 429), f.retryAfter !== undefined ? { 'Retry-After': String(f.retryAfter) } : undefined);
          case 'reset-before-headers': {
            const s = req.socket;
            if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
            else s.destroy();
            return;
          }
          case 'hang-before-headers':
            return; // never answer; close()/kill() or the client ends it
        }
      }
      if (badJson) return sendErr(res, oaiError(400, 'Invalid JSON in request body', 'invalid_request_error'));
      return handleGeneration(req, res, body, path.endsWith('chat/completions'));
    }
    if (method === 'POST' && path === '/v1/embeddings') {
      if (badJson) return sendErr(res, oaiError(400, 'Invalid JSON in request body', 'invalid_request_error'));
      return handleEmbeddings(res, body);
    }
    if (handleInfo(method, path, res)) return;
    sendErr(res, oaiError(404, `no route for ${method} ${path}`, 'not_found_error', 404));
  }

  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.setNoDelay(true);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_err, s) => s.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  function destroyAll() {
    for (const s of sockets) s.destroy();
    sockets.clear();
    for (const w of queue) w.cancelled = true;
    queue.length = 0;
  }

  return {
    url: `http://${urlHost}:${port}`,
    port,
    options,
    setFault(f) {
      options.fault = f ? { ...f } : undefined;
    },
    requests,
    stats,
    idle(timeoutMs = 5000) {
      if (stats.active === 0 && stats.deferred === 0) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const done = (v: boolean) => {
          clearTimeout(t);
          idleWaiters.delete(w);
          resolve(v);
        };
        const w = () => done(true);
        const t = setTimeout(() => done(false), timeoutMs);
        idleWaiters.add(w);
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        if (dead) {
          destroyAll();
          return resolve();
        }
        dead = true;
        server.close(() => resolve());
        destroyAll();
      });
    },
    kill() {
      destroyAll();
      if (!dead) {
        dead = true;
        server.close();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// CLI

const HELP = `sim-node: a simulated OpenAI-compatible inference node (llama-server and friends)

Usage: npx tsx bench/sim-node.ts [options]

  --host ADDR              listen address (default 127.0.0.1; wildcards refused)
  --port N                 port (default 0 = ephemeral; the URL is printed)
  --kind K                 llama.cpp | openai | exo | ollama | lmstudio (default llama.cpp)
  --model ID               model id served; repeat or comma-separate for several (default sim-model)
  --slots N                concurrent generations (default 4)
  --overflow MODE          queue | reject, beyond the slots (default queue)
  --tps N                  tokens per second per stream, 0 = unthrottled (default 1000)
  --ttft MS                time to first token (default 0)
  --prompt-ms-per-kchar MS extra time to first token per 1000 prompt chars (default 0)
  --no-cache-prompt        disable the prompt cache
  --tokens N               answer length without max_tokens (default 200)
  --usage-style S          separate | finish (default separate)
  --crlf                   CRLF line endings in SSE
  --ping MS                ": ping" comment lines every MS during silent periods
  --multi-line             split each SSE event over two data: lines
  --split-utf8             multi-byte tokens, split across socket writes
  --close-after-stream     close the connection after each streamed reply (like llama-server)
  --api-key KEY            require Authorization: Bearer KEY
  --fault TYPE[:N]         500 | 429 | reset-before-headers | cut | stall | malformed | no-done |
                           hang-before-headers | 503-loading | 400-context; N = afterChunks
  --fault-times N          the fault clears after N requests
  --retry-after S          Retry-After seconds for the 429 fault
  -h, --help               this help
`;

async function main(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      kind: { type: 'string' },
      model: { type: 'string', multiple: true },
      slots: { type: 'string' },
      overflow: { type: 'string' },
      tps: { type: 'string' },
      ttft: { type: 'string' },
      'prompt-ms-per-kchar': { type: 'string' },
      'no-cache-prompt': { type: 'boolean' },
      tokens: { type: 'string' },
      'usage-style': { type: 'string' },
      crlf: { type: 'boolean' },
      ping: { type: 'string' },
      'multi-line': { type: 'boolean' },
      'split-utf8': { type: 'boolean' },
      'close-after-stream': { type: 'boolean' },
      'api-key': { type: 'string' },
      fault: { type: 'string' },
      'fault-times': { type: 'string' },
      'retry-after': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got '${v}'`);
    return n;
  };
  const oneOf = <T extends string>(name: string, v: string | undefined, allowed: readonly T[]): T | undefined => {
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) throw new Error(`--${name} must be one of ${allowed.join(', ')}, got '${v}'`);
    return v as T;
  };
  const faultTypes = ['500', '429', 'reset-before-headers', 'cut', 'stall', 'malformed', 'no-done', 'hang-before-headers', '503-loading', '400-context'] as const;
  let fault: SimFault | undefined;
  if (values.fault) {
    const [t, n] = values.fault.split(':');
    fault = { type: oneOf('fault', t, faultTypes)! };
    if (n !== undefined) fault.afterChunks = num('fault', n);
    if (values['fault-times'] !== undefined) fault.times = num('fault-times', values['fault-times']);
    if (values['retry-after'] !== undefined) fault.retryAfter = num('retry-after', values['retry-after']);
  }
  const opts: SimNodeOptions = {
    host: values.host,
    port: num('port', values.port),
    kind: oneOf('kind', values.kind, ['llama.cpp', 'openai', 'exo', 'ollama', 'lmstudio'] as const),
    models: values.model?.flatMap((m) => m.split(',')).filter(Boolean),
    slots: num('slots', values.slots),
    overflow: oneOf('overflow', values.overflow, ['queue', 'reject'] as const),
    tokensPerSecond: num('tps', values.tps),
    ttftMs: num('ttft', values.ttft),
    promptMsPerKChar: num('prompt-ms-per-kchar', values['prompt-ms-per-kchar']),
    cachePrompt: values['no-cache-prompt'] ? false : undefined,
    defaultTokens: num('tokens', values.tokens),
    usageStyle: oneOf('usage-style', values['usage-style'], ['separate', 'finish'] as const),
    lineEnding: values.crlf ? '\r\n' : undefined,
    pingEveryMs: num('ping', values.ping),
    multiLineData: values['multi-line'],
    splitUtf8: values['split-utf8'],
    closeAfterStream: values['close-after-stream'],
    apiKey: values['api-key'],
    fault,
  };
  for (const k of Object.keys(opts) as (keyof SimNodeOptions)[]) if (opts[k] === undefined) delete opts[k];
  const node = await startSimNode(opts);
  process.stdout.write(`sim-node (${opts.kind ?? 'llama.cpp'}) serving ${(opts.models ?? ['sim-model']).join(', ')} on ${node.url}\n`);
  const stop = () => {
    void node.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

const isMain = (() => {
  try {
    return !!process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
  } catch {
    return false;
  }
})();
if (isMain) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`sim-node: ${e instanceof Error ? e.message : String(e)}\n${HELP}`);
    process.exit(2);
  });
}
