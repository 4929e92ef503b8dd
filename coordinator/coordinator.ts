import { status } from '@grpc/grpc-js';
import { initBackend } from '../engine/backend.js';
import { datasetShape } from '../engine/data/sources.js';
import { disposeNetwork } from '../engine/network.js';
import { createNetwork } from '../engine/setup.js';
import { assignParameters } from '../engine/state.js';
import { type Checkpoint, decodeCheckpointSnapshot, encodeCheckpointSnapshot } from '../shared/checkpoint.js';
import type { StoredCheckpoint } from '../shared/checkpoint-store.js';
import { configHash, configToYaml, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { Logger } from '../shared/logging.js';
import type { EvaluationReport__Output } from '../shared/proto/generated/autoprune/v1/EvaluationReport.js';
import type { HeartbeatReply } from '../shared/proto/generated/autoprune/v1/HeartbeatReply.js';
import type { ProgressReport__Output } from '../shared/proto/generated/autoprune/v1/ProgressReport.js';
import type { RegisterReply } from '../shared/proto/generated/autoprune/v1/RegisterReply.js';
import type { RegisterRequest__Output } from '../shared/proto/generated/autoprune/v1/RegisterRequest.js';
import type { RendezvousReply } from '../shared/proto/generated/autoprune/v1/RendezvousReply.js';
import type { RunState } from '../shared/proto/generated/autoprune/v1/RunState.js';
import type { Task } from '../shared/proto/generated/autoprune/v1/Task.js';
import { PROTOCOL_VERSION } from '../shared/proto/load.js';
import { RpcFailure } from '../shared/rpc/failure.js';
import { secretsEqual } from '../shared/rpc/security.js';
import { parseHostPort } from '../shared/rpc/server.js';
import { Membership, type WorkerRecord } from './membership.js';
import { type Generation, Rendezvous } from './rendezvous.js';
import type { PhaseSummary, RunReport } from './report.js';
import { type RunDirectory, readInitCheckpoint } from './run-directory.js';
import { RunLifecycle } from './run-lifecycle.js';
import { type PlannedTask, planTasks } from './task-plan.js';

function isAfter(a: { phaseIndex: number; step: number }, b: { phaseIndex: number; step: number }): boolean {
  return a.phaseIndex > b.phaseIndex || (a.phaseIndex === b.phaseIndex && a.step > b.step);
}

/**
 * The coordinator of a distributed run: admits workers, forms generations, hands every rank the same
 * training tasks, aggregates what the ranks report (step metrics, evaluation shares, replica checksums),
 * checkpoints the state rank 0 uploads at phase ends, and writes the run directory. Transport-free: the
 * gRPC service (service.ts) calls these methods, and tests may call them directly.
 */

export interface CoordinatorOptions {
  readonly config: RunConfig;
  readonly runId: string;
  readonly joinToken: string;
  /** Workers the run trains with. */
  readonly workers: number;
  /** Created for a new run, or opened to resume one (then `resumeFrom` is its newest valid checkpoint). */
  readonly runDirectory: RunDirectory;
  readonly resumeFrom?: StoredCheckpoint | undefined;
  readonly events: EventPublisher;
  readonly logger: Logger;
  readonly now?: () => number;
  /**
   * Whether silent workers are declared lost (default true). A run whose only worker lives in this
   * process (`train`) turns it off: its liveness is the process's own.
   */
  readonly watchHeartbeats?: boolean;
}

export interface RunOutcome {
  readonly status: 'completed' | 'failed';
  readonly reason: string | undefined;
  /** The run failed on its input (a worker refused its data or config): the CLI exits as for bad input. */
  readonly badInput: boolean;
  readonly report: RunReport | undefined;
  readonly runDirectory: string;
}

interface RankReports<T> {
  readonly byRank: Map<number, T>;
}

export class Coordinator {
  readonly lifecycle = new RunLifecycle();
  readonly hash: string;
  private readonly membership = new Membership();
  private readonly rendezvousPoint: Rendezvous;
  private readonly finishedTasks = new Map<string, number>();
  private readonly progress = new Map<string, RankReports<ProgressReport__Output>>();
  private readonly evaluations = new Map<string, RankReports<EvaluationReport__Output>>();
  private readonly phaseStarted = new Map<number, number>();
  private readonly phases: PhaseSummary[] = [];
  /** Snapshots that tasks with restoreState load, by phase: a dense phase's `init`, or the state to resume from. */
  private readonly startStates = new Map<number, Buffer>();
  private readonly initStates = new Map<number, Buffer>();
  private latestState: Checkpoint | undefined;
  /** Checkpoint writes, one after another, while training goes on. */
  private writes: Promise<void> = Promise.resolve();
  private report: RunReport | undefined;
  private finalizing = false;
  private monitor: NodeJS.Timeout | undefined;
  /** Set from the moment a failure is noticed until the next generation forms. */
  private recovery: { readonly detectedAt: number; readonly reason: string; waitTimer?: NodeJS.Timeout } | undefined;
  /** The furthest step the current generation reported, to count the steps a recovery redoes. */
  private furthest: { phaseIndex: number; step: number } = { phaseIndex: 0, step: 0 };
  private tasks: PlannedTask[];
  /** Workers done with their tasks, waiting for the run to end: a recovery sends them back to the rendezvous. */
  private readonly finishWaiters = new Set<(error: Error) => void>();
  private readonly startedAt: number;
  private lastCheckpointAt: number;
  private readonly now: () => number;

  private readonly runDirectory: RunDirectory;

  private constructor(
    private readonly options: CoordinatorOptions,
    lastGeneration: number,
  ) {
    this.now = options.now ?? (() => performance.now());
    this.startedAt = this.now();
    this.lastCheckpointAt = this.startedAt;
    this.hash = configHash(options.config);
    this.runDirectory = options.runDirectory;
    this.rendezvousPoint = new Rendezvous(() => this.expectedAtRendezvous(), lastGeneration);
    this.formed = lastGeneration;
    const resumed = options.resumeFrom?.checkpoint.position;
    this.tasks = planTasks(options.config, resumed && { phaseIndex: resumed.phaseIndex, step: resumed.step });
  }

  /** Checks the config against the world size and reads the states that tasks start from. */
  static async create(options: CoordinatorOptions): Promise<Coordinator> {
    const { config, workers } = options;
    if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`a run needs at least one worker, not ${workers}`);
    if (config.batchSize < workers) {
      throw new InputError('batchSize', `${config.batchSize} is smaller than the ${workers} workers: every worker needs a share of each batch`, {
        expected: `at least ${workers}`,
      });
    }
    // The coordinator only assembles and counts networks: the plain JavaScript backend is enough.
    await initBackend('cpu', (message) => options.logger.info({ event: 'backend.notice' }, message));
    const coordinator = new Coordinator(options, await options.runDirectory.lastGeneration());
    for (const [index, phase] of config.phases.entries()) {
      if (phase.phase !== 'dense' || phase.init === undefined) continue;
      coordinator.initStates.set(index, encodeCheckpointSnapshot(await readInitCheckpoint(config, index, phase.init, options.logger)));
    }
    coordinator.loadInitStates();
    const resume = options.resumeFrom;
    if (resume) {
      const { position } = resume.checkpoint;
      if (position.configHash !== coordinator.hash) throw new InputError(resume.path, 'belongs to another config than the run directory holds');
      const first = coordinator.tasks[0];
      if (first) coordinator.startStates.set(first.phaseIndex, encodeCheckpointSnapshot(resume.checkpoint));
      const phases = resume.manifest.run.phases;
      if (Array.isArray(phases)) phases.forEach((summary, index) => summary && (coordinator.phases[index] = summary as PhaseSummary));
      coordinator.latestState = resume.checkpoint;
      options.logger.info({ event: 'run.resumed', from: resume.path, phase: position.phase, step: position.step }, `resuming from ${resume.path}`);
    }
    return coordinator;
  }

  get runId(): string {
    return this.options.runId;
  }

  /** Starts watching heartbeats. */
  start(): void {
    if (this.options.watchHeartbeats === false) return;
    const { heartbeat } = this.options.config.distributed;
    // Check often, so that a silent worker is noticed right after its timeout rather than up to an interval later.
    this.monitor = setInterval(() => this.checkHeartbeats(), Math.min(250, heartbeat.timeoutSeconds * 250));
    this.monitor.unref();
  }

  async outcome(): Promise<RunOutcome> {
    const final = await this.lifecycle.whenFinished();
    await this.options.events.flush();
    const { reason, badInput } = this.lifecycle;
    return { status: final === 'completed' ? 'completed' : 'failed', reason, badInput, report: this.report, runDirectory: this.runDirectory.path };
  }

  stop(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.rendezvousPoint.abort('the coordinator is shutting down');
  }

  // ---- membership ----

  register(request: RegisterRequest__Output): RegisterReply {
    if (request.protocolVersion !== PROTOCOL_VERSION) {
      throw new RpcFailure(
        status.FAILED_PRECONDITION,
        'protocol-version',
        `protocol version ${request.protocolVersion} is not supported; this coordinator speaks version ${PROTOCOL_VERSION}`,
      );
    }
    if (!secretsEqual(request.joinToken, this.options.joinToken)) throw new RpcFailure(status.UNAUTHENTICATED, 'unauthenticated', 'join token refused');
    if (!request.workerId) throw new RpcFailure(status.INVALID_ARGUMENT, 'invalid-argument', 'worker_id is empty');
    for (const [field, value] of [
      ['address', request.address],
      ['data_address', request.dataAddress],
    ] as const) {
      try {
        parseHostPort(value, field);
      } catch (error) {
        throw new RpcFailure(status.INVALID_ARGUMENT, 'invalid-argument', (error as Error).message);
      }
    }
    if (request.configHash !== '' && request.configHash !== this.hash) {
      throw new RpcFailure(
        status.FAILED_PRECONDITION,
        'config-mismatch',
        `config hash ${request.configHash.slice(0, 12)}… differs from the run's ${this.hash.slice(0, 12)}…: the worker was started with another config`,
      );
    }
    const generation = this.rendezvousPoint.generation;
    if (request.generation !== 0 && request.generation !== generation) {
      throw new RpcFailure(
        status.FAILED_PRECONDITION,
        'stale-generation',
        `stale generation ${request.generation}: the run is at generation ${generation}; restart the worker to join afresh`,
      );
    }
    if (this.lifecycle.finished) throw new RpcFailure(status.FAILED_PRECONDITION, 'run-finished', `run ${this.runId} is ${this.lifecycle.status}`);
    if (this.membership.get(request.workerId))
      throw new RpcFailure(status.ALREADY_EXISTS, 'already-registered', `worker id ${request.workerId} is already registered`);
    if (this.membership.size >= this.options.workers)
      throw new RpcFailure(status.RESOURCE_EXHAUSTED, 'run-full', `run ${this.runId} already has its ${this.options.workers} workers`);
    const joinsRunningRun = this.lifecycle.status === 'running';

    const caps = request.capabilities;
    const worker = this.membership.add(
      {
        id: request.workerId,
        address: request.address,
        dataAddress: request.dataAddress,
        capabilities: { hostname: caps?.hostname ?? '', cpus: caps?.cpus ?? 0, memoryBytes: caps?.memoryBytes ?? 0, engineVersion: caps?.engineVersion ?? '' },
      },
      this.now(),
    );
    this.options.logger.info(
      { event: 'worker.joined', workerId: worker.id, address: worker.address, hostname: worker.capabilities.hostname },
      `worker ${worker.id} registered`,
    );
    this.options.events.publish('worker.joined', { workerId: worker.id, address: worker.address, generation });
    // A replacement (or one more worker, up to the maximum): the ring re-forms to take it in.
    if (joinsRunningRun) this.beginRecovery(`worker ${worker.id} joins`, '', 'a worker joined', 0);
    return {
      runId: this.runId,
      configYaml: configToYaml(this.options.config),
      configHash: this.hash,
      heartbeatIntervalMs: Math.round(this.options.config.distributed.heartbeat.intervalSeconds * 1000),
    };
  }

  /** The reply's generation and state tell the worker whether it is still in the run. */
  heartbeat(workerId: string): HeartbeatReply {
    this.registered(workerId);
    this.membership.touch(workerId, this.now());
    const state: RunState =
      this.lifecycle.status === 'pending'
        ? 'RUN_STATE_PENDING'
        : this.lifecycle.status === 'running'
          ? 'RUN_STATE_RUNNING'
          : this.lifecycle.status === 'completed'
            ? 'RUN_STATE_COMPLETED'
            : 'RUN_STATE_FAILED';
    const generation = this.rendezvousPoint.generation + (this.recovery ? 1 : 0);
    return { generation, state, reason: this.lifecycle.reason ?? '' };
  }

  async rendezvous(workerId: string, lastGeneration: number, backend: string): Promise<RendezvousReply> {
    const worker = this.registered(workerId);
    worker.backend = backend;
    if (lastGeneration > this.rendezvousPoint.generation) {
      throw new RpcFailure(
        status.FAILED_PRECONDITION,
        'stale-generation',
        `worker ${workerId} claims generation ${lastGeneration}; the run is at generation ${this.rendezvousPoint.generation}`,
      );
    }
    let generation: Generation;
    try {
      generation = await this.rendezvousPoint.join(worker);
    } catch (error) {
      throw new RpcFailure(status.ABORTED, 'rendezvous-aborted', (error as Error).message);
    }
    if (generation.number > this.formed) {
      this.formed = generation.number;
      this.runDirectory
        .recordGeneration(generation.number)
        .catch((error: Error) => this.fail(`cannot record generation ${generation.number}: ${error.message}`));
      if (this.lifecycle.status === 'pending') this.begin(generation);
      else this.recovered(generation);
    }
    const rank = generation.members.findIndex((m) => m.id === workerId);
    return {
      generation: generation.number,
      rank,
      worldSize: generation.members.length,
      ring: generation.members.map((m) => ({ workerId: m.id, address: m.address, dataAddress: m.dataAddress })),
      sessionKey: generation.sessionKey,
    };
  }

  private formed = 0;

  /**
   * How many waiting workers form the next generation: all of them for the first; afterwards every live
   * worker, up to the maximum, and none while fewer than minWorkers are left (the run waits for replacements).
   */
  private expectedAtRendezvous(): number {
    if (this.lifecycle.status === 'pending') return this.options.workers;
    if (this.membership.size < this.options.config.distributed.minWorkers) return 0;
    return Math.min(this.options.workers, this.membership.size);
  }

  /**
   * A member failed (or a worker joins): every member leaves its task and comes back to the rendezvous
   * (heartbeat replies now name the next generation), and the run goes on from the newest state the
   * coordinator holds in memory once the live workers have gathered.
   */
  private beginRecovery(reason: string, workerId: string, how: string, silentMs: number): void {
    if (this.lifecycle.status !== 'running') return;
    if (workerId !== '') {
      this.options.events.publish('failure.detected', { workerId, how, detectSeconds: silentMs / 1000, generation: this.rendezvousPoint.generation });
      this.options.logger.warn({ event: 'failure.detected', workerId, how, detectMs: Math.round(silentMs) }, `failure detected: ${reason}`);
    }
    if (!this.recovery) this.recovery = { detectedAt: this.now(), reason };
    for (const release of this.finishWaiters)
      release(
        new RpcFailure(
          status.FAILED_PRECONDITION,
          'stale-generation',
          `generation ${this.rendezvousPoint.generation} is re-forming after a failure: rejoin the rendezvous`,
        ),
      );
    this.finishWaiters.clear();
    this.waitForEnoughWorkers();
    this.rendezvousPoint.check();
  }

  /** Below minWorkers the run waits for replacements, for a while. */
  private waitForEnoughWorkers(): void {
    const { minWorkers, rejoinWaitSeconds } = this.options.config.distributed;
    const recovery = this.recovery;
    if (!recovery || this.membership.size >= minWorkers || recovery.waitTimer) return;
    this.options.logger.warn(
      { event: 'recovery.waiting', workers: this.membership.size, minWorkers, waitSeconds: rejoinWaitSeconds },
      `waiting up to ${rejoinWaitSeconds} s for workers`,
    );
    recovery.waitTimer = setTimeout(() => {
      if (this.membership.size < minWorkers)
        this.fail(`${recovery.reason}; only ${this.membership.size} of the ${minWorkers} workers needed came back within ${rejoinWaitSeconds} s`);
    }, rejoinWaitSeconds * 1000);
    recovery.waitTimer.unref();
  }

  /** A new generation formed after a failure: it restarts from the newest state held in memory. */
  private recovered(generation: Generation): void {
    const recovery = this.recovery;
    if (recovery?.waitTimer) clearTimeout(recovery.waitTimer);
    this.recovery = undefined;
    const from = this.latestState?.position;
    this.tasks = planTasks(this.options.config, from ? { phaseIndex: from.phaseIndex, step: from.step } : undefined);
    const first = this.tasks[0];
    this.startStates.clear();
    this.loadInitStates();
    if (this.latestState && first) this.startStates.set(first.phaseIndex, encodeCheckpointSnapshot(this.latestState));
    this.finishedTasks.clear();
    this.progress.clear();
    this.evaluations.clear();
    const restart = { phaseIndex: from?.phaseIndex ?? 0, step: from?.step ?? 0 };
    // Steps started after the state the run goes on from: their work is lost and they run again.
    const stepsRedone = this.furthest.phaseIndex === restart.phaseIndex ? Math.max(0, this.furthest.step - restart.step) : this.furthest.step;
    this.furthest = restart;
    const recoverSeconds = recovery ? (this.now() - recovery.detectedAt) / 1000 : 0;
    this.options.events.publish('recovery.completed', {
      generation: generation.number,
      workers: generation.members.length,
      recoverSeconds,
      stepsRedone,
      from: restart,
    });
    this.options.logger.warn(
      {
        event: 'recovery.completed',
        generation: generation.number,
        workers: generation.members.map((m) => m.id),
        recoverMs: Math.round(recoverSeconds * 1000),
        stepsRedone,
        from: restart,
      },
      `generation ${generation.number}: ${generation.members.length} workers go on from phase ${restart.phaseIndex} step ${restart.step}`,
    );
  }

  private begin(generation: Generation): void {
    const { config } = this.options;
    this.lifecycle.start();
    this.options.logger.info(
      { event: 'run.started', runId: this.runId, generation: generation.number, workers: generation.members.map((m) => m.id) },
      'run started',
    );
    const resumed = this.options.resumeFrom?.checkpoint.position;
    this.options.events.publish('run.started', {
      configHash: this.hash,
      model: config.model.name,
      dataset: config.data.dataset,
      workers: generation.members.length,
      ...(resumed ? { resumedFrom: { phaseIndex: resumed.phaseIndex, step: resumed.step } } : {}),
    });
  }

  // ---- tasks ----

  async nextTask(workerId: string, generation: number, finishedTask: number): Promise<Task> {
    this.member(workerId, generation);
    const previous = this.finishedTasks.get(workerId) ?? 0;
    if (finishedTask !== previous && finishedTask !== previous + 1) {
      throw new RpcFailure(
        status.FAILED_PRECONDITION,
        'invalid-argument',
        `worker ${workerId} reports task ${finishedTask} finished, but its last task was ${previous + 1}`,
      );
    }
    this.finishedTasks.set(workerId, finishedTask);
    if (!this.lifecycle.finished && finishedTask < this.tasks.length) {
      const task = this.tasks[finishedTask]!;
      this.markPhaseStart(task);
      const { id, phaseIndex, fromStep, toStep, resetOptimizers, restoreState, evaluate, uploadState } = task;
      const rankZero = this.rendezvousPoint.rankOf(workerId) === 0;
      return {
        id,
        generation,
        train: { phaseIndex, fromStep, toStep, resetOptimizers, restoreState, evaluate, uploadState: rankZero && (uploadState || this.checkpointDue()) },
      };
    }
    if (!this.lifecycle.finished && this.allRanksFinished()) void this.finalize();
    // A worker done with its tasks waits here for the run's end, unless the run re-forms first.
    const final = await Promise.race([this.lifecycle.whenFinished(), new Promise<never>((_, reject) => this.finishWaiters.add(reject))]);
    return {
      id: finishedTask + 1,
      generation,
      finish: { state: final === 'completed' ? 'RUN_STATE_COMPLETED' : 'RUN_STATE_FAILED', reason: this.lifecycle.reason ?? '' },
    };
  }

  /** Whether `checkpoint.seconds` have passed since the last checkpoint (time-based checkpoints). */
  private checkpointDue(): boolean {
    const { seconds } = this.options.config.checkpoint;
    return seconds > 0 && this.now() - this.lastCheckpointAt >= seconds * 1000;
  }

  private markPhaseStart(task: PlannedTask): void {
    if (this.phaseStarted.has(task.phaseIndex)) return;
    this.phaseStarted.set(task.phaseIndex, this.now());
    const phase = this.options.config.phases[task.phaseIndex]!;
    this.options.events.publish('phase', { phase: phase.phase, phaseIndex: task.phaseIndex, status: 'started', steps: phase.steps });
    this.options.logger.info({ event: 'phase', phase: phase.phase, index: task.phaseIndex, steps: phase.steps }, `phase ${phase.phase} started`);
  }

  private allRanksFinished(): boolean {
    const members = this.rendezvousPoint.current?.members ?? [];
    return members.every((m) => this.finishedTasks.get(m.id) === this.tasks.length);
  }

  // ---- reports ----

  reportProgress(report: ProgressReport__Output): void {
    this.member(report.workerId, report.generation);
    const world = this.world();
    this.noteReached(report.phaseIndex, report.step);
    const key = `${report.phaseIndex}:${report.step}`;
    const entry = this.progress.get(key) ?? { byRank: new Map() };
    entry.byRank.set(report.rank, report);
    this.progress.set(key, entry);
    if (entry.byRank.size < world) return;
    this.progress.delete(key);
    const reports = [...entry.byRank.values()];
    this.compareChecksums(reports);
    const phase = this.options.config.phases[report.phaseIndex]!;
    const mean = (pick: (r: ProgressReport__Output) => number) => reports.reduce((sum, r) => sum + pick(r), 0) / reports.length;
    const auxLoss = mean((r) => r.auxLoss);
    const remaining = report.remaining;
    this.options.events.publish('step', {
      phase: phase.phase,
      phaseIndex: report.phaseIndex,
      step: report.step,
      steps: phase.steps,
      loss: mean((r) => r.loss),
      accuracy: mean((r) => r.accuracy),
      ...(Number.isNaN(auxLoss) ? {} : { auxLoss }),
      remaining,
      ...(remaining > 0 ? { compression: 1 / remaining } : {}),
      imagesPerSecond: reports.reduce((sum, r) => sum + r.imagesPerSecond, 0),
      workers: world,
    });
  }

  /** Replicas apply identical updates; if their checksums differ, something is broken and the run stops. */
  private compareChecksums(reports: ProgressReport__Output[]): void {
    const withChecksum = reports.filter((r) => r.checksum !== '');
    if (withChecksum.length === 0) return;
    const distinct = new Set(reports.map((r) => r.checksum));
    if (distinct.size === 1) return;
    const { phaseIndex, step } = reports[0]!;
    const detail = reports
      .sort((a, b) => a.rank - b.rank)
      .map((r) => `rank ${r.rank} (${r.workerId}) ${r.checksum.slice(0, 16) || 'none'}`)
      .join(', ');
    this.fail(`replicas diverged at phase ${phaseIndex} step ${step}: checksums of W and M differ: ${detail}`);
  }

  reportEvaluation(report: EvaluationReport__Output): void {
    this.member(report.workerId, report.generation);
    const key = `${report.phaseIndex}:${report.step}`;
    const entry = this.evaluations.get(key) ?? { byRank: new Map() };
    entry.byRank.set(report.rank, report);
    this.evaluations.set(key, entry);
    if (entry.byRank.size < this.world()) return;
    this.evaluations.delete(key);
    const reports = [...entry.byRank.values()];
    const correct = reports.reduce((sum, r) => sum + r.correct, 0);
    const count = reports.reduce((sum, r) => sum + r.count, 0);
    const testAccuracy = count === 0 ? 0 : correct / count;
    const phase = this.options.config.phases[report.phaseIndex]!;
    this.options.events.publish('eval', { phase: phase.phase, phaseIndex: report.phaseIndex, step: report.step, testAccuracy });
    this.options.logger.info({ event: 'eval', phase: phase.phase, step: report.step, testAccuracy }, `test accuracy ${(testAccuracy * 100).toFixed(2)}%`);
    if (report.step === phase.steps) {
      const seconds = (this.now() - (this.phaseStarted.get(report.phaseIndex) ?? this.startedAt)) / 1000;
      this.phases[report.phaseIndex] = { name: phase.phase, steps: phase.steps, seconds, testAccuracy };
      this.options.events.publish('phase', {
        phase: phase.phase,
        phaseIndex: report.phaseIndex,
        status: 'completed',
        steps: phase.steps,
        seconds,
        testAccuracy,
      });
      this.options.logger.info({ event: 'phase.finished', phase: phase.phase, seconds, testAccuracy }, `phase ${phase.phase} finished`);
    }
  }

  /** A worker cannot go on; before the first generation forms, a registered worker may say so too. */
  reportFailure(
    workerId: string,
    generation: number,
    reason: string,
    willRejoin: boolean,
    reached: { phaseIndex: number; step: number },
    badInput = false,
  ): void {
    if (generation === 0 && this.lifecycle.status === 'pending') this.registered(workerId);
    else if (generation < this.rendezvousPoint.generation)
      return; // about a generation already left behind
    else this.member(workerId, generation);
    // The step it was in counts as started: it is redone too.
    this.noteReached(reached.phaseIndex, reached.step + 1);
    if (willRejoin && this.lifecycle.status === 'running') this.beginRecovery(`worker ${workerId}: ${reason}`, '', '', 0);
    else this.fail(`worker ${workerId}: ${reason}`, badInput);
  }

  /** Keeps the furthest point (phase index, steps done) the current generation is known to have reached. */
  private noteReached(phaseIndex: number, step: number): void {
    if (isAfter({ phaseIndex, step }, this.furthest)) this.furthest = { phaseIndex, step };
  }

  /** A worker is gone for good (its process exited, its heartbeats stopped): the run re-forms without it. */
  workerLost(workerId: string, how: string, silentMs: number): void {
    const worker = this.membership.get(workerId);
    if (!worker || this.lifecycle.finished) return;
    this.membership.remove(workerId);
    this.rendezvousPoint.leave(workerId, `worker ${workerId} was lost`);
    this.options.events.publish('worker.left', { workerId, address: worker.address, generation: this.rendezvousPoint.generation, reason: how });
    if (this.lifecycle.status === 'running') this.beginRecovery(`worker ${workerId} at ${worker.address} was lost (${how})`, workerId, how, silentMs);
    else if (this.lifecycle.status === 'pending')
      this.options.logger.warn({ event: 'worker.left', workerId, how }, `worker ${workerId} left before the run started`);
  }

  // ---- state ----

  private loadInitStates(): void {
    for (const [index, state] of this.initStates) this.startStates.set(index, state);
  }

  /** The safetensors snapshot a task with restoreState loads: the resumed checkpoint, or a dense phase's `init`. */
  initialState(workerId: string, generation: number, phaseIndex: number): Buffer {
    this.member(workerId, generation);
    const state = this.startStates.get(phaseIndex);
    if (!state) throw new RpcFailure(status.NOT_FOUND, 'not-found', `phase ${phaseIndex} does not start from a checkpoint`);
    return state;
  }

  /** Rank 0's state at the end of a phase: checked, then written as the run's checkpoint. */
  async receiveState(workerId: string, generation: number, bytes: Buffer): Promise<void> {
    this.member(workerId, generation);
    // While the run re-forms, every survivor sends the state of its last completed step, held in its memory.
    const committed = this.recovery !== undefined;
    if (!committed && this.rendezvousPoint.rankOf(workerId) !== 0)
      throw new RpcFailure(status.PERMISSION_DENIED, 'not-permitted', `worker ${workerId} is not rank 0`);
    let checkpoint: Checkpoint;
    try {
      checkpoint = decodeCheckpointSnapshot(bytes, `state uploaded by worker ${workerId}`);
    } catch (error) {
      throw new RpcFailure(status.INVALID_ARGUMENT, 'invalid-argument', (error as Error).message);
    }
    if (checkpoint.position.configHash !== this.hash)
      throw new RpcFailure(status.FAILED_PRECONDITION, 'config-mismatch', `state uploaded by worker ${workerId} belongs to another config`);
    if (committed) {
      // Kept in memory only, and only if it is further on than what the run already holds.
      if (!this.latestState || isAfter(checkpoint.position, this.latestState.position)) this.latestState = checkpoint;
      return;
    }
    this.latestState = checkpoint;
    this.lastCheckpointAt = this.now();
    // The disk write overlaps training: the upload is acknowledged once the state is checked.
    const run = { worldSize: this.world(), generation, seed: this.options.config.seed, batchSize: this.options.config.batchSize, phases: [...this.phases] };
    this.writes = this.writes.then(() => this.writeCheckpoint(checkpoint, run));
  }

  private async writeCheckpoint(checkpoint: Checkpoint, run: Record<string, unknown>): Promise<void> {
    if (this.lifecycle.finished) return;
    const { phase, step } = checkpoint.position;
    const started = this.now();
    try {
      const path = await this.runDirectory.saveCheckpoint(checkpoint, run);
      this.options.events.publish('checkpoint.saved', { path, phase, step });
      this.options.logger.info({ event: 'checkpoint.saved', phase, step, path, ms: Math.round(this.now() - started) }, 'checkpoint saved');
    } catch (error) {
      this.fail(`cannot write the checkpoint at ${phase} step ${step}: ${(error as Error).message}; the previous checkpoints are intact`);
    }
  }

  // ---- ending ----

  private async finalize(): Promise<void> {
    if (this.finalizing) return;
    this.finalizing = true;
    const { config } = this.options;
    try {
      await this.writes;
      if (this.lifecycle.finished) return;
      if (!this.latestState) throw new Error('no state was uploaded at the end of the last phase');
      const network = createNetwork(config, datasetShape(config.data.dataset));
      try {
        assignParameters(network.parameters, this.latestState.parameters, 'final state');
        const gated = config.phases.some((p) => p.phase !== 'dense');
        const backend = [...new Set(this.rendezvousPoint.current?.members.map((m) => m.backend ?? 'unknown'))].join(',');
        this.report = await this.runDirectory.writeResults(network, gated, backend, this.phases);
      } finally {
        disposeNetwork(network);
      }
      const last = this.phases[this.phases.length - 1];
      this.options.events.publish('run.finished', {
        compression: this.report.totals.compression,
        testAccuracy: last?.testAccuracy ?? 0,
        seconds: (this.now() - this.startedAt) / 1000,
      });
      this.options.logger.info({ event: 'run.finished', totals: this.report.totals, outDir: this.runDirectory.path }, 'run finished');
      this.lifecycle.complete();
      this.stop();
    } catch (error) {
      this.fail(`writing the results failed: ${(error as Error).message}`);
    }
  }

  /** Fails the run once: the first reason is the cause (`badInput`: the run's input is at fault). */
  fail(reason: string, badInput = false): void {
    if (this.recovery?.waitTimer) clearTimeout(this.recovery.waitTimer);
    if (!this.lifecycle.fail(reason, badInput)) return;
    this.options.logger.error({ event: 'run.failed', reason }, `run failed: ${reason}`);
    this.options.events.publish('run.failed', { reason });
    this.stop();
  }

  private checkHeartbeats(): void {
    if (this.lifecycle.finished) return;
    const timeoutMs = this.options.config.distributed.heartbeat.timeoutSeconds * 1000;
    for (const { worker, silentMs } of this.membership.silent(this.now(), timeoutMs)) {
      this.workerLost(worker.id, `no heartbeat for ${(silentMs / 1000).toFixed(1)} s`, silentMs);
    }
  }

  // ---- checks ----

  private registered(workerId: string): WorkerRecord {
    const worker = this.membership.get(workerId);
    if (!worker) throw new RpcFailure(status.NOT_FOUND, 'unknown-worker', `worker ${workerId} is not registered in run ${this.runId}`);
    return worker;
  }

  /** The caller must be a member of the current generation: anything older is fenced out. */
  private member(workerId: string, generation: number): WorkerRecord {
    const worker = this.registered(workerId);
    const current = this.rendezvousPoint.generation;
    if (generation !== current)
      throw new RpcFailure(status.FAILED_PRECONDITION, 'stale-generation', `stale generation ${generation}: the run is at generation ${current}`);
    if (!this.rendezvousPoint.isMember(workerId))
      throw new RpcFailure(status.FAILED_PRECONDITION, 'not-a-member', `worker ${workerId} is not in generation ${current}`);
    return worker;
  }

  private world(): number {
    return this.rendezvousPoint.current?.members.length ?? 0;
  }
}
