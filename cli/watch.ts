import { describeValue, InputError } from '../shared/errors.js';
import { formatRunEvent } from '../shared/events/format.js';
import { checkNatsUrl, connectNatsEventSource } from '../shared/events/nats-bus.js';
import { checkRunId } from '../shared/events/run-id.js';
import { createLogger, type Logger } from '../shared/logging.js';
import { defineCommand, formatHelp, parseCommand } from './command.js';

export const WATCH_COMMAND = defineCommand({
  name: 'watch',
  summary: "follows a run's events live from NATS, one line each",
  usage: ['watch <runId> --nats URL [--json] [--timeout SECONDS]'],
  description:
    "Follows a run's events live, one line each (--json: the raw events), from the NATS server the run publishes to\n" +
    '(`run --nats URL`). Exits 0 when the run finishes, 1 when it fails or SECONDS pass first, 2 on bad arguments or\n' +
    'an unreachable server.',
  arguments: [{ name: '<runId>', description: "the run's id (--run-id of run or coordinator)" }],
  options: {
    nats: { type: 'string', value: 'URL', description: 'the NATS server the run publishes to (required)', env: 'AUTOPRUNE_NATS_URL' },
    json: { type: 'boolean', description: 'prints each event as its JSON envelope' },
    timeout: { type: 'string', value: 'SECONDS', description: 'gives up (exit 1) after this long', defaultText: 'none' },
  },
  examples: ['watch quickstart-mnist-2025-01-01T00-00-00-000Z --nats nats://127.0.0.1:4222'],
});

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
  let options: WatchOptions | 'help';
  try {
    options = parseWatchArgs(argv);
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    io.stderr.write(`autoprune watch: ${error.message}\nusage: autoprune ${WATCH_COMMAND.usage[0]} (autoprune watch --help says more)\n`);
    return 2;
  }
  if (options === 'help') {
    io.stdout.write(`${formatHelp(WATCH_COMMAND)}\n`);
    return 0;
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

function parseWatchArgs(argv: string[]): WatchOptions | 'help' {
  const parsed = parseCommand(WATCH_COMMAND, argv);
  if (parsed.help) return 'help';
  const { values, positionals } = parsed;
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
