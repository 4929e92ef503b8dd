import { randomBytes } from 'node:crypto';
import { basename, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Coordinator, RunOutcome } from '../coordinator/coordinator.js';
import { FENCED_OUT_EXIT_STATUS, LocalWorkers } from '../coordinator/local-workers.js';
import { formatReport, type RunReport } from '../coordinator/report.js';
import { RUN_FILES, RunDirectory } from '../coordinator/run-directory.js';
import { serveCoordinator } from '../coordinator/serve.js';
import { decodeEnvironment } from '../engine/data/imagenet/decode-environment.js';
import { decodeThreads } from '../engine/data/imagenet/source.js';
import type { StoredCheckpoint } from '../shared/checkpoint-store.js';
import { loadConfig, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { EventPublisher } from '../shared/events/bus.js';
import { InProcessEventBus } from '../shared/events/in-process-bus.js';
import { openEventPublisher } from '../shared/events/open-publisher.js';
import { checkRunId } from '../shared/events/run-id.js';
import type { RunEvent, RunEventData, RunEventName } from '../shared/events/types.js';
import { createLogger, LogContext, type Logger } from '../shared/logging.js';
import { formatHostPort, parseHostPort } from '../shared/rpc/server.js';
import { runWorker } from '../worker/worker-process.js';
import {
  addressSetting,
  CLUSTER_FLAGS,
  defaultWorkerId,
  gracePeriodFrom,
  joinTokenFrom,
  maxMessageBytesFrom,
  metricsPortFrom,
  setting,
  tlsEnvironment,
  tlsFrom,
} from './cluster-options.js';
import { parseDuration } from './duration.js';
import { serveCoordinatorMetrics, serveWorkerMetrics } from './metrics-endpoint.js';
import { newRun } from './new-run.js';
import { interactiveLogger, progressReporter, showProgress } from './progress.js';
import { resumeOrStart } from './resume-or-start.js';
import { DEFAULT_GRACE_PERIOD, handleStopSignals, Interrupted, type StopSignal, type StopSignals } from './signals.js';

/** `autoprune run`, `autoprune coordinator` and `autoprune worker`: the distributed launch modes. */

/** How long a worker keeps registering while no coordinator answers: long enough for a coordinator pod's restart is up to the manifests. */
const DEFAULT_CONNECT_TIMEOUT = '60s';

/** Replacements the embedded launcher starts for workers that exit, over the whole run. */
const DEFAULT_MAX_RESTARTS = 3;

export const DISTRIBUTED_USAGE = `  autoprune run <config.yaml> [--workers N] [--max-restarts N] [--out DIR] [--run-id ID] [--nats URL] [--backend B] [--set k=v ...]
  autoprune run --resume RUN_DIR [--workers N] [--max-restarts N] [--run-id ID] [--nats URL]
  autoprune run <config.yaml> --resume-or-start --out DIR [...]
      the embedded default: a coordinator in this process and N local worker processes on loopback
      (default 2), a worker that exits replaced up to --max-restarts times (default ${DEFAULT_MAX_RESTARTS});
      same outputs as train; --resume continues a run from its newest valid checkpoint; --resume-or-start
      resumes the run in DIR if there is one, else starts it (the same command line for every start)
  autoprune coordinator (<config.yaml> [--resume-or-start] | --resume RUN_DIR) --workers N [--listen HOST:PORT] [--out DIR]
                        [--run-id ID] [--nats URL] [--metrics-port PORT]
      serves a run for N workers that join it (env: AUTOPRUNE_LISTEN, AUTOPRUNE_NATS_URL, AUTOPRUNE_JOIN_TOKEN)
  autoprune worker --coordinator HOST:PORT [--id ID] [--listen HOST:PORT] [--data-listen HOST:PORT]
                   [--advertise HOST] [--config config.yaml] [--connect-timeout DURATION] [--sample-log FILE] [--metrics-port PORT]
      joins a run (env: AUTOPRUNE_COORDINATOR, AUTOPRUNE_WORKER_ID, AUTOPRUNE_LISTEN, AUTOPRUNE_DATA_LISTEN,
      AUTOPRUNE_ADVERTISE, AUTOPRUNE_JOIN_TOKEN); --connect-timeout (env AUTOPRUNE_CONNECT_TIMEOUT, default
      ${DEFAULT_CONNECT_TIMEOUT}; 600, 600s, 10m): how long it keeps registering while no coordinator answers;
      exits ${FENCED_OUT_EXIT_STATUS} when fenced out of a run that goes on
  common to the three: [--tls-cert PEM --tls-key PEM [--tls-ca PEM]] [--join-token-file PATH] [--max-message-mb N]
      [--grace-period DURATION]: SIGTERM/SIGINT write a final checkpoint, then exit 143/130 within it
      (env AUTOPRUNE_GRACE_PERIOD, default ${DEFAULT_GRACE_PERIOD}); [--metrics-port PORT]: a Prometheus endpoint
      at http://HOST:PORT/metrics on the host the process serves on (env AUTOPRUNE_METRICS_PORT; default none;
      0: any free port; on \`run\`, the coordinator's)`;

const RUN_FLAGS = {
  ...CLUSTER_FLAGS,
  workers: { type: 'string' },
  'max-restarts': { type: 'string' },
  out: { type: 'string' },
  'run-id': { type: 'string' },
  nats: { type: 'string' },
  backend: { type: 'string' },
  set: { type: 'string', multiple: true },
  listen: { type: 'string' },
  resume: { type: 'string' },
  'resume-or-start': { type: 'boolean' },
} as const;

interface RunSetup {
  readonly config: RunConfig;
  readonly workers: number;
  readonly runDirectory: RunDirectory;
  readonly resumeFrom: StoredCheckpoint | undefined;
  readonly runId: string;
}

/** What the command line names: a run to serve, or (--resume-or-start) one that has already completed. */
type RunSetupResult = { readonly setup: RunSetup; readonly completed?: undefined } | { readonly setup?: undefined; readonly completed: CompletedRun };

interface CompletedRun {
  readonly report: RunReport;
  readonly runDirectory: string;
}

/**
 * A new run from a config file, (--resume DIR) a run directory's run from its newest valid checkpoint, or
 * (--resume-or-start --out DIR) whichever of the two DIR calls for (resume-or-start.ts).
 */
async function runSetup(command: string, args: string[], defaultWorkers: number | undefined, logger: Logger) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: RUN_FLAGS });
  const resume = values.resume;
  if (resume !== undefined) {
    for (const [flag, given] of [
      ['a config file', positionals.length > 0],
      ['--set', values.set !== undefined],
      ['--backend', values.backend !== undefined],
      ['--out', values.out !== undefined],
      ['--resume-or-start', values['resume-or-start'] === true],
    ] as const) {
      if (given) throw new InputError('--resume', `takes the run directory's own config; ${flag} cannot change it`);
    }
  } else if (positionals.length !== 1)
    throw new InputError(`autoprune ${command}`, 'expects exactly one config file (or --resume RUN_DIR)', { found: `${positionals.length} arguments` });
  const workersText = values.workers ?? (defaultWorkers === undefined ? undefined : String(defaultWorkers));
  const workers = Number(workersText);
  if (workersText === undefined || !Number.isInteger(workers) || workers < 1) {
    throw new InputError('--workers', 'needs a whole number of workers, at least 1', { found: workersText ?? 'nothing' });
  }
  const given = { set: values.set, backend: values.backend, runId: values['run-id'], out: values.out };
  let result: RunSetupResult;
  if (resume !== undefined) {
    const runDirectory = await RunDirectory.open(resume, logger);
    const resumeFrom = await runDirectory.checkpoints.latest();
    if (!resumeFrom)
      throw new InputError(resume, 'holds no valid checkpoint to resume from', {
        expected: `a ${RUN_FILES.checkpoints}/ directory with at least one complete checkpoint (--resume-or-start also starts a run that has none)`,
      });
    // A resumed run keeps its id, the run directory's name, so that watchers follow one run.
    const runId = checkRunId(values['run-id'] ?? basename(resolve(resume)).replace(/[^A-Za-z0-9_-]/g, '-'), '--run-id');
    result = { setup: { config: runDirectory.config, workers, runDirectory, resumeFrom, runId } };
  } else if (values['resume-or-start']) {
    const found = await resumeOrStart(positionals[0]!, given, logger);
    result = found.kind === 'completed' ? { completed: found } : { setup: { ...found, workers } };
  } else {
    result = { setup: { ...(await newRun(positionals[0]!, given, logger)), workers, resumeFrom: undefined } };
  }
  return { ...result, values };
}

/** A run that --resume-or-start found completed: its report again, and nothing to do. */
function reportCompleted(completed: CompletedRun): void {
  process.stdout.write(`${formatReport(completed.report)}\n\nrun directory: ${completed.runDirectory} (already completed; nothing to do)\n`);
}

/** Sends each event to every publisher (NATS for the cluster, the in-process bus for this terminal). */
function fanOut(publishers: EventPublisher[]): EventPublisher {
  return {
    runId: publishers[0]!.runId,
    publish: <E extends RunEventName>(event: E, data: RunEventData<E>): RunEvent<E> => publishers.map((p) => p.publish(event, data))[0]!,
    flush: async () => void (await Promise.all(publishers.map((p) => p.flush()))),
    close: async () => void (await Promise.all(publishers.map((p) => p.close()))),
  };
}

async function openPublishers(setup: RunSetup, natsUrl: string | undefined, bus: InProcessEventBus, logger: Logger): Promise<EventPublisher> {
  const publishers = [await openEventPublisher({ runId: setup.runId, bus })];
  if (natsUrl !== undefined) publishers.push(await openEventPublisher({ runId: setup.runId, natsUrl, name: `autoprune-coordinator-${setup.runId}`, logger }));
  return fanOut(publishers);
}

/** A worker decoding ImageNet needs libuv threads for its decoders and the malloc thresholds from its start. */
function workerDecodeEnvironment(config: RunConfig): NodeJS.ProcessEnv {
  if (config.data.dataset !== 'imagenet') return {};
  const { UV_THREADPOOL_SIZE, GLIBC_TUNABLES } = decodeEnvironment(decodeThreads(config.data));
  return { UV_THREADPOOL_SIZE, GLIBC_TUNABLES };
}

/** `autoprune run`: coordinator here, N workers as child processes on loopback. */
export async function run(args: string[]): Promise<void> {
  const logContext = new LogContext();
  const { logger, interactive } = interactiveLogger('autoprune', logContext);
  const { setup, completed, values } = await runSetup('run', args, 2, logger);
  if (completed) return reportCompleted(completed);
  const graceMs = gracePeriodFrom(values);
  const maxRestarts = maxRestartsFrom(values['max-restarts']);
  const tls = tlsFrom(values);
  const maxMessageBytes = maxMessageBytesFrom(values);
  const bus = new InProcessEventBus();
  const events = await openPublishers(setup, setting(values.nats, 'AUTOPRUNE_NATS_URL'), bus, logger);
  const subscription = await bus.subscribe(setup.runId);
  const progress = progressReporter(logger, interactive);
  const display = showProgress(subscription, progress);
  const joinToken = randomBytes(24).toString('hex');
  const serving = await serveCoordinator({ ...setup, joinToken, events, logger, listen: values.listen ?? '127.0.0.1:0', tls, maxMessageBytes });
  const { coordinator } = serving;
  logContext.follow(() => coordinator.logFields());
  const host = parseHostPort(values.listen ?? '127.0.0.1:0', '--listen').host;
  const address = formatHostPort(host, serving.port);
  const metricsPort = metricsPortFrom(values);
  const metrics = metricsPort === undefined ? undefined : await serveCoordinatorMetrics(coordinator, bus, { host, port: metricsPort }, logger);
  logger.info({ event: 'coordinator.listening', address, runId: setup.runId, workers: setup.workers }, `run ${setup.runId}: coordinator on ${address}`);
  const workers = new LocalWorkers({
    count: setup.workers,
    coordinator: address,
    joinToken,
    maxRestarts,
    env: {
      ...workerDecodeEnvironment(setup.config),
      AUTOPRUNE_MAX_MESSAGE_MB: String(maxMessageBytes / (1 << 20)),
      ...tlsEnvironment(values),
      ...(interactive ? { AUTOPRUNE_LOG_LEVEL: process.env.AUTOPRUNE_LOG_LEVEL ?? 'warn' } : {}),
    },
    logger,
    // Workers that leave a stopping run (a terminal's Ctrl-C reaches them too) are not replaced.
    runOver: () => coordinator.lifecycle.finished || coordinator.lifecycle.status === 'stopping',
    onLost: (workerId, how) => coordinator.workerLost(workerId, how, 0),
    onGiveUp: (reason) => coordinator.fail(reason),
  });
  const signals = stopGracefully(coordinator, graceMs, logger);
  try {
    const outcome = await coordinator.outcome();
    await subscription.close();
    await display;
    progress.stop();
    if (outcome.status === 'failed') throw runFailure(outcome, signals.received);
    process.stdout.write(`${formatReport(outcome.report!)}\n\nrun directory: ${outcome.runDirectory}\n`);
  } finally {
    progress.stop();
    await workers.stop();
    await serving.close();
    await metrics?.close();
    await events.close();
    signals.dispose();
  }
}

/** A stop signal stops the run gracefully: the workers' state is collected for a final checkpoint within half the grace period. */
function stopGracefully(coordinator: Coordinator, graceMs: number, logger: Logger): StopSignals {
  return handleStopSignals(graceMs, logger, (signal) =>
    coordinator.stopGracefully(`${signal} received`, graceMs / 2).catch((error: Error) => coordinator.fail(`the graceful stop failed: ${error.message}`)),
  );
}

/** `autoprune coordinator`: serves one run to workers that join over the network. */
export async function coordinator(args: string[]): Promise<void> {
  const logContext = new LogContext();
  const logger = createLogger({ name: 'autoprune-coordinator', context: logContext });
  const { setup, completed, values } = await runSetup('coordinator', args, undefined, logger);
  if (completed) return reportCompleted(completed);
  const graceMs = gracePeriodFrom(values);
  if (values['max-restarts'] !== undefined)
    throw new InputError('--max-restarts', 'belongs to autoprune run: a coordinator starts no workers to replace', { found: values['max-restarts'] });
  const listen = addressSetting(values.listen, 'AUTOPRUNE_LISTEN', '127.0.0.1:7070', '--listen');
  const joinToken = joinTokenFrom(values);
  const bus = new InProcessEventBus();
  const events = await openPublishers(setup, setting(values.nats, 'AUTOPRUNE_NATS_URL'), bus, logger);
  const serving = await serveCoordinator({ ...setup, joinToken, events, logger, listen, tls: tlsFrom(values), maxMessageBytes: maxMessageBytesFrom(values) });
  const metricsPort = metricsPortFrom(values);
  const metrics =
    metricsPort === undefined
      ? undefined
      : await serveCoordinatorMetrics(serving.coordinator, bus, { host: parseHostPort(listen, '--listen').host, port: metricsPort }, logger);
  logger.info(
    { event: 'coordinator.listening', listen, port: serving.port, runId: setup.runId, workers: setup.workers },
    `run ${setup.runId}: waiting for ${setup.workers} workers on port ${serving.port}`,
  );
  logContext.follow(() => serving.coordinator.logFields());
  const signals = stopGracefully(serving.coordinator, graceMs, logger);
  try {
    const outcome = await serving.coordinator.outcome();
    // Give workers a moment to collect their Finish before the server goes.
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (outcome.status === 'failed') throw runFailure(outcome, signals.received);
    process.stdout.write(`${formatReport(outcome.report!)}\n\nrun directory: ${outcome.runDirectory}\n`);
  } finally {
    await serving.close();
    await metrics?.close();
    await events.close();
    signals.dispose();
  }
}

/** `autoprune worker`: joins a run and trains until it is over, or until it is fenced out of it (exit status 3). */
export async function worker(args: string[]): Promise<number | undefined> {
  const { values } = parseArgs({
    args,
    allowPositionals: false,
    options: {
      ...CLUSTER_FLAGS,
      coordinator: { type: 'string' },
      id: { type: 'string' },
      listen: { type: 'string' },
      'data-listen': { type: 'string' },
      advertise: { type: 'string' },
      config: { type: 'string' },
      'connect-timeout': { type: 'string' },
      'sample-log': { type: 'string' },
    },
  });
  const coordinatorAddress = setting(values.coordinator, 'AUTOPRUNE_COORDINATOR');
  if (coordinatorAddress === undefined)
    throw new InputError('--coordinator', 'is required', { expected: 'HOST:PORT of the coordinator (or AUTOPRUNE_COORDINATOR)' });
  parseHostPort(coordinatorAddress, '--coordinator');
  const advertiseHost = setting(values.advertise, 'AUTOPRUNE_ADVERTISE', '127.0.0.1')!;
  // By default the worker binds exactly where it says it can be reached, nowhere else.
  const listen = addressSetting(values.listen, 'AUTOPRUNE_LISTEN', formatHostPort(advertiseHost, 0), '--listen');
  const dataListen = addressSetting(values['data-listen'], 'AUTOPRUNE_DATA_LISTEN', formatHostPort(advertiseHost, 0), '--data-listen');
  const workerId = setting(values.id, 'AUTOPRUNE_WORKER_ID', defaultWorkerId())!;
  const connectTimeout = setting(values['connect-timeout'], 'AUTOPRUNE_CONNECT_TIMEOUT', DEFAULT_CONNECT_TIMEOUT)!;
  const connectTimeoutMs = parseDuration(connectTimeout, values['connect-timeout'] !== undefined ? '--connect-timeout' : 'AUTOPRUNE_CONNECT_TIMEOUT');
  const graceMs = gracePeriodFrom(values);
  const logContext = new LogContext();
  const logger = createLogger({ name: 'autoprune-worker', context: logContext }).child({ workerId });
  const metricsPort = metricsPortFrom(values);
  const served =
    metricsPort === undefined ? undefined : await serveWorkerMetrics(workerId, { host: parseHostPort(listen, '--listen').host, port: metricsPort }, logger);
  const stop = new AbortController();
  const signals = handleStopSignals(graceMs, logger, (signal) => stop.abort(signal));
  const outcome = await runWorker({
    workerId,
    coordinator: coordinatorAddress,
    joinToken: joinTokenFrom(values),
    listen,
    dataListen,
    advertiseHost,
    maxMessageBytes: maxMessageBytesFrom(values),
    tls: tlsFrom(values),
    config: values.config === undefined ? undefined : await loadConfig(values.config),
    connectTimeoutMs,
    sampleLog: setting(values['sample-log'], 'AUTOPRUNE_SAMPLE_LOG'),
    logger,
    stop: stop.signal,
    metrics: served?.metrics,
    logContext,
  }).finally(async () => {
    signals.dispose();
    await served?.close();
  });
  if (outcome.status === 'stopped') throw new Interrupted(signals.received ?? 'SIGTERM', outcome.reason, undefined);
  if (outcome.status === 'failed') throw runFailure({ reason: outcome.reason, badInput: outcome.cause instanceof InputError, interrupted: false }, undefined);
  if (outcome.status === 'fenced') {
    process.stderr.write(`autoprune worker: ${outcome.reason}\n`);
    return FENCED_OUT_EXIT_STATUS;
  }
  return undefined;
}

function maxRestartsFrom(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MAX_RESTARTS;
  if (!/^\d+$/.test(text)) throw new InputError('--max-restarts', 'needs a whole number of replacements, 0 or more', { found: JSON.stringify(text) });
  return Number(text);
}

/**
 * Why a run failed, as the CLI reports it: bad input (exit 2) when a worker refused the run's data or config,
 * interrupted (130, 143) when it was stopped by a signal after its final checkpoint, failed (1) otherwise.
 */
export function runFailure(
  outcome: Pick<RunOutcome, 'reason' | 'badInput' | 'interrupted'> & { readonly runDirectory?: string },
  signal: StopSignal | undefined,
): Error {
  const why = outcome.reason ?? 'unknown reason';
  if (outcome.interrupted) return new Interrupted(signal ?? 'SIGTERM', why, outcome.runDirectory);
  return outcome.badInput ? new InputError('bad input', why) : new RunFailed(why, outcome.runDirectory);
}

/** The run ended in failure: the CLI prints the reason and exits 1 (not 2: the input was fine). */
export class RunFailed extends Error {
  constructor(
    reason: string,
    readonly runDirectory: string | undefined,
  ) {
    super(`run failed: ${reason}`);
    this.name = 'RunFailed';
  }
}
