import http, { type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Balancer } from '../cluster/balancer.ts';
import type { Discovery } from '../cluster/discovery/index.ts';
import { Dispatcher } from '../cluster/dispatch.ts';
import { ModelRoutes } from '../cluster/model-routes.ts';
import { NodeMonitor } from '../cluster/monitor.ts';
import { isUsable, splitNodeUrl } from '../cluster/node.ts';
import { Registry } from '../cluster/registry.ts';
import { nodeCrypto } from '../cluster/crypto.ts';
import { UpstreamClient } from '../cluster/upstream.ts';
import { createApi } from './api/routes.ts';
import { loadSecret, readSecret, revokedSessions } from './chat-files.ts';
import { notFoundError, sendError, splitTarget } from './api/http.ts';
import { openHistoryWhenNeeded } from './history/deferred.ts';
import type { History } from './history/store.ts';
import type { Config } from './config.ts';
import { createLogger, type Logger } from './log.ts';

export interface Hearth {
  registry: Registry;
  balancer: Balancer;
  history: History;
  log: Logger;
  /** Listen, and start reading the nodes. */
  start(): Promise<{ url: string; port: number }>;
  close(): Promise<void>;
}

/** Seed the registry with the configured nodes: they stay known while down. */
function addStaticNodes(registry: Registry, config: Config): void {
  for (const n of config.nodes) {
    const { baseUrl, apiPath } = splitNodeUrl(n.url);
    registry.upsert(
      {
        id: new URL(baseUrl).host,
        baseUrl,
        apiPath,
        kind: n.kind ?? 'openai',
        kindUnconfirmed: n.kind === undefined,
        apiKey: n.api_key,
        name: n.name,
      },
      'static',
    );
  }
}

export async function createHearth(config: Config): Promise<Hearth> {
  const log = createLogger(config.log);
  // The chat loads with its first page; a key it could not read would only show then.
  const keyFound = config.chat.enabled ? readSecret(config.data) : undefined;
  const history = await openHistoryWhenNeeded(
    {
      dir: join(config.data, 'history'),
      maxBytes: config.history.max_bytes || undefined,
      retentionDays: config.history.retention_days || undefined,
    },
    (h) => {
      if (h.recovered) log.info(`history: ${h.recovered} answer(s) cut by the last shutdown are marked interrupted`);
    },
  );
  const registry = new Registry();
  addStaticNodes(registry, config);
  const monitor = new NodeMonitor(registry, {
    intervalMs: config.probe.interval_ms,
    timeoutMs: config.probe.timeout_ms,
    maxFailures: config.probe.max_failures,
  });
  const r = config.routing;
  const balancer = new Balancer(registry, {
    policy: r.policy,
    queueSize: r.queue_size,
    queueWaitMs: r.queue_wait_ms,
    affinity: r.affinity,
    affinityMargin: r.affinity_margin,
    breaker: { threshold: r.breaker_failures, coolDownMs: r.breaker_cooldown_ms, maxCoolDownMs: Math.max(30_000, r.breaker_cooldown_ms) },
    refresh: (id) => void monitor.poll(id),
  });
  const routes = new ModelRoutes(r.aliases, r.fallbacks);
  const upstream = new UpstreamClient();
  const dispatcher = new Dispatcher(balancer, upstream, {
    routes,
    retries: config.routing.retries,
    connectTimeoutMs: config.timeouts.connect_ms,
    firstByteTimeoutMs: config.timeouts.first_byte_ms,
    stallTimeoutMs: config.timeouts.stall_ms,
  });
  registry.on('change', (e) => {
    if (e.type === 'removed') log.info(`node ${e.node.name} left: ${e.reason}`);
    else if (e.type === 'added') log.info(`node ${e.node.name} (${e.node.baseUrl}) known from ${e.node.sources.join(', ')}`);
  });

  const api = createApi({
    balancer,
    dispatcher,
    routes,
    history,
    apiKeys: config.api_keys,
    bodyLimit: config.limits.body_bytes,
    ready: () => registry.list().some(isUsable),
    log,
  });
  // The chat is loaded with its first page: Hono, its Node adapter (which makes Node load undici,
  // see api/http.ts), the pages and node:crypto for its sessions. A gateway used only through
  // the API never loads them.
  const loadChat = async (): Promise<RequestListener> => {
    const [{ webMinRoutes }, { getRequestListener }] = await Promise.all([import('../web-min/routes.ts'), import('@hono/node-server')]);
    const chat = webMinRoutes({
      history,
      dispatcher,
      models: () => balancer.models(),
      password: config.chat.password || undefined,
      sessionDays: config.chat.session_days,
      secret: loadSecret(config.data, keyFound, (n) => nodeCrypto().randomBytes(n), log.error),
      revoked: revokedSessions(config.data, log.error),
    });
    return getRequestListener(chat.fetch, { hostname: config.host });
  };
  let chatListener: Promise<RequestListener> | undefined;
  const serveChat = (incoming: IncomingMessage, outgoing: ServerResponse) => {
    if (!config.chat.enabled) return sendError(outgoing, notFoundError(incoming.method ?? 'GET', splitTarget(incoming.url ?? '/').path));
    chatListener ??= loadChat();
    chatListener.then(
      (listener) => listener(incoming, outgoing),
      (e: unknown) => {
        chatListener = undefined; // try again with the next request
        log.error(`chat: ${(e as Error).stack ?? e}`);
        outgoing.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('Hearth could not load its chat page; the log has the details.\n');
      },
    );
  };
  const onRequest = (incoming: IncomingMessage, outgoing: ServerResponse) => {
    if (!api.serve(incoming, outgoing)) serveChat(incoming, outgoing);
  };

  let server: http.Server | undefined;
  let discovery: Discovery | undefined;
  const discover = async (port: number) => {
    const d = config.discovery;
    if (!d.enabled) return;
    try {
      // Loaded only when on: multicast and its packet codec are not needed otherwise.
      const { startDiscovery } = await import('../cluster/discovery/index.ts');
      discovery = await startDiscovery(registry, {
        serviceTypes: d.service_types,
        interfaces: d.interfaces.length ? d.interfaces : undefined,
        probe: d.probe_hosts,
        exo: d.exo,
        advertise: d.advertise ? { port, name: d.name, chatPath: config.chat.enabled ? '/' : undefined } : false,
        timeoutMs: config.probe.timeout_ms,
        log: (m) => log.debug(`discovery: ${m}`),
      });
    } catch (e) {
      // Static nodes keep working without multicast (no network yet, port 5353 refused).
      log.error(`discovery is off: ${(e as Error).message}`);
    }
  };
  return {
    registry,
    balancer,
    history,
    log,
    start() {
      return new Promise((resolve, reject) => {
        server = http.createServer(onRequest);
        server.listen(config.port, config.host, () => {
          const info = server!.address() as AddressInfo;
          monitor.start();
          const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
          void discover(info.port).then(() => resolve({ url: `http://${host}:${info.port}`, port: info.port }));
        });
        server.once('error', reject);
      });
    },
    async close() {
      await discovery?.stop(); // goodbye packets first
      monitor.stop();
      await new Promise<void>((resolve) => {
        if (!server) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      upstream.close();
      await history.close();
    },
  };
}
