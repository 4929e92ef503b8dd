import { parseArgs } from 'node:util';
import { describeValue, InputError } from '../shared/errors.js';
import { formatRunEvent } from '../shared/events/format.js';
import { checkNatsUrl, connectNatsEventSource } from '../shared/events/nats-bus.js';
import { checkRunId } from '../shared/events/run-id.js';
import { createLogger, type Logger } from '../shared/logging.js';

export const WATCH_USAGE = `autoprune watch <runId> --nats URL [--json] [--timeout SECONDS]
      follows a run's events live, one line each (--json: the raw events); exits 0 when the run
      finishes, 1 when it fails or SECONDS pass first, 2 on bad arguments or an unreachable server`;

export interface WatchIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
  /** For reconnects and rejected messages; a logger on stderr when not given. */
  readonly logger?: Logger;
}

interface WatchOptions {
  readonly runId: string;
  readonly url: string;
  readonly json: boolean;
  readonly timeoutSeconds: number | undefined;
}

/** `autoprune watch`: returns the exit status rather than exiting, so that it can run in-process. */
export async function watchCommand(argv: string[], io: WatchIo): Promise<number> {
  let options: WatchOptions;
  try {
    options = parseWatchArgs(argv);
  } catch (error) {
    const argumentError = error instanceof TypeError && (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS');
    if (!(error instanceof InputError) && !argumentError) throw error;
    io.stderr.write(`autoprune watch: ${(error as Error).message}\nusage: ${WATCH_USAGE}\n`);
    return 2;
  }
  try {
    return await watch(options, io);
  } catch (error) {
    // A URL that no server answers at: the message names it; the usage would add nothing.
    if (!(error instanceof InputError)) throw error;
    io.stderr.write(`autoprune watch: ${error.message}\n`);
    return 2;
  }
}

function parseWatchArgs(argv: string[]): WatchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { nats: { type: 'string' }, json: { type: 'boolean', default: false }, timeout: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new InputError('arguments', 'expected exactly one run id', { found: `${positionals.length} arguments` });
  const runId = checkRunId(positionals[0]!, 'autoprune watch <runId>');
  // A watcher runs in its own process, so the in-process bus cannot serve it.
  if (values.nats === undefined) throw new InputError('--nats', 'is required: the URL of the NATS server the run publishes to');
  let timeoutSeconds: number | undefined;
  if (values.timeout !== undefined) {
    timeoutSeconds = Number(values.timeout);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) {
      throw new InputError('--timeout', 'must be a positive number of seconds', { found: describeValue(values.timeout) });
    }
  }
  return { runId, url: checkNatsUrl(values.nats), json: values.json, timeoutSeconds };
}

async function watch(options: WatchOptions, io: WatchIo): Promise<number> {
  const logger = io.logger ?? createLogger({ name: 'autoprune-watch' });
  const source = await connectNatsEventSource({ url: options.url, name: `autoprune-watch-${options.runId}`, logger });
  try {
    const subscription = await source.subscribe(options.runId);
    io.stderr.write(`autoprune watch: following run ${options.runId} on ${options.url}\n`);
    let timedOut = false;
    const timer =
      options.timeoutSeconds === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            void subscription.close();
          }, options.timeoutSeconds * 1000);
    try {
      for await (const event of subscription) {
        io.stdout.write(`${options.json ? JSON.stringify(event) : formatRunEvent(event)}\n`);
        if (event.event === 'run.finished') return 0;
        if (event.event === 'run.failed') return 1;
      }
    } finally {
      clearTimeout(timer);
    }
    io.stderr.write(
      timedOut
        ? `autoprune watch: run ${options.runId} neither finished nor failed within ${options.timeoutSeconds} s\n`
        : `autoprune watch: the connection to ${options.url} closed before run ${options.runId} ended\n`,
    );
    return 1;
  } finally {
    await source.close();
  }
}
