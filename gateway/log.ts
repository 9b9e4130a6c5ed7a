const LEVELS = { silent: 0, error: 1, info: 2, debug: 3 } as const;
export type LogLevel = keyof typeof LEVELS;

export interface Logger {
  error(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

/** One line per event on stderr, which journald keeps under systemd. */
export function createLogger(level: LogLevel): Logger {
  const at = LEVELS[level];
  const line = (l: number, tag: string) => (msg: string) => {
    if (l <= at) process.stderr.write(`${tag} ${msg}\n`);
  };
  return { error: line(1, 'error'), info: line(2, 'info'), debug: line(3, 'debug') };
}
