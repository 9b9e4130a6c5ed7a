import { parseArgs } from 'node:util';
import { SETTINGS } from './config-schema.ts';
import { envKeyFor, type ConfigSources } from './config.ts';

export const USAGE = `Hearth: a home LLM gateway. One OpenAI-compatible endpoint for every inference node at home.

Usage:
  hearth [options]                       run the gateway
  hearth node [options] -- COMMAND...    run an inference server under Hearth's node agent
                                         (hearth node --help for its options)

Options:
  --config FILE    TOML config file (also HEARTH_CONFIG)
  --host ADDR      address to listen on (default 0.0.0.0)
  --port N         port to listen on (default 8808)
  --data DIR       where state lives (default ./data)
  --node URL       a static node, e.g. http://10.0.0.5:8080 (repeatable; a trailing /v1 is fine)
  --help           show this help
  --version        show the version

Settings come from the embedded defaults, then the config file, then HEARTH_* environment
variables (${envKeyFor('timeouts.stall_ms')} sets timeouts.stall_ms), then these flags.
Every setting: ${SETTINGS.map((s) => s.key).join(', ')}.
`;

export type CliAction = { action: 'help' } | { action: 'version' } | { action: 'serve'; sources: ConfigSources };

/** Reads the gateway's command line; throws with a readable message on a bad flag. */
export function parseCli(argv: string[], env: NodeJS.ProcessEnv): CliAction {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      data: { type: 'string' },
      node: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return { action: 'help' };
  if (values.version) return { action: 'version' };
  const flags = new Map<string, unknown>();
  if (values.host !== undefined) flags.set('host', values.host);
  if (values.port !== undefined) flags.set('port', values.port);
  if (values.data !== undefined) flags.set('data', values.data);
  if (values.node !== undefined) flags.set('nodes', values.node);
  return { action: 'serve', sources: { file: values.config, env, flags } };
}
