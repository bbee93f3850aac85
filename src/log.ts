import { pino, type Logger } from 'pino';

/** The levels `--log-level` and `log_level` accept (pino's names). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The root logger: JSON lines on stderr, so stdout stays free for command output
 * (`icetray config show`, `icetray doctor --output json`).
 */
export const log: Logger = pino({ name: 'icetray', level: 'info' }, pino.destination(2));

export function setLogLevel(level: LogLevel): void {
  log.level = level;
}

export type { Logger };
