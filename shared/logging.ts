import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Fields every line of a process's log carries, read when the line is written: where the process stands
 * in its run (run id, generation, rank, phase), which it learns as it goes. The entry point creates one
 * and hands it to the part that knows (the coordinator, the worker agent), which points it at its state.
 */
export class LogContext {
  private source: () => Readonly<Record<string, unknown>> = () => ({});

  /** From now on the lines carry what `source` returns (undefined fields are left out). */
  follow(source: () => Readonly<Record<string, unknown>>): void {
    this.source = source;
  }

  fields(): Record<string, unknown> {
    return Object.fromEntries(Object.entries(this.source()).filter(([, value]) => value !== undefined));
  }
}

/**
 * A pino logger writing JSON lines to stderr (stdout stays free for command output such as reports).
 * Created by each entry point and passed down: no module keeps a global logger. With a `context`, every
 * line carries its fields (a line's own fields win).
 */
export function createLogger(options: { name: string; level?: string; context?: LogContext }): Logger {
  const { context } = options;
  return pino(
    {
      name: options.name,
      level: options.level ?? process.env.AUTOPRUNE_LOG_LEVEL ?? 'info',
      ...(context ? { mixin: () => context.fields() } : {}),
    },
    pino.destination(2),
  );
}
