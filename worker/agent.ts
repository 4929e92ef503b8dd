import { parse as parseYaml } from 'yaml';
import type { RingGroup } from '../collective/index.js';
import { initBackend } from '../engine/backend.js';
import { loadTrainingData } from '../engine/data/sources.js';
import { disposeNetwork, type Network } from '../engine/network.js';
import { PhaseRunner, type TrainingData } from '../engine/phase-runner.js';
import { createNetwork, createTrainer } from '../engine/setup.js';
import { encodeCheckpointSnapshot } from '../shared/checkpoint.js';
import { configHash, type RunConfig, validateConfig } from '../shared/config.js';
import type { CoordinatorApi, StepPosition } from '../shared/coordinator-api.js';
import { InputError } from '../shared/errors.js';
import type { Logger } from '../shared/logging.js';
import type { RegisterReply__Output } from '../shared/proto/generated/autoprune/v1/RegisterReply.js';
import type { RendezvousReply__Output } from '../shared/proto/generated/autoprune/v1/RendezvousReply.js';
import { CoordinatorCallError } from '../shared/rpc/call-error.js';
import { AgentLifecycle } from './agent-lifecycle.js';
import { CommittedState } from './committed-state.js';
import { type HeartbeatNews, type Interrupt, interruptOf, readHeartbeat, responseTo } from './interrupts.js';
import { registerWithBackoff } from './registration.js';
import { TaskRunner } from './task-runner.js';
import type { GenerationExchange, TransportsFactory, WorkerTransports } from './transports.js';

/**
 * A worker: registers with the coordinator, joins a generation, then runs the tasks the coordinator hands
 * out until the run finishes. Its states are AgentLifecycle's; what breaks off a generation is an
 * Interrupt (interrupts.ts), after which it rejoins the rendezvous or registers again. The coordinator
 * and the transports are injected: over gRPC and the ring in a worker process (worker-process.ts), called
 * directly with no peers in `autoprune train`.
 */

export interface AgentOptions {
  readonly workerId: string;
  readonly coordinator: CoordinatorApi;
  readonly transports: TransportsFactory;
  readonly joinToken: string;
  /** The config the worker was started with, if any: registration checks that it is the run's. */
  readonly config: RunConfig | undefined;
  /** How long to keep retrying registration while no coordinator answers. */
  readonly connectTimeoutMs: number;
  /** A file to append every step's samples to (JSON lines), to audit that none is lost or repeated. */
  readonly sampleLog: string | undefined;
  readonly logger: Logger;
  /** Uniform in [0, 1): the jitter of registration retries (default Math.random). */
  readonly random?: () => number;
}

export type WorkerOutcome = { readonly status: 'completed' } | { readonly status: 'failed'; readonly reason: string; readonly cause: unknown };

/** How one pass through a generation ended. */
type PassEnd =
  | { readonly kind: 'finished'; readonly outcome: WorkerOutcome }
  | { readonly kind: 'interrupted'; readonly interrupt: Interrupt; readonly reached: StepPosition };

export class WorkerAgent {
  readonly lifecycle: AgentLifecycle;
  /** The generation this worker is in (0: none yet). */
  private generation = 0;
  /** What the heartbeats said since this worker joined its generation. */
  private news: HeartbeatNews | undefined;
  private exchange: GenerationExchange | undefined;
  private network: Network | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private registration: RegisterReply__Output | undefined;
  /** The state after the last completed step; it outlives generations. */
  private readonly committed = new CommittedState();

  constructor(private readonly options: AgentOptions) {
    this.lifecycle = new AgentLifecycle((from, to) => options.logger.debug({ event: 'worker.state', from, to }, `${from} → ${to}`));
  }

  async run(): Promise<WorkerOutcome> {
    const { logger } = this.options;
    let transports: WorkerTransports | undefined;
    try {
      transports = await this.options.transports();
      this.lifecycle.moveTo('registering');
      const registration = await this.register(transports);
      const config = validateConfig(parseYaml(registration.configYaml), `config sent by coordinator ${this.options.coordinator.address}`);
      if (configHash(config) !== registration.configHash)
        throw new Error(`the config sent by coordinator ${this.options.coordinator.address} does not match its hash`);
      this.startHeartbeat(registration.heartbeatIntervalMs);
      const backend = await initBackend(config.backend, (message) => logger.info({ event: 'backend.notice' }, message));
      const data = await loadTrainingData(config.data);
      this.lifecycle.moveTo('rendezvous');
      for (;;) {
        const end = await this.pass(transports, config, backend, data);
        if (end.kind === 'finished') {
          logger.info({ event: 'worker.finished', ...end.outcome }, `run ${end.outcome.status}`);
          this.lifecycle.moveTo('finished');
          return end.outcome;
        }
        await this.respond(end.interrupt, end.reached, transports);
      }
    } catch (error) {
      return this.fail(error);
    } finally {
      if (this.heartbeat) clearInterval(this.heartbeat);
      await this.exchange?.close();
      if (this.network) disposeNetwork(this.network);
      this.committed.dispose();
      await transports?.close();
    }
  }

  private async register(transports: WorkerTransports): Promise<RegisterReply__Output> {
    const { options } = this;
    const registration = await registerWithBackoff(options.coordinator, {
      workerId: options.workerId,
      address: transports.address,
      dataAddress: transports.dataAddress,
      joinToken: options.joinToken,
      configHash: options.config ? configHash(options.config) : '',
      connectTimeoutMs: options.connectTimeoutMs,
      logger: options.logger,
      random: options.random ?? Math.random,
    });
    if (this.registration && registration.configHash !== this.registration.configHash)
      throw new Error(`coordinator ${options.coordinator.address} came back with another config (hash ${registration.configHash.slice(0, 12)}…)`);
    options.logger.info(
      { event: 'worker.registered', runId: registration.runId, address: transports.address, dataAddress: transports.dataAddress },
      `registered${this.registration ? ' again' : ''} with run ${registration.runId}`,
    );
    this.registration = registration;
    this.generation = 0;
    return registration;
  }

  /**
   * The coordinator's heartbeat replies steer this worker: a failed run ends it, a newer generation (the
   * run re-forming after a failure) calls it back to the rendezvous. Either way, closing the exchange
   * frees a collective that waits on a peer which will never answer.
   */
  private startHeartbeat(intervalMs: number): void {
    const { coordinator, workerId, logger } = this.options;
    this.heartbeat = setInterval(() => {
      coordinator.heartbeat(workerId, this.generation).then(
        (reply) => {
          if (this.news) return;
          this.news = readHeartbeat(reply, this.generation);
          if (this.news) void this.exchange?.close();
        },
        (error: Error) => logger.warn({ event: 'heartbeat.failed', error: error.message }, 'heartbeat failed'),
      );
    }, intervalMs);
    this.heartbeat.unref();
  }

  /** One generation: join it, then run its tasks until the run ends or an interrupt breaks the generation off. */
  private async pass(transports: WorkerTransports, config: RunConfig, backend: string, data: TrainingData): Promise<PassEnd> {
    const { coordinator, workerId, logger } = this.options;
    let joined: RendezvousReply__Output;
    try {
      joined = await coordinator.rendezvous(workerId, this.generation, backend);
    } catch (error) {
      const interrupt = interruptOf(error, 'rendezvous', undefined);
      if (!interrupt) throw error;
      return { kind: 'interrupted', interrupt, reached: { phaseIndex: 0, step: 0 } };
    }
    this.generation = joined.generation;
    this.news = undefined;
    this.lifecycle.moveTo('training');
    const group: RingGroup = {
      generation: joined.generation,
      rank: joined.rank,
      world: joined.worldSize,
      ring: joined.ring.map((p) => ({ workerId: p.workerId, address: p.address, dataAddress: p.dataAddress })),
      sessionKey: joined.sessionKey,
    };
    // Every generation starts from a network built afresh from the seed, then loads the state its first task names.
    if (this.network) disposeNetwork(this.network);
    this.network = createNetwork(config, data.train);
    const identity = { workerId, generation: this.generation, rank: group.rank };
    let tasks: TaskRunner | undefined;
    try {
      this.exchange = await transports.openExchange(group, config);
      logger.info(
        { event: 'worker.rendezvous', generation: this.generation, rank: group.rank, world: group.world, backend },
        `rank ${group.rank} of ${group.world} in generation ${this.generation}`,
      );
      const replica = { world: group.world, rank: group.rank, exchange: this.exchange.exchange };
      const runner = new PhaseRunner(createTrainer(this.network, config), config, data, replica);
      tasks = new TaskRunner(runner, config, this.network, coordinator, identity, logger, this.options.sampleLog, this.committed);
      for (let finished = 0; ; ) {
        const task = await coordinator.nextTask(workerId, this.generation, finished);
        if (task.kind === 'finish') {
          const { state, reason } = task.finish!;
          const outcome: WorkerOutcome = state === 'RUN_STATE_COMPLETED' ? { status: 'completed' } : { status: 'failed', reason, cause: undefined };
          return { kind: 'finished', outcome };
        }
        await tasks.run(task.train!);
        finished = task.id;
      }
    } catch (error) {
      const interrupt = interruptOf(error, 'training', this.news);
      if (!interrupt) throw error;
      return { kind: 'interrupted', interrupt, reached: tasks?.reached ?? { phaseIndex: 0, step: 0 } };
    } finally {
      tasks?.dispose();
      await this.exchange?.close();
      this.exchange = undefined;
    }
  }

  /** Acts on an interrupt as responseTo decides, then goes back to the rendezvous. */
  private async respond(interrupt: Interrupt, reached: StepPosition, transports: WorkerTransports): Promise<void> {
    const { coordinator, workerId, logger } = this.options;
    const response = responseTo(interrupt);
    this.lifecycle.moveTo(response.next);
    const { generation } = this;
    if (interrupt.kind === 'CoordinatorLost') {
      logger.warn({ event: 'coordinator.lost', coordinator: coordinator.address, reason: interrupt.reason }, 'lost the coordinator; registering again');
    } else {
      logger.warn(
        { event: 'generation.broken', generation, interrupt: interrupt.kind, reason: interrupt.reason },
        `generation ${generation} broke: ${interrupt.reason}; rejoining`,
      );
    }
    if (response.reportLeaving) await coordinator.reportFailure(workerId, generation, interrupt.reason, true, reached).catch(() => undefined);
    const snapshot = response.offerCommittedState ? this.committed.snapshot() : undefined;
    if (snapshot) {
      const { phaseIndex, step } = snapshot.position;
      await coordinator
        .uploadState(workerId, generation, phaseIndex, step, encodeCheckpointSnapshot(snapshot))
        .catch((e: Error) => logger.warn({ event: 'commit.upload-failed', error: e.message }, 'could not offer the committed state'));
    }
    // A coordinator that comes back resumes from its checkpoint: this worker joins it afresh.
    if (response.next === 'registering') await this.register(transports);
    this.lifecycle.moveTo('rendezvous');
  }

  private async fail(error: unknown): Promise<WorkerOutcome> {
    const reason = error instanceof Error ? error.message : String(error);
    // Tell the run why, unless it was the coordinator that refused us (it knows) or we never got in.
    if (this.registration && !(error instanceof CoordinatorCallError))
      await this.options.coordinator
        .reportFailure(this.options.workerId, this.generation, reason, false, undefined, error instanceof InputError)
        .catch(() => undefined);
    this.options.logger.error({ event: 'worker.failed', reason }, `worker failed: ${reason}`);
    this.lifecycle.moveTo('failed');
    return { status: 'failed', reason, cause: error };
  }
}
