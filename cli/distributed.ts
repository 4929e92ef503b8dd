import { randomBytes } from 'node:crypto';
import { basename, resolve } from 'node:path';
import { FENCED_OUT_EXIT_STATUS, LocalWorkers } from '../coordinator/local-workers.js';
import { formatReport } from '../coordinator/report.js';
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
import { createLogger, type Logger } from '../shared/logging.js';
import { formatHostPort, parseHostPort } from '../shared/rpc/server.js';
import { runWorker } from '../worker/worker-process.js';
import {
  addressSetting,
  CLUSTER_OPTIONS,
  defaultWorkerId,
  JOIN_TOKEN_ENVIRONMENT,
  joinTokenFrom,
  maxMessageBytesFrom,
  tlsEnvironment,
  tlsFrom,
} from './cluster-options.js';
import { defineCommand, parseCommand, printHelp } from './command.js';
import { healthListenFrom } from './health-listen.js';
import { NEW_RUN_OPTIONS, newRun } from './new-run.js';
import { interactiveLogger, progressReporter, showProgress } from './progress.js';

/** `autoprune run`, `autoprune coordinator` and `autoprune worker`: the distributed launch modes. */

/** Replacements the embedded launcher starts for workers that exit, over the whole run. */
const DEFAULT_MAX_RESTARTS = 3;

/** The options `run` and `coordinator` share. */
const RUN_SETUP_OPTIONS = {
  resume: { type: 'string', value: 'RUN_DIR', description: 'continues the run in RUN_DIR from its newest valid checkpoint (instead of a config file)' },
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
  ],
  description:
    'The embedded default: a coordinator in this process and N local worker processes that train together over\n' +
    'loopback; a worker that exits is replaced up to --max-restarts times. Writes the same run directory as train.',
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
  usage: ['coordinator (<config.yaml> | --resume RUN_DIR) --workers N [--listen HOST:PORT] [--out DIR] [--run-id ID] [--nats URL]'],
  description: 'The coordinator alone (a Kubernetes Deployment, say): waits for --workers workers, runs the plan, writes the run directory.',
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
  usage: ['worker --coordinator HOST:PORT [--id ID] [--listen HOST:PORT] [--data-listen HOST:PORT] [--advertise HOST] [--config FILE] [--connect-timeout S]'],
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
    'connect-timeout': { type: 'string', value: 'SECONDS', description: 'how long to wait for the coordinator to answer', default: '60' },
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

/** What runSetup reads of the options `run` and `coordinator` share. */
interface RunSetupValues {
  readonly resume: string | undefined;
  readonly set: string[];
  readonly backend: string | undefined;
  readonly out: string | undefined;
  readonly workers: string | undefined;
  readonly 'run-id': string | undefined;
}

/** A new run from a config file, or (--resume DIR) a run directory's run from its newest valid checkpoint. */
async function runSetup(command: string, values: RunSetupValues, positionals: readonly string[], logger: Logger): Promise<RunSetup> {
  const resume = values.resume;
  if (resume !== undefined) {
    for (const [flag, given] of [
      ['a config file', positionals.length > 0],
      ['--set', values.set.length > 0],
      ['--backend', values.backend !== undefined],
      ['--out', values.out !== undefined],
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
        expected: `a ${RUN_FILES.checkpoints}/ directory with at least one complete checkpoint`,
      });
    // A resumed run keeps its id, the run directory's name, so that watchers follow one run.
    const runId = checkRunId(values['run-id'] ?? basename(resolve(resume)).replace(/[^A-Za-z0-9_-]/g, '-'), '--run-id');
    const setup: RunSetup = { config: runDirectory.config, workers, runDirectory, resumeFrom, runId };
    return setup;
  }
  const run = await newRun(positionals[0]!, { set: values.set, backend: values.backend, runId: values['run-id'], out: values.out }, logger);
  return { ...run, workers, resumeFrom: undefined };
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
  const { logger, interactive } = interactiveLogger('autoprune');
  const setup = await runSetup('run', values, positionals, logger);
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
  const address = formatHostPort(parseHostPort(values.listen, '--listen').host, serving.port);
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
    runOver: () => coordinator.lifecycle.finished,
    onLost: (workerId, how) => coordinator.workerLost(workerId, how, 0),
    onGiveUp: (reason) => coordinator.fail(reason),
  });
  const stopOnSignal = () => coordinator.fail('interrupted');
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  try {
    const outcome = await coordinator.outcome();
    await subscription.close();
    await display;
    progress.stop();
    if (outcome.status === 'failed') throw runFailure(outcome.reason, outcome.badInput, outcome.runDirectory);
    process.stdout.write(`${formatReport(outcome.report!)}\n\nrun directory: ${outcome.runDirectory}\n`);
  } finally {
    progress.stop();
    process.off('SIGINT', stopOnSignal);
    process.off('SIGTERM', stopOnSignal);
    await workers.stop();
    await serving.close();
    await events.close();
  }
}

/** `autoprune coordinator`: serves one run to workers that join over the network. */
export async function coordinator(args: string[]): Promise<void> {
  const parsed = parseCommand(COORDINATOR_COMMAND, args);
  if (parsed.help) return printHelp(COORDINATOR_COMMAND);
  const { values, positionals } = parsed;
  const logger = createLogger({ name: 'autoprune-coordinator' });
  const setup = await runSetup('coordinator', values, positionals, logger);
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
  logger.info(
    { event: 'coordinator.listening', listen, port: serving.port, runId: setup.runId, workers: setup.workers },
    `run ${setup.runId}: waiting for ${setup.workers} workers on port ${serving.port}`,
  );
  const stop = () => serving.coordinator.fail('the coordinator was stopped');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const outcome = await serving.coordinator.outcome();
    // Give workers a moment to collect their Finish before the server goes.
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (outcome.status === 'failed') throw runFailure(outcome.reason, outcome.badInput, outcome.runDirectory);
    process.stdout.write(`${formatReport(outcome.report!)}\n\nrun directory: ${outcome.runDirectory}\n`);
  } finally {
    await serving.close();
    await events.close();
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
  const connectSeconds = Number(values['connect-timeout']);
  if (!(connectSeconds > 0))
    throw new InputError('--connect-timeout', 'is not a positive number of seconds', { found: JSON.stringify(values['connect-timeout']) });
  const logger = createLogger({ name: 'autoprune-worker' }).child({ workerId });
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
    connectTimeoutMs: connectSeconds * 1000,
    sampleLog: values['sample-log'],
    logger,
  });
  if (outcome.status === 'failed') throw runFailure(outcome.reason, outcome.cause instanceof InputError, undefined);
  if (outcome.status === 'fenced') {
    process.stderr.write(`autoprune worker: ${outcome.reason}\n`);
    return FENCED_OUT_EXIT_STATUS;
  }
  return undefined;
}

function maxRestartsFrom(text: string): number {
  if (!/^\d+$/.test(text)) throw new InputError('--max-restarts', 'needs a whole number of replacements, 0 or more', { found: JSON.stringify(text) });
  return Number(text);
}

/** Why a run failed, as the CLI reports it: bad input (exit 2) when a worker refused the run's data or config. */
function runFailure(reason: string | undefined, badInput: boolean | undefined, runDirectory: string | undefined): Error {
  const why = reason ?? 'unknown reason';
  return badInput ? new InputError('bad input', why) : new RunFailed(why, runDirectory);
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
