/**
 * `npm run bench -- [overhead|balance|affinity]...`: Hearth's speed, memory and balancing
 * targets, each measured against a baseline in the same run (see bench/RESULTS.md).
 * With no argument, all three run. `--quick` shrinks the runs (for trying the harness).
 */
import { runAffinity } from './affinity.ts';
import { runBalance } from './balance.ts';
import { runOverhead } from './overhead.ts';

const ALL = ['overhead', 'balance', 'affinity'] as const;
type Name = (typeof ALL)[number];

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  const names = argv.filter((a) => !a.startsWith('--'));
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`Usage: npm run bench -- [${ALL.join('|')}]... [--quick]\n`);
    return 0;
  }
  for (const n of names) if (!(ALL as readonly string[]).includes(n)) {
    process.stderr.write(`bench: unknown benchmark '${n}'; expected ${ALL.join(', ')}\n`);
    return 2;
  }
  const run = (names.length ? names : [...ALL]) as Name[];
  const command = `npm run bench${argv.length ? ' -- ' + argv.join(' ') : ''}`;
  for (const name of run) {
    if (name === 'overhead') await runOverhead({ command, ...(quick ? { sequential: 20, rounds: 1, llamaRounds: 1 } : {}) });
    if (name === 'balance') await runBalance({ command, quick });
    if (name === 'affinity') await runAffinity({ command, quick });
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`bench: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
