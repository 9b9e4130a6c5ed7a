/** `--status-port`: a tiny status page and JSON on loopback (state, restarts, recent output). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentStatus } from './agent.ts';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(s: AgentStatus, title: string): string {
  const row = (k: string, v: string) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`;
  return `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:1em}th{text-align:left;padding-right:1em}pre{background:#111;color:#ddd;padding:.5em;overflow-x:auto}</style>
</head><body><h1>${esc(title)}</h1><table>
${row('state', s.state)}${row('pid', String(s.pid ?? '-'))}${row('restarts', String(s.restarts))}
${row('up for', s.uptimeMs === null ? '-' : `${Math.round(s.uptimeMs / 1000)} s`)}${row('port', String(s.port))}
${row('server', s.server ? `${s.server.kind}: ${s.server.models.join(', ')}` : '-')}
${row('advertised', s.advertising !== 'on' ? s.advertising : s.advertised.join(', ') || 'no (not healthy)')}
${row('last exit', s.lastExit ? `${s.lastExit.signal ? `signal ${s.lastExit.signal}` : `status ${s.lastExit.exitCode}`} at ${new Date(s.lastExit.at).toISOString()}` : '-')}
</table><h2>Recent output</h2><pre>${esc(s.output.join('\n'))}</pre><p><a href="/status.json">JSON</a></p></body></html>`;
}

export interface StatusServer {
  port: number;
  close(): Promise<void>;
}

/** Listen on 127.0.0.1:`port` (0: any free port). Read-only; nothing but GET and HEAD. */
export function serveStatus(port: number, status: () => AgentStatus, title: string): Promise<StatusServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (path === '/status.json') {
      res.writeHead(200, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify(status()));
    } else if (path === '/') {
      res.writeHead(200, { ...headers, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'" }).end(page(status(), title));
    } else {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain' }).end('not found: try / or /status.json\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}
