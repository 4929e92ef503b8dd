import { appendFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { status as grpcStatus } from '@grpc/grpc-js';
import { parse as parseYaml } from 'yaml';
import type { RingGroup } from '../collective/index.js';
import { AllReducer, CollectiveEndpoint, CollectiveError, collectiveService, startBulkListener } from '../collective/index.js';
import { initBackend } from '../engine/backend.js';
import { loadTrainingData } from '../engine/data/sources.js';
import { disposeNetwork, type Network } from '../engine/network.js';
import { type PhaseOptimizers, PhaseRunner, type StepProgress, weightGates } from '../engine/phase-runner.js';
import { createNetwork, createTrainer } from '../engine/setup.js';
import { assignParameters, captureCheckpoint, optimizerStateFrom, parametersDigest } from '../engine/state.js';
import { decodeCheckpointSnapshot, encodeCheckpointSnapshot } from '../shared/checkpoint.js';
import { configHash, type PhaseConfig, type RunConfig, validateConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import type { TrainTask__Output } from '../shared/proto/generated/autoprune/v1/TrainTask.js';
import { PROTOCOL_VERSION } from '../shared/proto/load.js';
import { channelCredentials, serverCredentials, type TlsMaterial } from '../shared/rpc/security.js';
import { formatHostPort, type RunningServer, startServer } from '../shared/rpc/server.js';
import { AllReduceExchange } from './all-reduce-exchange.js';
import { CommittedState } from './committed-state.js';
import { CoordinatorCallError, CoordinatorConnection } from './coordinator-client.js';

/**
 * A worker process: serves its side of the ring (Collective over gRPC, and the bulk-data listener),
 * registers with the coordinator, joins a generation, then runs the tasks the coordinator hands out
 * until the run finishes. Its lifecycle: starting → registered → training → finished | failed.
 */

export interface WorkerOptions {
  readonly workerId: string;
  /** host:port of the coordinator. */
  readonly coordinator: string;
  readonly joinToken: string;
  /** host:port to bind the gRPC server to (port 0: any free one). */
  readonly listen: string;
  /** host:port to bind the bulk-data listener to. */
  readonly dataListen: string;
  /** Host the peers and the coordinator reach this worker at (a Kubernetes pod advertises its IP). */
  readonly advertiseHost: string;
  readonly maxMessageBytes: number;
  readonly tls: TlsMaterial | undefined;
  /** The config the worker was started with, if any: registration checks that it is the run's. */
  readonly config: RunConfig | undefined;
  /** How long to keep retrying the first registration while the coordinator is not up yet. */
  readonly connectTimeoutMs: number;
  /** A file to append every step's samples to (JSON lines), to audit that none is lost or repeated. */
  readonly sampleLog: string | undefined;
  readonly logger: Logger;
}

export type WorkerOutcome = { readonly status: 'completed' } | { readonly status: 'failed'; readonly reason: string; readonly badInput?: boolean };

export async function runWorker(options: WorkerOptions): Promise<WorkerOutcome> {
  const { logger, workerId } = options;
  const endpoint = new CollectiveEndpoint({ workerId, logger });
  const servers: Array<{ close(): Promise<void> }> = [];
  const coordinator = new CoordinatorConnection(options.coordinator, channelCredentials(options.tls), options.maxMessageBytes);
  let heartbeat: NodeJS.Timeout | undefined;
  let reducer: AllReducer | undefined;
  let network: Network | undefined;
  let generation = 0;
  let registered = false;
  try {
    const grpcServer: RunningServer = await startServer({
      bind: options.listen,
      credentials: serverCredentials(options.tls),
      maxMessageBytes: options.maxMessageBytes,
      services: [collectiveService(endpoint)],
    });
    servers.push(grpcServer);
    const bulk = await startBulkListener(endpoint, {
      bind: options.dataListen,
      ...(options.tls ? { tls: options.tls } : {}),
      maxFrameBytes: options.maxMessageBytes,
    });
    servers.push(bulk);
    const address = formatHostPort(options.advertiseHost, grpcServer.port);
    const dataAddress = formatHostPort(options.advertiseHost, bulk.port);

    const registration = await registerWithRetry(coordinator, options, address, dataAddress);
    registered = true;
    const config = validateConfig(parseYaml(registration.configYaml), `config sent by coordinator ${options.coordinator}`);
    if (configHash(config) !== registration.configHash) throw new Error(`the config sent by coordinator ${options.coordinator} does not match its hash`);
    logger.info({ event: 'worker.registered', runId: registration.runId, address, dataAddress }, `registered with run ${registration.runId}`);

    // The coordinator's replies steer this worker: a failed run ends it, a newer generation (the run
    // re-forming after a failure) calls it back to the rendezvous. Either way, closing the all-reducer
    // frees a collective that waits on a peer which will never answer.
    let called: 'rendezvous' | 'stop' | undefined;
    heartbeat = setInterval(() => {
      coordinator.heartbeat(workerId, generation).then(
        (reply) => {
          if (called) return;
          if (reply.state === 'RUN_STATE_FAILED') called = 'stop';
          else if (generation > 0 && reply.generation > generation) called = 'rendezvous';
          if (called) void reducer?.close();
        },
        (error: Error) => logger.warn({ event: 'heartbeat.failed', error: error.message }, 'heartbeat failed'),
      );
    }, registration.heartbeatIntervalMs);
    heartbeat.unref();

    /**
     * The coordinator is gone (restarted with --resume, as Kubernetes does): register again, afresh, with
     * backoff; the run's state comes back from its checkpoint. The state in memory is dropped.
     */
    const rejoinCoordinator = async (error: Error) => {
      logger.warn({ event: 'coordinator.lost', coordinator: options.coordinator, reason: error.message }, 'lost the coordinator; registering again');
      await reducer?.close();
      reducer = undefined;
      const again = await registerWithRetry(coordinator, options, address, dataAddress);
      if (again.configHash !== registration.configHash)
        throw new Error(`coordinator ${options.coordinator} came back with another config (hash ${again.configHash.slice(0, 12)}…)`);
      logger.info({ event: 'worker.registered', runId: again.runId }, `registered again with run ${again.runId}`);
      generation = 0;
    };

    const backend = await initBackend(config.backend, (message) => logger.info({ event: 'backend.notice' }, message));
    const data = await loadTrainingData(config.data);

    // One pass per generation: join, train until the run ends or the generation breaks, then rejoin.
    const committed = new CommittedState();
    for (;;) {
      let joined;
      try {
        joined = await coordinator.rendezvous(workerId, generation, backend);
      } catch (error) {
        if (!coordinatorLost(error)) throw error;
        await rejoinCoordinator(error as Error);
        continue;
      }
      generation = joined.generation;
      called = undefined;
      const group: RingGroup = {
        generation: joined.generation,
        rank: joined.rank,
        world: joined.worldSize,
        ring: joined.ring.map((p) => ({ workerId: p.workerId, address: p.address, dataAddress: p.dataAddress })),
        sessionKey: joined.sessionKey,
      };
      endpoint.setGroup(group);
      reducer = await AllReducer.open(endpoint, group, collectiveOptions(config, options.maxMessageBytes), options.tls);
      logger.info(
        { event: 'worker.rendezvous', generation, rank: group.rank, world: group.world, backend },
        `rank ${group.rank} of ${group.world} in generation ${generation}`,
      );
      // Every generation starts from a network built afresh from the seed, then loads the state its first task names.
      if (network) disposeNetwork(network);
      network = createNetwork(config, data.train);
      const runner = new PhaseRunner(createTrainer(network, config), config, data, {
        world: group.world,
        rank: group.rank,
        exchange: new AllReduceExchange(reducer),
      });
      const tasks = new TaskRunner(runner, config, network, coordinator, { workerId, generation, rank: group.rank }, logger, options.sampleLog, committed);
      try {
        let finished = 0;
        for (;;) {
          const task = await coordinator.nextTask(workerId, generation, finished);
          if (task.kind === 'finish') {
            const outcome: WorkerOutcome =
              task.finish!.state === 'RUN_STATE_COMPLETED' ? { status: 'completed' } : { status: 'failed', reason: task.finish!.reason };
            logger.info({ event: 'worker.finished', ...outcome }, `run ${outcome.status}`);
            return outcome;
          }
          await tasks.run(task.train!);
          finished = task.id;
        }
      } catch (error) {
        if (coordinatorLost(error)) {
          await rejoinCoordinator(error as Error);
          continue;
        }
        if (called === 'stop' || !generationBroke(error, called)) throw error;
        const reason = (error as Error).message;
        logger.warn({ event: 'generation.broken', generation, reason }, `generation ${generation} broke: ${reason}; rejoining`);
        // A peer failed, not this worker: say so, and where it stood; then offer the state of its last
        // completed step, so that the run redoes as little as possible; then rejoin.
        await coordinator.reportFailure(workerId, generation, reason, true, tasks.reached).catch(() => undefined);
        const snapshot = committed.snapshot();
        if (snapshot) {
          const { phaseIndex, step } = snapshot.position;
          await coordinator
            .uploadState(workerId, generation, phaseIndex, step, encodeCheckpointSnapshot(snapshot))
            .catch((e: Error) => logger.warn({ event: 'commit.upload-failed', error: e.message }, 'could not offer the committed state'));
        }
      } finally {
        tasks.dispose();
        await reducer?.close();
        reducer = undefined;
      }
    }
  } catch (error) {
    const reason = (error as Error).message;
    const badInput = error instanceof InputError;
    // Tell the run why (and whether its input is at fault), unless it was the coordinator that refused us (it knows) or we never got in.
    if (registered && !(error instanceof CoordinatorCallError))
      await coordinator.reportFailure(workerId, generation, reason, false, undefined, badInput).catch(() => undefined);
    logger.error({ event: 'worker.failed', reason }, `worker failed: ${reason}`);
    return { status: 'failed', reason, badInput };
  } finally {
    if (heartbeat) clearInterval(heartbeat);
    await reducer?.close();
    if (network) disposeNetwork(network);
    await Promise.all(servers.map((s) => s.close()));
    coordinator.close();
  }
}

/**
 * Whether an error ends only this generation (a peer stopped answering, the coordinator moved on to a
 * newer generation) rather than the worker: the worker then goes back to the rendezvous.
 */
function generationBroke(error: unknown, called: 'rendezvous' | 'stop' | undefined): boolean {
  if (called === 'rendezvous') return true;
  if (error instanceof CollectiveError) return true;
  return error instanceof CoordinatorCallError && error.code === grpcStatus.FAILED_PRECONDITION && /generation/.test(error.message);
}

/** The coordinator did not answer at all (it died or restarts), as opposed to refusing a call. */
function coordinatorLost(error: unknown): boolean {
  return error instanceof CoordinatorCallError && error.code === grpcStatus.UNAVAILABLE;
}

function collectiveOptions(config: RunConfig, maxMessageBytes: number) {
  const c = config.distributed.collective;
  return {
    transport: c.transport,
    bucketBytes: Math.round(c.bucketMB * (1 << 20)),
    chunkBytes: Math.min(Math.round(c.chunkKB * 1024), maxMessageBytes - 4096),
    streams: c.streams,
    compression: c.compression,
    timeoutMs: c.timeoutSeconds * 1000,
    maxMessageBytes,
  };
}

async function registerWithRetry(coordinator: CoordinatorConnection, options: WorkerOptions, address: string, dataAddress: string) {
  const deadline = Date.now() + options.connectTimeoutMs;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    try {
      return await coordinator.register({
        workerId: options.workerId,
        address,
        dataAddress,
        capabilities: { hostname: hostname(), cpus: cpus().length, memoryBytes: totalmem(), engineVersion: `autoprune-protocol/${PROTOCOL_VERSION}` },
        joinToken: options.joinToken,
        configHash: options.config ? configHash(options.config) : '',
        protocolVersion: PROTOCOL_VERSION,
        generation: 0,
      });
    } catch (error) {
      const retryable = error instanceof CoordinatorCallError && error.code === grpcStatus.UNAVAILABLE;
      if (!retryable || Date.now() + delay > deadline) throw error;
      options.logger.info({ event: 'register.retry', coordinator: options.coordinator, delayMs: delay }, 'coordinator not reachable yet; retrying');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

interface Identity {
  readonly workerId: string;
  readonly generation: number;
  readonly rank: number;
}

/** Runs one training task: the steps, the evaluation share, the state upload. Keeps the phase's optimizers between tasks. */
class TaskRunner {
  private optimizers: PhaseOptimizers | undefined;
  /** The step in progress (phase index, step within the phase). */
  reached = { phaseIndex: 0, step: 0 };
  private readonly hash: string;

  constructor(
    private readonly runner: PhaseRunner,
    private readonly config: RunConfig,
    private readonly network: Network,
    private readonly coordinator: CoordinatorConnection,
    private readonly identity: Identity,
    private readonly logger: Logger,
    private readonly sampleLog: string | undefined,
    private readonly committed: CommittedState,
  ) {
    this.hash = configHash(config);
  }

  async run(task: TrainTask__Output): Promise<void> {
    const { workerId, generation, rank } = this.identity;
    const phase = this.config.phases[task.phaseIndex];
    if (!phase) throw new Error(`task names phase ${task.phaseIndex}, but the run has ${this.config.phases.length}`);
    if (task.resetOptimizers || !this.optimizers) {
      this.dispose();
      this.optimizers = PhaseRunner.createOptimizers(phase);
    }
    if (task.restoreState) await this.restore(task.phaseIndex, !task.resetOptimizers);
    const optimizers = this.optimizers;
    const checksumEvery = this.config.distributed.checksumEvery;
    await this.runner.runSteps(phase, task.phaseIndex, optimizers, this.runner.segment(phase, task.fromStep, task.toStep), {
      onStepDone: ({ phaseIndex, step }) => {
        const epoch = this.runner.segment(phase, step, step).weightCursor.epoch;
        this.committed.commit(this.network.parameters, optimizers, {
          phase: phase.phase,
          phaseIndex,
          step,
          epoch,
          configHash: this.hash,
          model: this.config.model.name,
        });
      },
      onBatch: (batch) => {
        this.reached = { phaseIndex: batch.phaseIndex, step: batch.step };
        if (this.sampleLog !== undefined) this.audit(batch);
      },
      onProgress: (progress) => {
        const withChecksum = progress.step === task.toStep || (checksumEvery > 0 && progress.step % checksumEvery === 0);
        return this.coordinator.reportProgress(this.progressReport(progress, withChecksum));
      },
    });
    if (task.evaluate) {
      const { correct, count } = this.runner.evaluateShare(weightGates(phase.phase));
      await this.coordinator.reportEvaluation({ workerId, generation, rank, phaseIndex: task.phaseIndex, step: task.toStep, correct, count });
    }
    if (task.uploadState) await this.upload(phase, task);
  }

  /** One JSON line per batch: generation, phase, step, stream, rank and samples. */
  private audit(batch: { phaseIndex: number; step: number; kind: 'weight' | 'aux'; samples: Uint32Array }): void {
    const { generation, rank } = this.identity;
    const line = { generation, phaseIndex: batch.phaseIndex, step: batch.step, kind: batch.kind, rank, samples: [...batch.samples] };
    appendFileSync(this.sampleLog!, `${JSON.stringify(line)}\n`);
  }

  private progressReport(progress: StepProgress, withChecksum: boolean) {
    const { workerId, generation, rank } = this.identity;
    return {
      workerId,
      generation,
      rank,
      phaseIndex: progress.phaseIndex,
      step: progress.step,
      loss: progress.loss,
      accuracy: progress.accuracy,
      auxLoss: progress.auxLoss ?? Number.NaN,
      remaining: progress.remaining,
      imagesPerSecond: progress.imagesPerSecond,
      checksum: withChecksum ? parametersDigest(this.network.parameters) : '',
    };
  }

  /**
   * Loads the state the coordinator serves for this phase: parameters (M may be absent from a dense
   * checkpoint) and, when the task continues a phase mid-way, the optimizers' state too.
   */
  private async restore(phaseIndex: number, withOptimizers: boolean): Promise<void> {
    const { workerId, generation } = this.identity;
    const source = `state from coordinator ${this.coordinator.address}`;
    const checkpoint = decodeCheckpointSnapshot(await this.coordinator.fetchState(workerId, generation, phaseIndex), source);
    assignParameters(this.network.parameters, checkpoint.parameters, source, ['aux']);
    if (withOptimizers) {
      const roles = [
        ['weights', this.optimizers!.weights, 'weight'],
        ['aux', this.optimizers!.aux, 'aux'],
      ] as const;
      for (const [role, optimizer, parameterRole] of roles) {
        if (!optimizer) continue;
        const stored = checkpoint.optimizers.get(role);
        if (!stored) throw new Error(`${source}: optimizer state ${role} is missing for phase ${phaseIndex}`);
        const state = optimizerStateFrom(stored.tensors, stored.step, `${source}: optimizer ${role}`);
        optimizer.load(
          state,
          this.network.parameters.filter((p) => p.role === parameterRole),
        );
        for (const tensor of state.slots.values()) tensor.dispose();
      }
    }
    const { phase, step } = checkpoint.position;
    this.logger.info({ event: 'checkpoint.loaded', phaseIndex, from: `${phase} step ${step}`, withOptimizers }, 'state restored');
  }

  private async upload(phase: PhaseConfig, task: TrainTask__Output): Promise<void> {
    const { workerId, generation } = this.identity;
    const optimizers = this.optimizers!;
    const states = new Map([['weights', optimizers.weights.state()]]);
    if (optimizers.aux) states.set('aux', optimizers.aux.state());
    const epoch = this.runner.segment(phase, task.toStep, task.toStep).weightCursor.epoch;
    const position = { phase: phase.phase, phaseIndex: task.phaseIndex, step: task.toStep, epoch, configHash: this.hash, model: this.config.model.name };
    const snapshot = encodeCheckpointSnapshot(captureCheckpoint(this.network.parameters, states, position));
    await this.coordinator.uploadState(workerId, generation, task.phaseIndex, task.toStep, snapshot);
  }

  dispose(): void {
    this.optimizers?.weights.dispose();
    this.optimizers?.aux?.dispose();
    this.optimizers = undefined;
  }
}
