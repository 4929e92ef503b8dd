import { initBackend } from '../engine/backend.js';
import { type Checkpoint, decodeCheckpointSnapshot } from '../shared/checkpoint.js';
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
import type { RunState as WireRunState } from '../shared/proto/generated/autoprune/v1/RunState.js';
import type { Task } from '../shared/proto/generated/autoprune/v1/Task.js';
import { checkRegistration } from './admission.js';
import { BadSampleLedger } from './bad-samples.js';
import { CheckpointWriter } from './checkpoint-writer.js';
import { CredentialRegistry } from './credentials.js';
import {
  type Disruption,
  failureReportCheck,
  generationSize,
  isAfter,
  lostWorkers,
  type Position,
  refusesGeneration,
  samePosition,
  uploadVerdict,
} from './decisions.js';
import { EvaluationAggregation } from './evaluation-aggregation.js';
import { writeFinalResults } from './final-results.js';
import { Membership, type WorkerRecord } from './membership.js';
import { PhaseTimeline } from './phase-timeline.js';
import { Recovery } from './recovery.js';
import { refusals } from './refusals.js';
import { type Generation, Rendezvous, rendezvousReply } from './rendezvous.js';
import type { PhaseSummary, RunReport } from './report.js';
import type { RunDirectory } from './run-directory.js';
import { RunLog } from './run-log.js';
import { RunStateMachine, type RunStatus } from './run-state.js';
import { StartWait } from './start-wait.js';
import { StateStore } from './state-store.js';
import { StepAggregation } from './step-aggregation.js';
import { TaskBoard } from './task-board.js';
import { planTasks } from './task-plan.js';

/**
 * The coordinator of a distributed run, as a facade: it checks each call (registration, credential,
 * generation, membership) and maps what it refuses to RPC refusals, and wires the parts that do the work: membership,
 * the rendezvous, the run's state machine, recovery (acting on the pure decisions in decisions.ts), the
 * task board, step and evaluation aggregation, the state store and the checkpoint writer. Transport-free:
 * the gRPC service (service.ts) calls these methods, and tests may call them directly. Timers only call
 * `tick(now)`.
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
  /** The run failed because a worker found its input bad (data files, config): the CLI exits 2. */
  readonly badInput: boolean;
  /** The run was told to stop (a signal) and ended after its final checkpoint: it can be resumed. */
  readonly interrupted: boolean;
  readonly report: RunReport | undefined;
  readonly runDirectory: string;
}

/** The run state heartbeat replies carry: a run re-forming is still running for its workers. */
const WIRE_STATES: Readonly<Record<RunStatus, WireRunState>> = {
  pending: 'RUN_STATE_PENDING',
  running: 'RUN_STATE_RUNNING',
  recovering: 'RUN_STATE_RUNNING',
  stopping: 'RUN_STATE_STOPPING',
  completed: 'RUN_STATE_COMPLETED',
  failed: 'RUN_STATE_FAILED',
};

export class Coordinator {
  readonly lifecycle = new RunStateMachine();
  readonly hash: string;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly runDirectory: RunDirectory;
  private readonly membership = new Membership();
  private readonly credentials = new CredentialRegistry();
  private readonly startWait: StartWait;
  private readonly rendezvousPoint: Rendezvous;
  private readonly board: TaskBoard;
  private readonly timeline: PhaseTimeline;
  private readonly steps: StepAggregation;
  private readonly evaluations: EvaluationAggregation;
  private readonly badSamples: BadSampleLedger;
  private readonly checkpoints: CheckpointWriter;
  private readonly recovery: Recovery;
  /** The newest generation number acted on (formed, or recorded by a coordinator before a restart). */
  private formed: number;
  private report: RunReport | undefined;
  /** Where the newest checkpoint on disk stands (the one resumed from, or the last written). */
  private checkpointed: Position | undefined;
  /** Members of the current generation that offered their state since it formed. */
  private readonly offered = new Set<string>();
  private finalizing = false;
  private monitor: NodeJS.Timeout | undefined;

  private constructor(
    private readonly options: CoordinatorOptions,
    lastGeneration: number,
    private readonly states: StateStore,
  ) {
    const { config, events, logger } = options;
    this.now = options.now ?? (() => performance.now());
    const now = this.now;
    this.startedAt = now();
    this.hash = configHash(config);
    this.runDirectory = options.runDirectory;
    const fail = (reason: string) => this.fail(reason);
    const { minWorkers } = config.distributed;
    this.rendezvousPoint = new Rendezvous(() => generationSize(this.lifecycle.status, this.membership.size, options.workers, minWorkers), lastGeneration);
    this.formed = lastGeneration;
    this.board = new TaskBoard(planTasks(config, states.restartPoint));
    states.startFrom(this.board.first?.phaseIndex);
    this.timeline = new PhaseTimeline({ phases: config.phases, events, logger, now, startedAt: this.startedAt });
    this.steps = new StepAggregation(config.phases, events, fail);
    this.evaluations = new EvaluationAggregation(config.phases, this.timeline, events, logger);
    const maxBadFraction = config.data.dataset === 'imagenet' ? config.data.maxBadFraction : 0;
    this.badSamples = new BadSampleLedger(maxBadFraction, (reason) => this.fail(reason, true));
    const finished = () => this.lifecycle.finished;
    this.checkpoints = new CheckpointWriter({ runDirectory: this.runDirectory, seconds: config.checkpoint.seconds, events, logger, now, finished, fail });
    this.recovery = new Recovery({ run: this.lifecycle, limits: config.distributed, events, logger, now, fail });
    const { workers } = options;
    this.startWait = new StartWait({ since: this.startedAt, limits: config.distributed, workers, rendezvous: this.rendezvousPoint, logger, fail });
    // A resumed run's first generation starts where the checkpoint stands: that far, it has been.
    if (states.restartPoint) this.recovery.noteReached(states.restartPoint);
    this.checkpointed = states.restartPoint;
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
    const lastGeneration = await options.runDirectory.lastGeneration();
    const runLog = await RunLog.open(options.runDirectory.path, config, options.resumeFrom?.checkpoint.position, options.logger);
    const recorded = { ...options, events: runLog.recording(options.events) };
    const coordinator = new Coordinator(recorded, lastGeneration, await StateStore.load(config, options.logger, options.resumeFrom));
    const resume = options.resumeFrom;
    if (resume) {
      const phases = resume.manifest.run.phases;
      if (Array.isArray(phases)) coordinator.timeline.restore(phases as (PhaseSummary | undefined)[]);
      const { position } = resume.checkpoint;
      options.logger.info({ event: 'run.resumed', from: resume.path, phase: position.phase, step: position.step }, `resuming from ${resume.path}`);
    }
    return coordinator;
  }

  get runId(): string {
    return this.options.runId;
  }

  /** The newest generation formed (0 before the first). */
  get generation(): number {
    return this.rendezvousPoint.generation;
  }

  /** Where the run stands, for every line of the coordinator's log (shared/logging.ts, LogContext). */
  logFields(): Record<string, unknown> {
    return { runId: this.runId, generation: this.rendezvousPoint.generation, phase: this.timeline.current };
  }

  /** Workers registered now. */
  get registeredWorkers(): number {
    return this.membership.size;
  }

  /** Starts the clock that drives `tick`. */
  start(): void {
    const { heartbeat } = this.options.config.distributed;
    // Tick often, so that a silent worker is noticed right after its timeout rather than up to an interval later.
    this.monitor = setInterval(() => this.tick(this.now()), Math.min(250, heartbeat.timeoutSeconds * 250));
    this.monitor.unref();
  }

  /**
   * The clock moved on to `now`: silent workers are lost, a run that waited too long for its first
   * generation starts with fewer workers or fails, and a recovery that waited too long for workers fails the run.
   */
  tick(now: number): void {
    if (this.lifecycle.finished) return;
    if (this.options.watchHeartbeats !== false) {
      const timeoutMs = this.options.config.distributed.heartbeat.timeoutSeconds * 1000;
      for (const { workerId, silentMs } of lostWorkers(this.membership.lastSeenTimes(), now, timeoutMs)) {
        this.workerLost(workerId, `no heartbeat for ${(silentMs / 1000).toFixed(1)} s`, silentMs);
      }
    }
    this.startWait.tick(now, this.lifecycle.status);
    this.recovery.tick(now, this.membership.size);
  }

  async outcome(): Promise<RunOutcome> {
    const final = await this.lifecycle.whenFinished();
    await this.options.events.flush();
    return {
      status: final === 'completed' ? 'completed' : 'failed',
      reason: this.lifecycle.reason,
      badInput: this.lifecycle.badInput,
      interrupted: this.lifecycle.interrupted,
      report: this.report,
      runDirectory: this.runDirectory.path,
    };
  }

  stop(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.rendezvousPoint.abort('the coordinator is shutting down');
  }

  // ---- membership ----

  /**
   * Admits a worker and hands it a fresh credential. `presentedCredential`: the one the caller presented,
   * which lets it replace the live registration of its id (it lost the coordinator for a while).
   */
  register(request: RegisterRequest__Output, presentedCredential?: string): RegisterReply {
    const { config, events, logger, workers, joinToken } = this.options;
    const admission = checkRegistration(request, {
      runId: this.runId,
      joinToken,
      configHash: this.hash,
      generation: this.rendezvousPoint.generation,
      status: this.lifecycle.status,
      stopping: this.stopping,
      isRegistered: (id) => this.membership.get(id) !== undefined,
      holdsCredential: (id) => this.credentials.verify(id, presentedCredential),
      registered: this.membership.size,
      workers,
    });
    if (admission === 'replace') this.replaceRegistration(request.workerId);
    const generation = this.rendezvousPoint.generation;
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
    const credential = this.credentials.issue(worker.id);
    this.startWait.workerRegistered(worker.id);
    logger.info(
      { event: 'worker.joined', workerId: worker.id, address: worker.address, hostname: worker.capabilities.hostname },
      `worker ${worker.id} registered`,
    );
    events.publish('worker.joined', { workerId: worker.id, address: worker.address, generation });
    // A replacement (or one more worker, up to the maximum): the ring re-forms to take it in.
    if (this.lifecycle.underWay) this.reform({ kind: 'join', reason: `worker ${worker.id} joins` });
    return {
      runId: this.runId,
      configYaml: configToYaml(config),
      configHash: this.hash,
      heartbeatIntervalMs: Math.round(config.distributed.heartbeat.intervalSeconds * 1000),
      credential,
    };
  }

  /**
   * Every call after Register must present the caller's credential: without the right one it is refused
   * with one message, whatever the id, so that it tells nothing about which ids are registered.
   */
  authenticate(workerId: string, presentedCredential: string | undefined): void {
    if (!this.credentials.verify(workerId, presentedCredential)) throw refusals.unauthenticated();
  }

  /** The reply's generation and state tell the worker whether it is still in the run. */
  heartbeat(workerId: string): HeartbeatReply {
    this.registered(workerId);
    this.membership.touch(workerId, this.now());
    // While the run re-forms, the reply names the next generation: the worker goes back to the rendezvous.
    const generation = this.rendezvousPoint.generation + (this.lifecycle.status === 'recovering' ? 1 : 0);
    // An interrupted run is not over for its workers: they wait for the coordinator to be back.
    const state = this.stopping ? 'RUN_STATE_STOPPING' : WIRE_STATES[this.lifecycle.status];
    return { generation, state, reason: this.lifecycle.reason ?? '' };
  }

  async rendezvous(workerId: string, lastGeneration: number, backend: string): Promise<RendezvousReply> {
    this.refuseWhileStopping();
    const worker = this.registered(workerId);
    worker.backend = backend;
    const current = this.rendezvousPoint.generation;
    if (refusesGeneration('rendezvous', lastGeneration, current)) throw refusals.generationAhead(workerId, lastGeneration, current);
    const generation = await this.rendezvousPoint.join(worker).catch((error: unknown) => {
      this.refuseWhileStopping();
      throw refusals.rendezvousAborted(error);
    });
    if (generation.number > this.formed) this.generationFormed(generation);
    return rendezvousReply(generation, workerId);
  }

  /** A worker is gone for good (its process exited, its heartbeats stopped): the run re-forms without it. */
  workerLost(workerId: string, how: string, silentMs: number): void {
    const worker = this.membership.get(workerId);
    if (!worker || this.lifecycle.finished) return;
    const wasMember = this.rendezvousPoint.isMember(workerId);
    this.forget(workerId, `worker ${workerId} was lost`);
    const generation = this.rendezvousPoint.generation;
    this.options.events.publish('worker.left', { workerId, address: worker.address, generation, reason: how });
    // A registered worker outside the running generation (one that never reached the rendezvous) breaks nothing.
    if (this.lifecycle.status === 'running' && !wasMember) {
      this.options.logger.warn({ event: 'worker.left', workerId, how }, `worker ${workerId}, registered but not in generation ${generation}, was lost`);
    } else if (this.lifecycle.underWay) {
      const reason = `worker ${workerId} at ${worker.address} was lost (${how})`;
      this.recovery.detected(workerId, how, silentMs, generation, reason);
      this.reform({ kind: 'failure', reason });
    } else if (this.lifecycle.status === 'pending') {
      this.startWait.workerLeft(workerId, how);
      this.options.logger.warn({ event: 'worker.left', workerId, how }, `worker ${workerId} left before the run started`);
    }
  }

  /**
   * A worker registers again under its live id: the old registration goes. One training in the current
   * generation has left it, which breaks the generation as a loss does; one waiting is simply replaced.
   */
  private replaceRegistration(workerId: string): void {
    if (this.lifecycle.underWay && this.rendezvousPoint.isMember(workerId)) this.workerLost(workerId, 'it registered again', 0);
    else this.forget(workerId, `worker ${workerId} registered again`);
  }

  /** Drops a worker's registration: its record, its credential, its place at the rendezvous. */
  private forget(workerId: string, reason: string): void {
    this.membership.remove(workerId);
    this.credentials.revoke(workerId);
    this.rendezvousPoint.leave(workerId, reason);
  }

  // ---- tasks and reports ----

  async nextTask(workerId: string, generation: number, finishedTask: number): Promise<Task> {
    this.refuseWhileStopping();
    this.member(workerId, generation);
    const advanced = this.board.advance(workerId, finishedTask);
    if (!advanced.ok) throw refusals.taskOutOfOrder(workerId, finishedTask, advanced.onTask);
    const task = this.lifecycle.finished ? undefined : this.board.after(finishedTask);
    if (task) {
      this.timeline.start(task.phaseIndex);
      const { id, phaseIndex, fromStep, toStep, resetOptimizers, restoreState, evaluate, uploadState } = task;
      const upload = this.rendezvousPoint.rankOf(workerId) === 0 && (uploadState || this.checkpoints.due);
      if (upload) this.board.askUpload({ phaseIndex, step: toStep });
      return { id, generation, train: { phaseIndex, fromStep, toStep, resetOptimizers, restoreState, evaluate, uploadState: upload } };
    }
    if (!this.lifecycle.finished && this.board.allFinished(this.members().map((m) => m.id))) void this.finalize();
    // A worker done with its tasks waits here for the run's end, unless the run re-forms first.
    const final = await this.board.waitForEnd(this.lifecycle.whenFinished());
    return {
      id: finishedTask + 1,
      generation,
      finish: { state: final === 'completed' ? 'RUN_STATE_COMPLETED' : 'RUN_STATE_FAILED', reason: this.lifecycle.reason ?? '' },
    };
  }

  reportProgress(report: ProgressReport__Output): void {
    this.refuseWhileStopping();
    this.member(report.workerId, report.generation);
    this.recovery.noteReached(report);
    this.badSamples.add(report.skipped);
    this.steps.add(report, this.members().length);
  }

  reportEvaluation(report: EvaluationReport__Output): void {
    this.refuseWhileStopping();
    this.member(report.workerId, report.generation);
    this.badSamples.add(report.skipped);
    this.evaluations.add(report, this.members().length);
  }

  /** A worker cannot go on; before the first generation forms, a registered worker may say so too. */
  reportFailure(workerId: string, generation: number, reason: string, willRejoin: boolean, reached: Position, badInput = false): void {
    const check = failureReportCheck(generation, this.rendezvousPoint.generation, this.lifecycle.status);
    if (check === 'left-behind') return;
    if (check === 'registered') this.registered(workerId);
    else this.member(workerId, generation);
    // The step it was in counts as started: it is redone too.
    this.recovery.noteReached({ phaseIndex: reached.phaseIndex, step: reached.step + 1 });
    // A stopping run ends anyway: the report only says how far its offer may reach.
    if (this.lifecycle.status === 'stopping') return;
    if (willRejoin && this.lifecycle.underWay) this.reform({ kind: 'failure', reason: `worker ${workerId}: ${reason}` });
    else this.fail(`worker ${workerId}: ${reason}`, badInput);
  }

  // ---- state ----

  /** The safetensors snapshot a task with restoreState loads: the state the run goes on from, or a dense phase's `init`. */
  initialState(workerId: string, generation: number, phaseIndex: number): Buffer {
    this.refuseWhileStopping();
    this.member(workerId, generation);
    const state = this.states.startState(phaseIndex);
    if (!state) throw refusals.noStartState(phaseIndex);
    return state;
  }

  /**
   * Whether `workerId` may send the run's state at `position` now, checked before its bytes come: rank 0 at a
   * point a task asked for (a checkpoint), or, while the run re-forms, a member of the generation that broke
   * up to where that generation reached (an offer). Throws the refusal otherwise.
   */
  admitState(workerId: string, generation: number, position: Position): 'checkpoint' | 'offer' {
    this.member(workerId, generation);
    const rank = this.rendezvousPoint.rankOf(workerId);
    const asked = this.board.uploadsAsked;
    const reached = this.recovery.reached;
    const verdict = uploadVerdict(this.lifecycle.status, rank, position, asked, reached);
    switch (verdict) {
      case 'checkpoint':
      case 'offer':
        return verdict;
      case 'not-rank-zero':
        throw refusals.notRankZero(workerId, rank, generation);
      case 'not-asked':
        throw refusals.uploadNotAsked(workerId, position, asked);
      case 'beyond-reached':
        throw refusals.uploadBeyondReached(workerId, position, reached, generation);
      case 'outside-run':
        throw refusals.uploadOutsideRun(this.runId, this.lifecycle.status);
    }
  }

  /** A state sent at `position` (as admitState allows): rank 0's is written as the run's checkpoint, a survivor's offer is kept in memory. */
  async receiveState(workerId: string, generation: number, position: Position, bytes: Buffer): Promise<void> {
    const use = this.admitState(workerId, generation, position);
    let checkpoint: Checkpoint;
    try {
      checkpoint = decodeCheckpointSnapshot(bytes, `state uploaded by worker ${workerId}`);
    } catch (error) {
      throw refusals.unreadableState(error);
    }
    if (!samePosition(checkpoint.position, position)) throw refusals.uploadMismatch(workerId, position, checkpoint.position);
    if (checkpoint.position.configHash !== this.hash) throw refusals.stateOfOtherConfig(workerId);
    // An offered state is kept in memory only, and only if it is further on than what the run holds.
    if (use === 'offer') {
      this.states.offer(checkpoint);
      this.offered.add(workerId);
      return;
    }
    this.board.uploadReceived(position);
    this.states.commit(checkpoint);
    this.writeCheckpoint(checkpoint, generation);
  }

  private writeCheckpoint(checkpoint: Checkpoint, generation: number): void {
    const { seed, batchSize } = this.options.config;
    this.checkpointed = checkpoint.position;
    this.checkpoints.write(checkpoint, { worldSize: this.members().length, generation, seed, batchSize, phases: this.timeline.summaries });
  }

  // ---- the run ----

  /**
   * Told to stop (SIGTERM, SIGINT): a run under way takes no more work, and its workers, told by their
   * heartbeats (RUN_STATE_STOPPING) or by the refusal of their next call, offer the state of their last
   * completed step. Once every member has offered, or `offerWaitMs` has passed, the furthest state is
   * written as the final checkpoint (unless the newest checkpoint already stands there), and the run ends
   * as interrupted. A run not under way ends at once: it has no state to keep.
   */
  async stopGracefully(reason: string, offerWaitMs: number): Promise<void> {
    if (!this.lifecycle.underWay) {
      this.interrupt(reason);
      return;
    }
    this.lifecycle.stop(reason);
    this.options.logger.warn({ event: 'run.stopping', reason, offerWaitMs }, `stopping (${reason}): collecting the workers' state for a final checkpoint`);
    // Workers waiting for the run's end, or at the rendezvous, hear it at once.
    this.board.releaseWaiters(refusals.stopping(reason));
    this.rendezvousPoint.abort(`the coordinator is stopping (${reason})`);
    const deadline = this.now() + offerWaitMs;
    while (!this.everyMemberOffered() && this.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const state = this.states.latest;
    if (state && (!this.checkpointed || isAfter(state.position, this.checkpointed))) this.writeCheckpoint(state, this.rendezvousPoint.generation);
    else this.options.logger.info({ event: 'run.stopping', checkpointed: this.checkpointed }, 'the newest checkpoint is already the furthest state');
    await this.checkpoints.drained();
    this.interrupt(reason);
  }

  /** Whether every member of the current generation that is still registered has offered its state. */
  private everyMemberOffered(): boolean {
    return this.members().every((m) => this.membership.get(m.id) === undefined || this.offered.has(m.id));
  }

  /** Ends the run as interrupted, once. */
  private interrupt(reason: string): void {
    if (!this.lifecycle.interrupt(reason)) return;
    this.options.logger.warn({ event: 'run.interrupted', reason }, `run interrupted: ${reason}`);
    this.options.events.publish('run.failed', { reason: `interrupted: ${reason}` });
    this.stop();
  }

  /** Stopping on a signal, or stopped so (the run ended interrupted): the coordinator will be back. */
  private get stopping(): boolean {
    return this.lifecycle.status === 'stopping' || this.lifecycle.interrupted;
  }

  /** A stopping coordinator takes no work: the caller offers its state and registers again later. */
  private refuseWhileStopping(): void {
    if (this.stopping) throw refusals.stopping(this.lifecycle.state.status === 'stopping' ? this.lifecycle.state.reason : (this.lifecycle.reason ?? 'stopped'));
  }

  /** Fails the run once: the first reason is the cause. */
  fail(reason: string, badInput = false): void {
    if (!this.lifecycle.fail(reason, badInput)) return;
    this.options.logger.error({ event: 'run.failed', reason }, `run failed: ${reason}`);
    this.options.events.publish('run.failed', { reason });
    this.stop();
  }

  /**
   * A member failed, or a worker joins: the run re-forms (or fails, beyond maxRecoveries). Every member
   * leaves its task and comes back to the rendezvous (heartbeat replies now name the next generation), and
   * the run goes on from the newest state held in memory once the live workers have gathered.
   */
  private reform(disruption: Disruption): void {
    this.recovery.disrupt(disruption, this.membership.size);
    if (this.lifecycle.status !== 'recovering') return;
    this.board.releaseWaiters(refusals.reforming(this.rendezvousPoint.generation));
    this.rendezvousPoint.check();
  }

  private generationFormed(generation: Generation): void {
    this.formed = generation.number;
    this.offered.clear();
    this.runDirectory.recordGeneration(generation.number).catch((error: Error) => this.fail(`cannot record generation ${generation.number}: ${error.message}`));
    if (this.lifecycle.status === 'pending') {
      this.begin(generation);
      return;
    }
    // A new generation after a failure (or a join): it restarts from the newest state held in memory.
    const restart = this.states.restartPoint;
    this.board.replan(planTasks(this.options.config, restart));
    this.states.startFrom(this.board.first?.phaseIndex);
    this.steps.clear();
    this.evaluations.clear();
    this.recovery.complete(generation, restart ?? { phaseIndex: 0, step: 0 });
  }

  private begin(generation: Generation): void {
    const { config, logger, events, resumeFrom } = this.options;
    this.lifecycle.start();
    logger.info({ event: 'run.started', runId: this.runId, generation: generation.number, workers: generation.members.map((m) => m.id) }, 'run started');
    const resumed = resumeFrom?.checkpoint.position;
    events.publish('run.started', {
      configHash: this.hash,
      model: config.model.name,
      dataset: config.data.dataset,
      workers: generation.members.length,
      ...(resumed ? { resumedFrom: { phaseIndex: resumed.phaseIndex, step: resumed.step } } : {}),
    });
  }

  /** Every rank has finished every task: the results are written from the newest state, and the run completes. */
  private async finalize(): Promise<void> {
    if (this.finalizing) return;
    this.finalizing = true;
    try {
      await this.checkpoints.drained();
      if (this.lifecycle.finished) return;
      const state = this.states.latest;
      if (!state) throw new Error('no state was uploaded at the end of the last phase');
      const { config, events, logger } = this.options;
      const backend = [...new Set(this.members().map((m) => m.backend ?? 'unknown'))].join(',');
      const seconds = () => (this.now() - this.startedAt) / 1000;
      const phases = this.timeline.summaries;
      const data = config.data.dataset === 'imagenet' ? this.badSamples.report : undefined;
      this.report = await writeFinalResults({ config, runDirectory: this.runDirectory, events, logger, state, backend, phases, seconds, data });
      this.lifecycle.complete();
      this.stop();
    } catch (error) {
      this.fail(`writing the results failed: ${(error as Error).message}`);
    }
  }

  // ---- checks ----

  private registered(workerId: string): WorkerRecord {
    const worker = this.membership.get(workerId);
    if (!worker) throw refusals.unknownWorker(workerId, this.runId);
    return worker;
  }

  /** The caller must be a member of the current generation: anything older is fenced out. */
  private member(workerId: string, generation: number): WorkerRecord {
    const worker = this.registered(workerId);
    const current = this.rendezvousPoint.generation;
    if (refusesGeneration('member', generation, current)) throw refusals.staleGeneration(generation, current);
    if (!this.rendezvousPoint.isMember(workerId)) throw refusals.notAMember(workerId, current);
    return worker;
  }

  /** The current generation's members, in rank order. */
  private members(): readonly WorkerRecord[] {
    return this.rendezvousPoint.current?.members ?? [];
  }
}
