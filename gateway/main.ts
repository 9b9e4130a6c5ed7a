import { ConfigError, loadConfig } from './config.ts';
import { USAGE, parseCli } from './cli.ts';
import { DataFileError } from './chat-files.ts';
import { createHearth } from './server.ts';

declare const HEARTH_VERSION: string;
const version = typeof HEARTH_VERSION === 'string' ? HEARTH_VERSION : 'dev';

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'node') {
    const { runNodeAgent } = await import('../cluster/agent/cli.ts');
    return runNodeAgent(argv.slice(1));
  }
  let cli;
  try {
    cli = parseCli(argv, process.env);
  } catch (e) {
    process.stderr.write(`hearth: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (cli.action === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (cli.action === 'version') {
    process.stdout.write(`hearth ${version}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig(cli.sources);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`hearth: configuration error: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  let hearth;
  let url;
  try {
    hearth = await createHearth(config);
    ({ url } = await hearth.start());
  } catch (e) {
    // What the user can fix (a file in the data folder, the port taken) in one line, not a stack.
    const code = (e as NodeJS.ErrnoException).code;
    if (!(e instanceof DataFileError) && !(typeof code === 'string' && /^E[A-Z]+$/.test(code))) throw e;
    process.stderr.write(`hearth: cannot start: ${(e as Error).message}\n`);
    await hearth?.close().catch(() => undefined);
    return 1;
  }
  hearth.log.info(`hearth ${version} listening on ${url} (API at ${url}/v1)`);
  const stop = async (signal: string) => {
    hearth.log.info(`${signal}: shutting down`);
    const force = setTimeout(() => process.exit(1), 5000);
    force.unref();
    await hearth.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  return -1; // keep running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`hearth: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
