import { randomBytes } from 'node:crypto';
import { basename, resolve } from 'node:path';
import type { Coordinator, RunOutcome } from '../coordinator/coordinator.js';
import { FENCED_OUT_EXIT_STATUS, LocalWorkers } from '../coordinator/local-workers.js';
import { formatReport, type RunReport } from '../coordinator/report.js';
import { RUN_FILES, RunDirectory } from '../coordinator/run-directory.js';
import { serveCoordinator } from '../coordinator/serve.js';
import { decodeEnvironment } from '../engine/data/imagenet/decode-environment.js';
import { decodeThreads } from '../engine/data/imagenet/source.js';
import type { StoredCheckpoint } from '../shared/checkpoint-store.js';
import { loadConfig, type RunConfig } from '../shared/config.js';
import { describeValue, InputError } from '../shared/errors.js';
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
  CLUSTER_OPTIONS,
  defaultWorkerId,
  gracePeriodFrom,
  JOIN_TOKEN_ENVIRONMENT,
  joinTokenFrom,
  maxMessageBytesFrom,
  metricsPortFrom,
  tlsEnvironment,
  tlsFrom,
} from './cluster-options.js';
import { defineCommand, parseCommand, printHelp } from './command.js';
import { parseDuration } from './duration.js';
import { healthListenFrom } from './health-listen.js';
import { serveCoordinatorMetrics, serveWorkerMetrics } from './metrics-endpoint.js';
import { NEW_RUN_OPTIONS, newRun } from './new-run.js';
import { interactiveLogger, progressReporter, showProgress } from './progress.js';
import { RESUME_OR_START_OPTION, resumeOrStart } from './resume-or-start.js';
import { handleStopSignals, Interrupted, type StopSignal, type StopSignals } from './signals.js';

/** `autoprune run`, `autoprune coordinator` and `autoprune worker`: the distributed launch modes. */

/** Replacements the embedded launcher starts for workers that exit, over the whole run. */
const DEFAULT_MAX_RESTARTS = 3;

/** How long a worker keeps registering while no coordinator answers (a Kubernetes pod sets minutes). */
const DEFAULT_CONNECT_TIMEOUT = '60s';

/** The options `run` and `coordinator` share. */
const RUN_SETUP_OPTIONS = {
  resume: { type: 'string', value: 'RUN_DIR', description: 'continues the run in RUN_DIR from its newest valid checkpoint (instead of a config file)' },
  'resume-or-start': RESUME_OR_START_OPTION,
  ...NEW_RUN_OPTIONS,
  'run-id': {
    type: 'string',
    value: 'ID',
    description: "the run's id in its events",
    defaultText: 'the config name and the time (with --resume: the directory name)',
  },
  nats: { type: 'string', value: 'URL', description: "publishes the run's events to this NATS server too (for autoprune watch)", env: 'AUTOPRUNE_NATS_URL' },
  ...CLUSTER_OPTIONS,
} as const;

export const RUN_COMMAND = defineCommand({
  name: 'run',
  summary: 'a distributed run on this machine: the coordinator here and N worker processes on loopback',
  usage: [
    'run <config.yaml> [--workers N] [--max-restarts N] [--out DIR] [--run-id ID] [--nats URL] [--backend B] [--set k=v ...]',
    'run --resume RUN_DIR [--workers N] [--max-restarts N] [--run-id ID] [--nats URL]',
    'run <config.yaml> --resume-or-start --out DIR [...]',
  ],
  description:
    'The embedded default: a coordinator in this process and N local worker processes that train together over\n' +
    'loopback; a worker that exits is replaced up to --max-restarts times. Writes the same run directory as train.\n' +
    "SIGTERM and SIGINT collect the workers' state for a final checkpoint within the grace period, then exit 143 / 130.",
  arguments: [{ name: '<config.yaml>', description: "the run config (not with --resume, which takes the run directory's own)" }],
  options: {
    workers: { type: 'string', value: 'N', description: 'workers to train with', default: '2' },
    'max-restarts': {
      type: 'string',
      value: 'N',
      description: 'replacements started for workers that exit, over the whole run',
      default: String(DEFAULT_MAX_RESTARTS),
    },
    listen: { type: 'string', value: 'HOST:PORT', description: "the coordinator's address (port 0: any free port)", default: '127.0.0.1:0' },
    ...RUN_SETUP_OPTIONS,
  },
  examples: ['run examples/quickstart-mnist.yaml --workers 2 --out runs/quick', 'run --resume runs/quick --workers 2'],
});

export const COORDINATOR_COMMAND = defineCommand({
  name: 'coordinator',
  summary: 'serves one run to N workers that join it over the network',
  usage: ['coordinator (<config.yaml> [--resume-or-start] | --resume RUN_DIR) --workers N [--listen HOST:PORT] [--out DIR] [--run-id ID] [--nats URL]'],
  description:
    'The coordinator alone (a Kubernetes Job, say): waits for --workers workers, runs the plan, writes the run directory.\n' +
    "SIGTERM and SIGINT collect the workers' state for a final checkpoint within the grace period, then exit 143 / 130.",
  arguments: [{ name: '<config.yaml>', description: 'the run config (not with --resume)' }],
  options: {
    workers: { type: 'string', value: 'N', description: 'workers the run trains with (required)' },
    listen: { type: 'string', value: 'HOST:PORT', description: 'where to serve the workers', default: '127.0.0.1:7070', env: 'AUTOPRUNE_LISTEN' },
    ...RUN_SETUP_OPTIONS,
  },
  environment: [JOIN_TOKEN_ENVIRONMENT],
  examples: ['coordinator examples/lenet300-mnist.yaml --workers 4 --listen 0.0.0.0:7070 --nats nats://nats:4222'],
});

export const WORKER_COMMAND = defineCommand({
  name: 'worker',
  summary: 'joins a run served by a coordinator and trains until it is over',
  usage: [
    'worker --coordinator HOST:PORT [--id ID] [--listen HOST:PORT] [--data-listen HOST:PORT] [--advertise HOST] [--config FILE] [--connect-timeout DURATION]',
  ],
  description: `Registers with the coordinator, trains its share of every step, and exits 0 when the run is over; exits ${FENCED_OUT_EXIT_STATUS} when it\nis fenced out of a run that goes on without it.`,
  options: {
    coordinator: { type: 'string', value: 'HOST:PORT', description: "the coordinator's address (required)", env: 'AUTOPRUNE_COORDINATOR' },
    id: { type: 'string', value: 'ID', description: "this worker's id in the run", defaultText: '<hostname>-<pid>', env: 'AUTOPRUNE_WORKER_ID' },
    advertise: { type: 'string', value: 'HOST', description: 'the address its peers reach it at', default: '127.0.0.1', env: 'AUTOPRUNE_ADVERTISE' },
    listen: { type: 'string', value: 'HOST:PORT', description: 'where it serves the gRPC collective', defaultText: '<advertise>:0', env: 'AUTOPRUNE_LISTEN' },
    'data-listen': {
      type: 'string',
      value: 'HOST:PORT',
      description: "where it serves the ring's raw data channel",
      defaultText: '<advertise>:0',
      env: 'AUTOPRUNE_DATA_LISTEN',
    },
    config: { type: 'string', value: 'config.yaml', description: 'refuses to join unless the run has exactly this config' },
    'connect-timeout': {
      type: 'string',
      value: 'DURATION',
      description: 'how long it keeps registering while no coordinator answers (600, 600s, 10m)',
      default: DEFAULT_CONNECT_TIMEOUT,
      env: 'AUTOPRUNE_CONNECT_TIMEOUT',
    },
    'sample-log': {
      type: 'string',
      value: 'FILE',
      description: 'appends the samples of each batch, one JSON line each (a sample audit)',
      env: 'AUTOPRUNE_SAMPLE_LOG',
    },
    ...CLUSTER_OPTIONS,
  },
  environment: [JOIN_TOKEN_ENVIRONMENT],
  examples: ['worker --coordinator coordinator:7070 --advertise $POD_IP --listen 0.0.0.0:7071 --data-listen 0.0.0.0:7072'],
});

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

/** What runSetup reads of the options `run` and `coordinator` share. */
interface RunSetupValues {
  readonly resume: string | undefined;
  readonly 'resume-or-start': boolean;
  readonly set: string[];
  readonly backend: string | undefined;
  readonly out: string | undefined;
  readonly workers: string | undefined;
  readonly 'run-id': string | undefined;
}

/**
 * A new run from a config file, (--resume DIR) a run directory's run from its newest valid checkpoint, or
 * (--resume-or-start --out DIR) whichever of the two DIR calls for (resume-or-start.ts).
 */
async function runSetup(command: string, values: RunSetupValues, positionals: readonly string[], logger: Logger): Promise<RunSetupResult> {
  const resume = values.resume;
  if (resume !== undefined) {
    for (const [flag, given] of [
      ['a config file', positionals.length > 0],
      ['--set', values.set.length > 0],
      ['--backend', values.backend !== undefined],
      ['--out', values.out !== undefined],
      ['--resume-or-start', values['resume-or-start']],
    ] as const) {
      if (given) throw new InputError('--resume', `takes the run directory's own config; ${flag} cannot change it`);
    }
  } else if (positionals.length !== 1)
    throw new InputError(`autoprune ${command}`, 'expects exactly one config file (or --resume RUN_DIR)', { found: `${positionals.length} arguments` });
  const workersText = values.workers;
  const workers = Number(workersText);
  if (workersText === undefined || !Number.isInteger(workers) || workers < 1) {
    throw new InputError('--workers', 'needs a whole number of workers, at least 1', { found: workersText ?? 'nothing' });
  }
  if (resume !== undefined) {
    const runDirectory = await RunDirectory.open(resume, logger);
    const resumeFrom = await runDirectory.checkpoints.latest();
    if (!resumeFrom)
      throw new InputError(resume, 'holds no valid checkpoint to resume from', {
        expected: `a ${RUN_FILES.checkpoints}/ directory with at least one complete checkpoint (--resume-or-start also starts a run that has none)`,
      });
    // A resumed run keeps its id, the run directory's name, so that watchers follow one run.
    const runId = checkRunId(values['run-id'] ?? basename(resolve(resume)).replace(/[^A-Za-z0-9_-]/g, '-'), '--run-id');
    return { setup: { config: runDirectory.config, workers, runDirectory, resumeFrom, runId } };
  }
  const given = { set: values.set, backend: values.backend, runId: values['run-id'], out: values.out };
  if (values['resume-or-start']) {
    const found = await resumeOrStart(positionals[0]!, given, logger);
    return found.kind === 'completed' ? { completed: found } : { setup: { ...found, workers } };
  }
  return { setup: { ...(await newRun(positionals[0]!, given, logger)), workers, resumeFrom: undefined } };
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
  const parsed = parseCommand(RUN_COMMAND, args);
  if (parsed.help) return printHelp(RUN_COMMAND);
  const { values, positionals } = parsed;
  const logContext = new LogContext();
  const { logger, interactive } = interactiveLogger('autoprune', logContext);
  const { setup, completed } = await runSetup('run', values, positionals, logger);
  if (completed) return reportCompleted(completed);
  const graceMs = gracePeriodFrom(values);
  const maxRestarts = maxRestartsFrom(values['max-restarts']);
  const tls = tlsFrom(values);
  const maxMessageBytes = maxMessageBytesFrom(values);
  const bus = new InProcessEventBus();
  const events = await openPublishers(setup, values.nats, bus, logger);
  const subscription = await bus.subscribe(setup.runId);
  const progress = progressReporter(logger, interactive);
  const display = showProgress(subscription, progress);
  const joinToken = randomBytes(24).toString('hex');
  const healthListen = healthListenFrom(values['health-listen']);
  const serving = await serveCoordinator({ ...setup, joinToken, events, logger, listen: values.listen, healthListen, tls, maxMessageBytes });
  const { coordinator } = serving;
  logContext.follow(() => coordinator.logFields());
  const host = parseHostPort(values.listen, '--listen').host;
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
  const parsed = parseCommand(COORDINATOR_COMMAND, args);
  if (parsed.help) return printHelp(COORDINATOR_COMMAND);
  const { values, positionals } = parsed;
  const logContext = new LogContext();
  const logger = createLogger({ name: 'autoprune-coordinator', context: logContext });
  const { setup, completed } = await runSetup('coordinator', values, positionals, logger);
  if (completed) return reportCompleted(completed);
  const graceMs = gracePeriodFrom(values);
  const listen = addressSetting(values.listen, '--listen', 'AUTOPRUNE_LISTEN');
  const joinToken = joinTokenFrom(values);
  const bus = new InProcessEventBus();
  const events = await openPublishers(setup, values.nats, bus, logger);
  const serving = await serveCoordinator({
    ...setup,
    joinToken,
    events,
    logger,
    listen,
    healthListen: healthListenFrom(values['health-listen']),
    tls: tlsFrom(values),
    maxMessageBytes: maxMessageBytesFrom(values),
  });
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
  const parsed = parseCommand(WORKER_COMMAND, args);
  if (parsed.help) return printHelp(WORKER_COMMAND);
  const { values, positionals } = parsed;
  if (positionals.length > 0) throw new InputError('autoprune worker', 'takes no arguments, only options', { found: describeValue(positionals[0]) });
  const coordinatorAddress = values.coordinator;
  if (coordinatorAddress === undefined)
    throw new InputError('--coordinator', 'is required', { expected: 'HOST:PORT of the coordinator (or AUTOPRUNE_COORDINATOR)' });
  parseHostPort(coordinatorAddress, '--coordinator');
  const advertiseHost = values.advertise;
  // By default the worker binds exactly where it says it can be reached, nowhere else.
  const listen = addressSetting(values.listen ?? formatHostPort(advertiseHost, 0), '--listen', 'AUTOPRUNE_LISTEN');
  const dataListen = addressSetting(values['data-listen'] ?? formatHostPort(advertiseHost, 0), '--data-listen', 'AUTOPRUNE_DATA_LISTEN');
  const workerId = values.id ?? defaultWorkerId();
  const connectTimeoutMs = parseDuration(values['connect-timeout'], '--connect-timeout (or AUTOPRUNE_CONNECT_TIMEOUT)');
  const graceMs = gracePeriodFrom(values);
  const logContext = new LogContext();
  const logger = createLogger({ name: 'autoprune-worker', context: logContext }).child({ workerId });
  const metricsPort = metricsPortFrom(values);
  const served =
    metricsPort === undefined ? undefined : await serveWorkerMetrics(workerId, { host: parseHostPort(listen, '--listen').host, port: metricsPort }, logger);
  exitWithLauncher(logger);
  const stop = new AbortController();
  const signals = handleStopSignals(graceMs, logger, (signal) => stop.abort(signal));
  const outcome = await runWorker({
    workerId,
    coordinator: coordinatorAddress,
    joinToken: joinTokenFrom(values),
    listen,
    dataListen,
    healthListen: healthListenFrom(values['health-listen']),
    advertiseHost,
    maxMessageBytes: maxMessageBytesFrom(values),
    tls: tlsFrom(values),
    config: values.config === undefined ? undefined : await loadConfig(values.config),
    connectTimeoutMs,
    sampleLog: values['sample-log'],
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

/**
 * A worker that `autoprune run` started has an IPC channel to it (local-workers.ts). When the launcher dies,
 * even by SIGKILL, the channel closes: the worker exits at once instead of outliving its run (holding its
 * device and the launcher's output pipes) until its connect timeout.
 */
function exitWithLauncher(logger: Logger): void {
  if (process.channel === undefined) return;
  process.channel.unref();
  process.once('disconnect', () => {
    logger.error({ event: 'worker.orphaned' }, 'the autoprune run that started this worker has exited; stopping');
    process.exit(1);
  });
}

function maxRestartsFrom(text: string): number {
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
