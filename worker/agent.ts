import { parse as parseYaml } from 'yaml';
import type { RingGroup } from '../collective/index.js';
import { backendOptions, initBackend } from '../engine/backend.js';
import type { TrainingData } from '../engine/data/source.js';
import { loadTrainingData } from '../engine/data/sources.js';
import { disposeNetwork, type Network } from '../engine/network.js';
import { PhaseRunner } from '../engine/phase-runner.js';
import { createNetwork, createTrainer } from '../engine/setup.js';
import { encodeCheckpointSnapshot } from '../shared/checkpoint.js';
import { configHash, type RunConfig, validateConfig } from '../shared/config.js';
import type { CoordinatorApi, StepPosition } from '../shared/coordinator-api.js';
import { InputError } from '../shared/errors.js';
import type { LogContext, Logger } from '../shared/logging.js';
import type { RegisterReply__Output } from '../shared/proto/generated/autoprune/v1/RegisterReply.js';
import type { RendezvousReply__Output } from '../shared/proto/generated/autoprune/v1/RendezvousReply.js';
import { CoordinatorCallError } from '../shared/rpc/call-error.js';
import { asksWhetherStillKnown, fencedOutBy, fencedOutMessage } from './agent-decisions.js';
import { AgentLifecycle } from './agent-lifecycle.js';
import { CommittedState } from './committed-state.js';
import { HeartbeatWatch } from './heartbeat-watch.js';
import type { HeartbeatsFactory } from './heartbeats.js';
import { type Interrupt, interruptOf, responseTo, StopRequested } from './interrupts.js';
import type { WorkerMetrics } from './metrics.js';
import { registerWithBackoff } from './registration.js';
import { SkippedSamples } from './skipped-samples.js';
import { TaskRunner } from './task-runner.js';
import type { GenerationExchange, TransportsFactory, WorkerTransports } from './transports.js';

/**
 * A worker: registers with the coordinator, joins a generation, then runs the tasks the coordinator hands
 * out until the run finishes. Its states are AgentLifecycle's; what breaks off a generation is an
 * Interrupt (interrupts.ts), after which it rejoins the rendezvous or registers again; refused when it
 * registers again, it is fenced out of a run that goes on without it. The coordinator, the transports
 * and the heartbeats are injected: over gRPC, the ring and a heartbeat thread in a worker process
 * (worker-process.ts), called directly with no peers and no heartbeats in `autoprune train`.
 */

export interface AgentOptions {
  readonly workerId: string;
  readonly coordinator: CoordinatorApi;
  readonly transports: TransportsFactory;
  /** Where the heartbeats come from (started once, told of every registration and generation). */
  readonly heartbeats: HeartbeatsFactory;
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
  /**
   * Aborted when the worker is told to stop (SIGTERM): it stops at the end of the step it is in (or leaves
   * the wait it is in), offers the state of its last completed step, and ends `stopped`.
   */
  readonly stop?: AbortSignal;
  /** Where its Prometheus series go (a worker process serves them), if anywhere. */
  readonly metrics?: WorkerMetrics;
  /** The process log's context: the agent points it at its run id, generation, rank and phase. */
  readonly logContext?: LogContext;
}

export type WorkerOutcome =
  | { readonly status: 'completed' }
  | { readonly status: 'failed'; readonly reason: string; readonly cause: unknown }
  /** The run goes on without this worker: `reason` says which run, and why it cannot rejoin. */
  | { readonly status: 'fenced'; readonly reason: string }
  /** Told to stop; its last completed step's state was offered to the coordinator. */
  | { readonly status: 'stopped'; readonly reason: string };

/** A re-registration refused because the run goes on without this worker (agent-decisions.ts, fencedOutBy). */
class FencedOut extends Error {}

/** How one pass through a generation ended. */
type PassEnd =
  | { readonly kind: 'finished'; readonly outcome: WorkerOutcome }
  | { readonly kind: 'interrupted'; readonly interrupt: Interrupt; readonly reached: StepPosition };

export class WorkerAgent {
  readonly lifecycle: AgentLifecycle;
  /** The generation this worker is in (0: none yet), its rank there, and the phase of its task. */
  private generation = 0;
  private rank: number | undefined;
  private phase: string | undefined;
  private exchange: GenerationExchange | undefined;
  private network: Network | undefined;
  /** Its news (or crash) closes the exchange: a collective waiting on a peer that will never answer is freed. */
  private readonly watch: HeartbeatWatch;
  private registration: RegisterReply__Output | undefined;
  /** The state after the last completed step; it outlives generations. */
  private readonly committed = new CommittedState();
  /** Bad samples left out (`data.badSamples: skip`), on their way to the coordinator. */
  private readonly skipped: SkippedSamples;
  /** Rejects with StopRequested once `options.stop` aborts; long waits race against it. */
  private readonly stopped: Promise<never>;

  constructor(private readonly options: AgentOptions) {
    this.lifecycle = new AgentLifecycle((from, to) => options.logger.debug({ event: 'worker.state', from, to }, `${from} → ${to}`));
    this.skipped = new SkippedSamples(options.logger);
    this.watch = new HeartbeatWatch(options.heartbeats, options.logger, () => void this.exchange?.close());
    this.stopped = new Promise<never>((_, reject) => {
      const stop = options.stop;
      const tell = () => reject(new StopRequested(String(stop?.reason ?? 'stop')));
      if (stop?.aborted) tell();
      else stop?.addEventListener('abort', tell, { once: true });
    });
    // The stop may come while nothing races against it.
    this.stopped.catch(() => undefined);
    options.logContext?.follow(() => ({ runId: this.registration?.runId, generation: this.generation, rank: this.rank, phase: this.phase }));
  }

  /** Why the worker was told to stop, once it was. */
  private get stopReason(): string | undefined {
    const stop = this.options.stop;
    return stop?.aborted ? String(stop.reason ?? 'stop') : undefined;
  }

  async run(): Promise<WorkerOutcome> {
    const { logger } = this.options;
    let transports: WorkerTransports | undefined;
    let data: TrainingData | undefined;
    try {
      this.watch.start();
      transports = await this.options.transports();
      this.lifecycle.moveTo('registering');
      const registration = await this.unlessStopped(this.register(transports));
      const config = validateConfig(parseYaml(registration.configYaml), `config sent by coordinator ${this.options.coordinator.address}`);
      if (configHash(config) !== registration.configHash)
        throw new Error(`the config sent by coordinator ${this.options.coordinator.address} does not match its hash`);
      const backend = await initBackend(config.backend, (message) => logger.info({ event: 'backend.notice' }, message), backendOptions(config, process.env));
      data = await loadTrainingData(config.data, { onSkipped: this.skipped.record });
      this.lifecycle.moveTo('rendezvous');
      for (;;) {
        const end = await this.pass(transports, config, backend, data);
        if (end.kind === 'finished') {
          logger.info({ event: 'worker.finished', ...end.outcome }, `run ${end.outcome.status}`);
          this.lifecycle.moveTo('finished');
          return end.outcome;
        }
        await this.respond(end.interrupt, end.reached, transports);
        if (end.interrupt.kind === 'Stopped') return { status: 'stopped', reason: end.interrupt.reason };
      }
    } catch (error) {
      if (error instanceof StopRequested) return this.stoppedBefore(error.reason);
      return error instanceof FencedOut ? this.fencedOut(error.message) : this.fail(error);
    } finally {
      await this.watch.close();
      await this.exchange?.close();
      if (this.network) disposeNetwork(this.network);
      this.committed.dispose();
      await data?.close();
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
    }).catch((error: unknown) => {
      if (fencedOutBy(error, this.registration !== undefined)) throw new FencedOut(fencedOutMessage(this.registration!.runId, error.message));
      throw error;
    });
    if (this.registration && registration.configHash !== this.registration.configHash)
      throw new Error(`coordinator ${options.coordinator.address} came back with another config (hash ${registration.configHash.slice(0, 12)}…)`);
    options.logger.info(
      { event: 'worker.registered', runId: registration.runId, address: transports.address, dataAddress: transports.dataAddress },
      `registered${this.registration ? ' again' : ''} with run ${registration.runId}`,
    );
    this.registration = registration;
    this.generation = 0;
    this.options.metrics?.joinedRun(registration.runId);
    this.watch.registered({ credential: registration.credential, intervalMs: registration.heartbeatIntervalMs });
    return registration;
  }

  /** One generation: join it, then run its tasks until the run ends or an interrupt breaks the generation off. */
  private async pass(transports: WorkerTransports, config: RunConfig, backend: string, data: TrainingData): Promise<PassEnd> {
    const { coordinator, workerId, logger } = this.options;
    let joined: RendezvousReply__Output;
    try {
      joined = await this.unlessHeartbeatsCrash(coordinator.rendezvous(workerId, this.generation, backend));
    } catch (error) {
      const stop = this.stopInterrupt();
      if (stop) return { kind: 'interrupted', interrupt: stop, reached: { phaseIndex: 0, step: 0 } };
      const interrupt = this.watch.failure ? undefined : (interruptOf(error, 'rendezvous', undefined) ?? (await this.askWhetherStillKnown(error)));
      if (!interrupt) throw this.watch.failure ?? error;
      return { kind: 'interrupted', interrupt, reached: { phaseIndex: 0, step: 0 } };
    }
    this.generation = joined.generation;
    this.rank = joined.rank;
    this.watch.entered(joined.generation);
    this.options.metrics?.enteredGeneration(joined.generation, joined.rank);
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
      const stopAfterStep = () => {
        const reason = this.stopReason;
        if (reason !== undefined) throw new StopRequested(reason);
      };
      tasks = new TaskRunner(runner, config, this.network, coordinator, identity, {
        logger,
        sampleLog: this.options.sampleLog,
        committed: this.committed,
        skipped: this.skipped,
        afterStep: stopAfterStep,
        metrics: this.options.metrics,
      });
      for (let finished = 0; ; ) {
        const task = await this.unlessHeartbeatsCrash(coordinator.nextTask(workerId, this.generation, finished));
        if (task.kind === 'finish') {
          const { state, reason } = task.finish!;
          const outcome: WorkerOutcome = state === 'RUN_STATE_COMPLETED' ? { status: 'completed' } : { status: 'failed', reason, cause: undefined };
          return { kind: 'finished', outcome };
        }
        this.phase = config.phases[task.train!.phaseIndex]?.phase;
        await tasks.run(task.train!);
        finished = task.id;
      }
    } catch (error) {
      const interrupt = this.stopInterrupt() ?? (this.watch.failure ? undefined : interruptOf(error, 'training', this.watch.news));
      if (!interrupt) throw this.watch.failure ?? error;
      return { kind: 'interrupted', interrupt, reached: tasks?.reached ?? { phaseIndex: 0, step: 0 } };
    } finally {
      tasks?.dispose();
      await this.exchange?.close();
      this.exchange = undefined;
    }
  }

  /** A call that may wait long (the rendezvous, the next task) gives way to a heartbeat crash, and to a stop. */
  private unlessHeartbeatsCrash<T>(call: Promise<T>): Promise<T> {
    return Promise.race([call, this.watch.crashed, this.stopped]);
  }

  private unlessStopped<T>(call: Promise<T>): Promise<T> {
    return Promise.race([call, this.stopped]);
  }

  /** Told to stop: whatever else broke the generation off, the worker leaves. */
  private stopInterrupt(): Interrupt | undefined {
    const reason = this.stopReason;
    return reason === undefined ? undefined : { kind: 'Stopped', reason };
  }

  /**
   * A rendezvous called off (agent-decisions.ts): a heartbeat of its own asks whether the coordinator
   * still knows this worker; if it does not (it dropped the worker for silence), the worker registers again.
   */
  private async askWhetherStillKnown(error: unknown): Promise<Interrupt | undefined> {
    if (!asksWhetherStillKnown(error)) return undefined;
    const { coordinator, workerId } = this.options;
    return coordinator.heartbeat(workerId, this.generation).then(
      () => undefined,
      (refusal: unknown) => interruptOf(refusal, 'rendezvous', undefined),
    );
  }

  /** Acts on an interrupt as responseTo decides, then goes back to the rendezvous. */
  private async respond(interrupt: Interrupt, reached: StepPosition, transports: WorkerTransports): Promise<void> {
    const { coordinator, workerId, logger } = this.options;
    const response = responseTo(interrupt);
    this.lifecycle.moveTo(response.next);
    this.options.metrics?.interrupted(interrupt.kind);
    const { generation } = this;
    if (interrupt.kind === 'CoordinatorLost') {
      logger.warn(
        { event: 'coordinator.lost', coordinator: coordinator.address, reason: interrupt.reason },
        'lost the coordinator, or it no longer knows this worker; registering again',
      );
    } else if (interrupt.kind === 'Stopped' || interrupt.kind === 'CoordinatorStopping') {
      logger.warn(
        { event: 'generation.left', generation, interrupt: interrupt.kind, reason: interrupt.reason },
        `leaving generation ${generation} (${interrupt.reason}): offering the state of the last completed step`,
      );
    } else {
      logger.warn(
        { event: 'generation.broken', generation, interrupt: interrupt.kind, reason: interrupt.reason },
        `generation ${generation} broke: ${interrupt.reason}; rejoining`,
      );
    }
    // Outside a generation there is nothing to leave: a report from generation 0 would fail a run that has not started.
    if (response.reportLeaving && generation > 0) await coordinator.reportFailure(workerId, generation, interrupt.reason, true, reached).catch(() => undefined);
    const snapshot = response.offerCommittedState && generation > 0 ? await this.committed.snapshot() : undefined;
    if (snapshot) {
      const { phaseIndex, step } = snapshot.position;
      await coordinator
        .uploadState(workerId, generation, phaseIndex, step, encodeCheckpointSnapshot(snapshot))
        .catch((e: Error) => logger.warn({ event: 'commit.upload-failed', error: e.message }, 'could not offer the committed state'));
    }
    if (response.next === 'stopped') {
      logger.warn({ event: 'worker.stopped', reason: interrupt.reason, offered: snapshot?.position.step }, `stopped (${interrupt.reason})`);
      return;
    }
    // A coordinator that comes back resumes from its checkpoint: this worker joins it afresh.
    if (response.next === 'registering') await this.unlessStopped(this.register(transports));
    this.lifecycle.moveTo('rendezvous');
  }

  /** Told to stop before it held any state to offer (starting, registering). */
  private stoppedBefore(reason: string): WorkerOutcome {
    this.options.logger.warn({ event: 'worker.stopped', reason }, `stopped (${reason})`);
    if (this.lifecycle.state !== 'stopped') this.lifecycle.moveTo('stopped');
    return { status: 'stopped', reason };
  }

  private fencedOut(reason: string): WorkerOutcome {
    this.options.logger.warn({ event: 'worker.fenced', reason }, reason);
    this.lifecycle.moveTo('fenced');
    return { status: 'fenced', reason };
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
