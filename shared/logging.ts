import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * A pino logger writing JSON lines to stderr (stdout stays free for command output such as reports).
 * Created by each entry point and passed down: no module keeps a global logger.
 */
export function createLogger(options: { name: string; level?: string }): Logger {
  return pino({ name: options.name, level: options.level ?? process.env.AUTOPRUNE_LOG_LEVEL ?? 'info' }, pino.destination(2));
}
