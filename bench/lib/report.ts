/** Figures, tables and the sections of bench/RESULTS.md. */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';

export const RESULTS = resolve(import.meta.dirname, '../RESULTS.md');

/** The q-quantile (0..1) of the values, nearest-rank; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}

export const mean = (v: readonly number[]): number => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);
export const median = (v: readonly number[]): number => quantile(v, 0.5);

/** A number with `digits` decimals, or "n/a". */
export function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : 'n/a';
}

export interface Target {
  what: string;
  /** The measured value as printed. */
  measured: string;
  met: boolean | undefined;
}

/** `target: ..., measured: ..., met/missed` lines: benchmarks never fail on a missed target. */
export function targetLine(t: Target): string {
  return `target: ${t.what}, measured: ${t.measured}, ${t.met === undefined ? 'not measured' : t.met ? 'met' : 'missed'}`;
}

/** A Markdown table. */
export function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

export interface Machine {
  cpu: string;
  cores: number;
  node: string;
  kernel: string;
}

export function machine(): Machine {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1].trim();
  } catch {
    /* not Linux */
  }
  let kernel = '';
  try {
    kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  } catch {
    /* no uname */
  }
  return { cpu, cores: cpus().length, node: process.version, kernel };
}

/** The header every section starts with: when, where, how. */
export function runHeader(command: string): string {
  const m = machine();
  return [
    `- date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`,
    `- machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, Linux ${m.kernel}`,
    `- command: \`${command}\``,
    `- load average at start (other work on the machine): ${loadavg().map((x) => x.toFixed(2)).join(', ')}`,
  ].join('\n');
}

const PREAMBLE = `# Hearth benchmark results

Written by \`npm run bench\` (\`node build.mjs --quiet && tsx bench/run.ts [overhead|balance|affinity]\`);
each benchmark replaces its own section. Benchmarks never fail on a missed target: they print
\`target: ..., measured: ..., met/missed\`. Everything runs on 127.0.0.1; Hearth is always the real
bundle (\`node dist/hearth.mjs --config FILE\`) in its own process.
`;

/** Replace (or append) the section `name` of bench/RESULTS.md. */
export function writeSection(name: string, markdown: string): void {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const block = `${start}\n${markdown.trim()}\n${end}`;
  let text = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : PREAMBLE;
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + end.length);
  else text = text.trimEnd() + '\n\n' + block + '\n';
  writeFileSync(RESULTS, text);
}

/** Console output with a timestamp, so a slow phase shows. */
export function say(msg: string): void {
  process.stdout.write(msg + '\n');
}
