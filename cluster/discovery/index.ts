import type { Registry } from '../registry.ts';
import { NODE_KINDS, type NodeSource } from '../node.ts';
import { detectNode, type ProbeResult } from '../kinds.ts';
import { MdnsSocket, type MdnsOptions } from './mdns.ts';
import { ServiceBrowser, DEFAULT_SERVICE_TYPES, type BrowserOptions, type FoundService } from './browse.ts';
import { createAdvertiser, type Advertiser, type AdvertiserOptions } from './advertise.ts';
import { HostProber, type HostProberOptions, type ProbeFound } from './host-prober.ts';
import { ExoListener, ExoResolver, type ExoResolverOptions } from './exo.ts';
import { hostPort, isIPv4, isLocalAddress, isPrivateAddress, localAddresses, stripZone } from './addresses.ts';

export { isPrivateAddress } from './addresses.ts';
export { DEFAULT_SERVICE_TYPES } from './browse.ts';


export interface DiscoveryOptions {
  /** DNS-SD service types to browse; default {@link DEFAULT_SERVICE_TYPES}. */
  serviceTypes?: string[];
  /** Advertise this gateway (`_openai._tcp` with `path=/v1`, `_http._tcp` for the chat page). */
  advertise?: { port: number; name: string; chatPath?: string; apiPath?: string } | false;
  /** Network interfaces (names or IPv4 addresses): the first carries mDNS, all carry exo's group. */
  interfaces?: string[];
  /** Probe hosts seen on mDNS on the known ports (default on). */
  probe?: boolean | HostProberOptions;
  /** Listen for exo's discovery multicast (default on). */
  exo?: boolean | (ExoResolverOptions & { port?: number; group?: string; silenceMs?: number });
  /** Tuning, mostly for tests. */
  mdns?: MdnsOptions;
  browse?: BrowserOptions;
  advertiser?: AdvertiserOptions;
  /** Time-out of each classification request (ms). */
  timeoutMs?: number;
  detect?: typeof detectNode;
  log?: (msg: string) => void;
}

export interface Discovery {
  /** Goodbye packets for Hearth's advertisements, then every socket closed. */
  stop(): Promise<void>;
  readonly browser: ServiceBrowser;
  readonly advertiser?: Advertiser;
}

/** Stable registry id: what the server says it is (exo cluster), else `ip:port`. */
export function nodeId(ip: string, port: number, r?: ProbeResult | null): string {
  return r?.identity ?? hostPort(ip, port);
}

function ifaceIPv4(spec: string | undefined): string | undefined {
  if (!spec) return undefined;
  if (isIPv4(spec)) return spec;
  return localAddresses().find((a) => a.iface === spec && a.family === 4)?.address;
}

/**
 * Wire every discovery source into the registry: DNS-SD browsing, probing of hosts seen on mDNS,
 * exo's multicast, and Hearth's own advertisement. Sources add and withdraw; the monitor
 * (cluster/monitor.ts) keeps health, models and load fresh and drops nodes that stop answering.
 */
export async function startDiscovery(registry: Registry, opts: DiscoveryOptions = {}): Promise<Discovery> {
  const log = opts.log ?? (() => {});
  const detect = opts.detect ?? detectNode;
  const timeoutMs = opts.timeoutMs ?? 1500;
  const mdnsIface = ifaceIPv4(opts.interfaces?.[0]);
  const mdns = new MdnsSocket({ interface: mdnsIface, ...opts.mdns });
  mdns.on('warning', (e) => log(`mdns: ${e.message}`));
  try {
    await mdns.ready;
  } catch (e) {
    await mdns.close();
    throw new Error(`mDNS socket failed: ${(e as Error).message}`);
  }

  const ownPort = opts.advertise ? opts.advertise.port : undefined;
  const isSelf = (ip: string, port: number) => port === ownPort && isLocalAddress(ip);

  // --- advertise
  let advertiser: Advertiser | undefined;
  if (opts.advertise) {
    const a = opts.advertise;
    advertiser = createAdvertiser(mdns, opts.advertiser);
    advertiser.publish({ name: a.name, type: '_openai._tcp', port: a.port, txt: { path: a.apiPath ?? '/v1' } });
    advertiser.publish({ name: a.name, type: '_http._tcp', port: a.port, txt: { path: a.chatPath ?? '/' } });
  }

  function upsert(found: ProbeFound, source: NodeSource, name?: string, apiPath?: string): string {
    const { ip, port, result: r } = found;
    const id = nodeId(ip, port, r);
    const known = registry.get(id);
    // An exo cluster keeps the address it was first reached at while that one answers.
    const baseUrl = known && known.health !== 'down' ? known.baseUrl : found.baseUrl;
    registry.upsert(
      {
        id,
        baseUrl,
        kind: r.kind,
        name: known?.name ?? name ?? `${r.kind} ${hostPort(ip, port)}`,
        apiPath: apiPath ?? known?.apiPath,
        models: r.models,
        health: r.health,
        load: r.load,
        failedProbes: r.health === 'down' ? undefined : 0,
      },
      source,
    );
    return id;
  }

  // --- probe
  let prober: HostProber | undefined;
  if (opts.probe !== false) {
    prober = new HostProber({
      timeoutMs,
      detect,
      ...(typeof opts.probe === 'object' ? opts.probe : {}),
      skip: (ip, port) => isSelf(ip, port) || !!registry.findByBaseUrl(`http://${hostPort(ip, port)}`),
    });
    prober.on('found', (f) => {
      log(`probe: ${f.result.kind} at ${f.baseUrl}`);
      upsert(f, 'probe');
    });
  }

  // --- browse
  const browser = new ServiceBrowser(mdns, { types: opts.serviceTypes ?? DEFAULT_SERVICE_TYPES, ...opts.browse });
  const byService = new Map<string, string>();
  const resolving = new Map<string, AbortController>();
  browser.on('host', (ip) => prober?.seen(ip));

  async function onService(svc: FoundService): Promise<void> {
    if (advertiser?.owns(svc.fqdn)) return;
    const ip = svc.addresses.find((a) => isIPv4(a) && isPrivateAddress(a)) ?? svc.addresses.find((a) => isPrivateAddress(a) && !stripZone(a).startsWith('fe80'));
    if (!ip || isSelf(ip, svc.port)) return;
    resolving.get(svc.fqdn)?.abort();
    const ac = new AbortController();
    resolving.set(svc.fqdn, ac);
    const apiPath = normPath(svc.txt.path);
    const hint = NODE_KINDS.find((k) => k === svc.txt.kind);
    const baseUrl = `http://${hostPort(ip, svc.port)}`;
    const r = await detect(baseUrl, { timeoutMs, apiPath, hint, signal: ac.signal }).catch(() => null);
    if (ac.signal.aborted) return;
    resolving.delete(svc.fqdn);
    // Known even when it does not answer yet; the monitor decides whether it stays.
    const result: ProbeResult = r ?? {
      kind: hint ?? 'openai',
      health: 'unknown',
      models: (svc.txt.models ?? '').split(',').map((m) => m.trim()).filter(Boolean),
    };
    const old = byService.get(svc.fqdn);
    const id = upsert({ ip, port: svc.port, baseUrl, result }, 'mdns', svc.name, apiPath);
    if (old && old !== id) registry.withdraw(old, 'mdns', 'moved');
    byService.set(svc.fqdn, id);
    log(`mdns: ${svc.fqdn} -> ${id} (${result.kind}, ${result.health})`);
  }
  browser.on('found', (s) => void onService(s));
  browser.on('updated', (s) => void onService(s));
  browser.on('lost', (svc, reason) => {
    resolving.get(svc.fqdn)?.abort();
    resolving.delete(svc.fqdn);
    const id = byService.get(svc.fqdn);
    byService.delete(svc.fqdn);
    if (!id) return;
    log(`mdns: ${svc.fqdn} lost (${reason})`);
    // A goodbye is the node's own word: it leaves whoever else found it. Expiry only ends mDNS's say.
    if (reason === 'goodbye') registry.remove(id, `mDNS goodbye from ${svc.fqdn}`);
    else registry.withdraw(id, 'mdns', `mDNS records of ${svc.fqdn} expired`);
  });
  browser.start();

  // --- exo
  let exoListener: ExoListener | undefined;
  let exoResolver: ExoResolver | undefined;
  let exoTimer: NodeJS.Timeout | undefined;
  if (opts.exo !== false) {
    const eo = typeof opts.exo === 'object' ? opts.exo : {};
    const hosts = new Set<string>();
    browser.on('host', (ip) => {
      if (isIPv4(ip) && hosts.size < 1024) hosts.add(ip);
    });
    exoResolver = new ExoResolver({ timeoutMs, detect, knownHosts: () => [...hosts], ...eo });
    const namespaces = new Map<string, { id?: string; last: number }>();
    exoListener = new ExoListener({ port: eo.port, group: eo.group, interfaces: opts.interfaces?.filter((i) => !isIPv4(i)) });
    exoListener.on('warning', (e) => log(`exo: ${e.message}`));
    exoListener.on('hello', (h) => {
      const ns = namespaces.get(h.namespace) ?? { last: 0 };
      ns.last = Date.now();
      namespaces.set(h.namespace, ns);
      if (ns.id && registry.get(ns.id)) return;
      void exoResolver!.hello(h).then((f) => {
        if (!f) return;
        ns.id = upsert(f, 'exo');
        log(`exo: hello from ${h.address} -> ${f.baseUrl} (${ns.id})`);
      });
    });
    try {
      await exoListener.start();
      const silence = eo.silenceMs ?? 30_000;
      exoTimer = setInterval(() => {
        for (const [k, ns] of namespaces) {
          if (Date.now() - ns.last < silence) continue;
          namespaces.delete(k);
          if (ns.id) registry.withdraw(ns.id, 'exo', 'exo discovery multicast went silent');
        }
      }, Math.min(5000, silence / 2));
      exoTimer.unref();
    } catch (e) {
      log(`exo: discovery listener unavailable (${(e as Error).message}); exo is still found by probing port 52415`);
      exoListener.stop();
      exoListener = undefined;
    }
  }

  return {
    browser,
    advertiser,
    async stop() {
      browser.stop();
      prober?.stop();
      exoResolver?.stop();
      exoListener?.stop();
      clearInterval(exoTimer);
      for (const ac of resolving.values()) ac.abort();
      await advertiser?.close();
      await mdns.close();
    },
  };
}

function normPath(p: string | undefined): string | undefined {
  if (!p) return undefined;
  const s = `/${p.replace(/^\/+|\/+$/g, '')}`;
  return s === '/' ? '' : s;
}
