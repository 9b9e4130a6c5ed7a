/**
 * The floor for any Node.js proxy: a bare node:http pipe (no parsing, no checks), one port per
 * upstream. The overhead bench runs it beside nginx, so Hearth's cost can be split into what
 * Node's HTTP machinery costs on this machine and what Hearth adds to it.
 * Usage: tsx bench/bare-proxy.ts UPSTREAM_URL... ; prints one "listening PORT" line per upstream.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
for (const upstream of process.argv.slice(2)) {
  const server = http.createServer((req, res) => {
    const up = http.request(upstream + req.url, { method: req.method, agent, headers: { ...req.headers, host: new URL(upstream).host } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.listen(0, '127.0.0.1', () => console.log(`listening ${(server.address() as AddressInfo).port}`));
}
