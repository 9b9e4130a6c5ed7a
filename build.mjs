#!/usr/bin/env node
// Bundles Hearth into dist/hearth.mjs. Native packages cannot live in a bundle: they stay
// external and are copied, with what they need at run time, into dist/node_modules, so that
// `node dist/hearth.mjs` runs from dist/ alone.
import { build } from 'esbuild';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const quiet = process.argv.includes('--quiet');
const out = join(root, 'dist');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const NATIVE = ['lmdb', 'node-pty'];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const t0 = Date.now();
await build({
  entryPoints: { hearth: join(root, 'gateway/main.ts') },
  outdir: out,
  outExtension: { '.js': '.mjs' },
  // Code not every Hearth needs (the node agent, discovery, the chat) goes into chunks loaded on demand.
  splitting: true,
  chunkNames: 'lib/[name]-[hash]',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: !process.env.BUILD_NO_MINIFY,
  legalComments: 'none',
  external: NATIVE,
  define: { HEARTH_VERSION: JSON.stringify(pkg.version) },
  // CommonJS dependencies (multicast-dns) call require() for Node built-ins.
  banner: { js: "#!/usr/bin/env node\nimport{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
  logLevel: 'warning',
});

/** A package and, recursively, every dependency of it that is installed. */
function closure(name, from, seen = new Map()) {
  let dir = from;
  let pkgDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) {
      pkgDir = candidate;
      break;
    }
    if (dir === root || dir === dirname(dir)) return seen;
    dir = dirname(dir);
  }
  if (seen.has(pkgDir)) return seen;
  seen.set(pkgDir, name);
  const p = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  for (const dep of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) closure(dep, pkgDir, seen);
  return seen;
}

// Sources, headers and docs of native packages are not needed at run time on a small SD card.
const SKIP = /(^|\/)(src|deps|dependencies|third_party|test|tests|docs?|examples?|benchmark|\.github|obj\.target|\.deps)(\/|$)|\.(md|markdown|ts|map|cc|cpp|h|gyp|gypi|o|a|mk)$|Makefile$/;
const copied = new Map();
for (const name of NATIVE) for (const [dir] of closure(name, root)) copied.set(dir, relative(root, dir));
for (const [dir, rel] of copied) {
  cpSync(dir, join(out, rel), {
    recursive: true,
    filter: (src) => {
      const r = relative(dir, src);
      if (r.startsWith('node_modules')) return false; // nested deps are copied by their own entry
      if (/^prebuilds\/(?!linux)/.test(r)) return false; // other operating systems' binaries
      return r === '' || !SKIP.test(r) || r.endsWith('.d.ts');
    },
  });
}
writeFileSync(join(out, 'package.json'), JSON.stringify({ name: 'hearth-dist', version: pkg.version, type: 'module', private: true }, null, 2));

/** A module and every chunk it imports statically: what Node loads before Hearth starts. */
function loadedAtStart(file, seen = new Set()) {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/from"(\.\.?\/[^"]+\.mjs)"/g)) loadedAtStart(join(dirname(file), m[1]), seen);
  return seen;
}
const entry = join(out, 'hearth.mjs');
const atStart = [...loadedAtStart(entry)];
const info = {
  entryBytes: statSync(entry).size,
  startBytes: atStart.reduce((sum, f) => sum + statSync(f).size, 0),
  onDemandBytes: readdirSync(join(out, 'lib'))
    .map((f) => join(out, 'lib', f))
    .filter((f) => !atStart.includes(f))
    .reduce((sum, f) => sum + statSync(f).size, 0),
};
writeFileSync(join(out, 'build-info.json'), JSON.stringify(info, null, 2));
if (!quiet) {
  const kb = (b) => `${(b / 1024).toFixed(1)} KB`;
  console.log(`dist/hearth.mjs: ${kb(info.entryBytes)}; loaded at start with its chunks: ${kb(info.startBytes)}; loaded on demand (discovery, the chat, node agent): ${kb(info.onDemandBytes)} (built in ${Date.now() - t0} ms)`);
  console.log(`dist/node_modules: ${copied.size} packages (${[...copied.values()].map((r) => r.replace(/^node_modules\//, '')).join(', ')})`);
}
