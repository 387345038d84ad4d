import { pino, type Logger } from 'pino';

export type { Logger };

/** One logger per process; JSON lines on stderr so stdout stays free for command output. */
export function createLogger(name: string, level = process.env.PRESAGE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}

/** A logger that drops everything: for library code used from tests and the CLI. */
export const silentLogger: Logger = pino({ level: 'silent' });
