import { status } from '@grpc/grpc-js';
import { decodeCheckpointSnapshot, encodeCheckpointSnapshot, type Checkpoint } from '../shared/checkpoint.js';
import type { StoredCheckpoint } from '../shared/checkpoint-store.js';
import { configHash, configToYaml, type RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { Logger } from '../shared/logging.js';
import { PROTOCOL_VERSION } from '../shared/proto/load.js';
import type { EvaluationReport__Output } from '../shared/proto/generated/autoprune/v1/EvaluationReport.js';
import type { HeartbeatReply } from '../shared/proto/generated/autoprune/v1/HeartbeatReply.js';
import type { ProgressReport__Output } from '../shared/proto/generated/autoprune/v1/ProgressReport.js';
import type { RegisterReply } from '../shared/proto/generated/autoprune/v1/RegisterReply.js';
import type { RegisterRequest__Output } from '../shared/proto/generated/autoprune/v1/RegisterRequest.js';
import type { RendezvousReply } from '../shared/proto/generated/autoprune/v1/RendezvousReply.js';
import type { RunState } from '../shared/proto/generated/autoprune/v1/RunState.js';
import type { Task } from '../shared/proto/generated/autoprune/v1/Task.js';
import { RpcFailure } from '../shared/rpc/failure.js';
import { secretsEqual } from '../shared/rpc/security.js';
import { parseHostPort } from '../shared/rpc/server.js';
import { datasetShape } from '../worker/data/sources.js';
import { initBackend } from '../worker/engine/backend.js';
import { disposeNetwork } from '../worker/engine/network.js';
import { assignParameters } from '../worker/engine/state.js';
import { createNetwork } from '../worker/setup.js';
import { Membership, type WorkerRecord } from './membership.js';
import { Rendezvous, type Generation } from './rendezvous.js';
import type { PhaseSummary, RunReport } from './report.js';
import { readInitCheckpoint, type RunDirectory } from './run-directory.js';
import { RunLifecycle } from './run-lifecycle.js';
import { planTasks, type PlannedTask } from './task-plan.js';

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
}

export interface RunOutcome {
  readonly status: 'completed' | 'failed';
  readonly reason: string | undefined;
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
  private readonly tasks: PlannedTask[];
  private readonly finishedTasks = new Map<string, number>();
  private readonly progress = new Map<string, RankReports<ProgressReport__Output>>();
  private readonly evaluations = new Map<string, RankReports<EvaluationReport__Output>>();
  private readonly phaseStarted = new Map<number, number>();
  private readonly phases: PhaseSummary[] = [];
  /** Snapshots that tasks with restoreState load, by phase: a dense phase's `init`, or the resumed checkpoint. */
  private readonly startStates = new Map<number, Buffer>();
  private latestState: Checkpoint | undefined;
  /** Checkpoint writes, one after another, while training goes on. */
  private writes: Promise<void> = Promise.resolve();
  private report: RunReport | undefined;
  private finalizing = false;
  private monitor: NodeJS.Timeout | undefined;
  private readonly startedAt: number;
  private readonly now: () => number;

  private readonly runDirectory: RunDirectory;

  private constructor(private readonly options: CoordinatorOptions) {
    this.now = options.now ?? (() => performance.now());
    this.startedAt = this.now();
    this.hash = configHash(options.config);
    this.runDirectory = options.runDirectory;
    this.rendezvousPoint = new Rendezvous(options.workers);
    const resumed = options.resumeFrom?.checkpoint.position;
    this.tasks = planTasks(options.config, resumed && { phaseIndex: resumed.phaseIndex, step: resumed.step });
  }

  /** Checks the config against the world size and reads the states that tasks start from. */
  static async create(options: CoordinatorOptions): Promise<Coordinator> {
    const { config, workers } = options;
    if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`a run needs at least one worker, not ${workers}`);
    if (config.batchSize < workers) {
      throw new InputError('batchSize', `${config.batchSize} is smaller than the ${workers} workers: every worker needs a share of each batch`, { expected: `at least ${workers}` });
    }
    // The coordinator only assembles and counts networks: the plain JavaScript backend is enough.
    await initBackend('cpu', (message) => options.logger.info({ event: 'backend.notice' }, message));
    const coordinator = new Coordinator(options);
    for (const [index, phase] of config.phases.entries()) {
      if (phase.phase !== 'dense' || phase.init === undefined) continue;
      coordinator.startStates.set(index, encodeCheckpointSnapshot(await readInitCheckpoint(config, index, phase.init, options.logger)));
    }
    const resume = options.resumeFrom;
    if (resume) {
      const { position } = resume.checkpoint;
      if (position.configHash !== coordinator.hash) throw new InputError(resume.path, 'belongs to another config than the run directory holds');
      const first = coordinator.tasks[0];
      if (first) coordinator.startStates.set(first.phaseIndex, encodeCheckpointSnapshot(resume.checkpoint));
      const phases = resume.manifest.run['phases'];
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
    const { heartbeat } = this.options.config.distributed;
    this.monitor = setInterval(() => this.checkHeartbeats(), heartbeat.intervalSeconds * 1000);
    this.monitor.unref();
  }

  async outcome(): Promise<RunOutcome> {
    const final = await this.lifecycle.whenFinished();
    await this.options.events.flush();
    return { status: final === 'completed' ? 'completed' : 'failed', reason: this.lifecycle.reason, report: this.report, runDirectory: this.runDirectory.path };
  }

  stop(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.rendezvousPoint.abort('the coordinator is shutting down');
  }

  // ---- membership ----

  register(request: RegisterRequest__Output): RegisterReply {
    if (request.protocolVersion !== PROTOCOL_VERSION) {
      throw new RpcFailure(status.FAILED_PRECONDITION, `protocol version ${request.protocolVersion} is not supported; this coordinator speaks version ${PROTOCOL_VERSION}`);
    }
    if (!secretsEqual(request.joinToken, this.options.joinToken)) throw new RpcFailure(status.UNAUTHENTICATED, 'join token refused');
    if (!request.workerId) throw new RpcFailure(status.INVALID_ARGUMENT, 'worker_id is empty');
    for (const [field, value] of [['address', request.address], ['data_address', request.dataAddress]] as const) {
      try {
        parseHostPort(value, field);
      } catch (error) {
        throw new RpcFailure(status.INVALID_ARGUMENT, (error as Error).message);
      }
    }
    if (request.configHash !== '' && request.configHash !== this.hash) {
      throw new RpcFailure(status.FAILED_PRECONDITION, `config hash ${request.configHash.slice(0, 12)}… differs from the run's ${this.hash.slice(0, 12)}…: the worker was started with another config`);
    }
    const generation = this.rendezvousPoint.generation;
    if (request.generation !== 0 && request.generation !== generation) {
      throw new RpcFailure(status.FAILED_PRECONDITION, `stale generation ${request.generation}: the run is at generation ${generation}; restart the worker to join afresh`);
    }
    if (this.lifecycle.finished) throw new RpcFailure(status.FAILED_PRECONDITION, `run ${this.runId} is ${this.lifecycle.status}`);
    if (this.membership.get(request.workerId)) throw new RpcFailure(status.ALREADY_EXISTS, `worker id ${request.workerId} is already registered`);
    if (this.membership.size >= this.options.workers) throw new RpcFailure(status.RESOURCE_EXHAUSTED, `run ${this.runId} already has its ${this.options.workers} workers`);

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
    this.options.logger.info({ event: 'worker.joined', workerId: worker.id, address: worker.address, hostname: worker.capabilities.hostname }, `worker ${worker.id} registered`);
    this.options.events.publish('worker.joined', { workerId: worker.id, address: worker.address, generation });
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
    const state: RunState = this.lifecycle.status === 'pending' ? 'RUN_STATE_PENDING' : this.lifecycle.status === 'running' ? 'RUN_STATE_RUNNING' : this.lifecycle.status === 'completed' ? 'RUN_STATE_COMPLETED' : 'RUN_STATE_FAILED';
    return { generation: this.rendezvousPoint.generation, state, reason: this.lifecycle.reason ?? '' };
  }

  async rendezvous(workerId: string, lastGeneration: number, backend: string): Promise<RendezvousReply> {
    const worker = this.registered(workerId);
    worker.backend = backend;
    if (lastGeneration !== 0) {
      // A worker that has trained in a generation cannot join another in this version: the run would
      // need to bring it the current state, which the fault-tolerance work adds.
      throw new RpcFailure(status.FAILED_PRECONDITION, `worker ${workerId} left generation ${lastGeneration}; rejoining a running run is not supported`);
    }
    let generation: Generation;
    try {
      generation = await this.rendezvousPoint.join(worker);
    } catch (error) {
      throw new RpcFailure(status.ABORTED, (error as Error).message);
    }
    if (this.lifecycle.status === 'pending') this.begin(generation);
    const rank = generation.members.findIndex((m) => m.id === workerId);
    return {
      generation: generation.number,
      rank,
      worldSize: generation.members.length,
      ring: generation.members.map((m) => ({ workerId: m.id, address: m.address, dataAddress: m.dataAddress })),
      sessionKey: generation.sessionKey,
    };
  }

  private begin(generation: Generation): void {
    const { config } = this.options;
    this.lifecycle.start();
    this.options.logger.info({ event: 'run.started', runId: this.runId, generation: generation.number, workers: generation.members.map((m) => m.id) }, 'run started');
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
      throw new RpcFailure(status.FAILED_PRECONDITION, `worker ${workerId} reports task ${finishedTask} finished, but its last task was ${previous + 1}`);
    }
    this.finishedTasks.set(workerId, finishedTask);
    if (!this.lifecycle.finished && finishedTask < this.tasks.length) {
      const task = this.tasks[finishedTask]!;
      this.markPhaseStart(task);
      const { id, phaseIndex, fromStep, toStep, resetOptimizers, restoreState, evaluate, uploadState } = task;
      return { id, generation, train: { phaseIndex, fromStep, toStep, resetOptimizers, restoreState, evaluate, uploadState: uploadState && this.rendezvousPoint.rankOf(workerId) === 0 } };
    }
    if (!this.lifecycle.finished && this.allRanksFinished()) void this.finalize();
    const final = await this.lifecycle.whenFinished();
    return { id: finishedTask + 1, generation, finish: { state: final === 'completed' ? 'RUN_STATE_COMPLETED' : 'RUN_STATE_FAILED', reason: this.lifecycle.reason ?? '' } };
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
      this.options.events.publish('phase', { phase: phase.phase, phaseIndex: report.phaseIndex, status: 'completed', steps: phase.steps, seconds, testAccuracy });
      this.options.logger.info({ event: 'phase.finished', phase: phase.phase, seconds, testAccuracy }, `phase ${phase.phase} finished`);
    }
  }

  /** A worker cannot go on; before the first generation forms, a registered worker may say so too. */
  reportFailure(workerId: string, generation: number, reason: string): void {
    if (generation === 0 && this.lifecycle.status === 'pending') this.registered(workerId);
    else this.member(workerId, generation);
    this.fail(`worker ${workerId}: ${reason}`);
  }

  // ---- state ----

  /** The safetensors snapshot a task with restoreState loads: the resumed checkpoint, or a dense phase's `init`. */
  initialState(workerId: string, generation: number, phaseIndex: number): Buffer {
    this.member(workerId, generation);
    const state = this.startStates.get(phaseIndex);
    if (!state) throw new RpcFailure(status.NOT_FOUND, `phase ${phaseIndex} does not start from a checkpoint`);
    return state;
  }

  /** Rank 0's state at the end of a phase: checked, then written as the run's checkpoint. */
  async receiveState(workerId: string, generation: number, bytes: Buffer): Promise<void> {
    this.member(workerId, generation);
    if (this.rendezvousPoint.rankOf(workerId) !== 0) throw new RpcFailure(status.PERMISSION_DENIED, `worker ${workerId} is not rank 0`);
    let checkpoint: Checkpoint;
    try {
      checkpoint = decodeCheckpointSnapshot(bytes, `state uploaded by worker ${workerId}`);
    } catch (error) {
      throw new RpcFailure(status.INVALID_ARGUMENT, (error as Error).message);
    }
    if (checkpoint.position.configHash !== this.hash) throw new RpcFailure(status.FAILED_PRECONDITION, `state uploaded by worker ${workerId} belongs to another config`);
    this.latestState = checkpoint;
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

  /** Fails the run once: the first reason is the cause. */
  fail(reason: string): void {
    if (!this.lifecycle.fail(reason)) return;
    this.options.logger.error({ event: 'run.failed', reason }, `run failed: ${reason}`);
    this.options.events.publish('run.failed', { reason });
    this.stop();
  }

  private checkHeartbeats(): void {
    if (this.lifecycle.finished) return;
    const timeoutMs = this.options.config.distributed.heartbeat.timeoutSeconds * 1000;
    for (const { worker, silentMs } of this.membership.silent(this.now(), timeoutMs)) {
      const reason = `no heartbeat for ${(silentMs / 1000).toFixed(1)} s`;
      this.options.events.publish('worker.left', { workerId: worker.id, address: worker.address, generation: this.rendezvousPoint.generation, reason });
      this.options.logger.warn({ event: 'worker.left', workerId: worker.id, address: worker.address, silentMs }, `worker ${worker.id} lost: ${reason}`);
      this.membership.remove(worker.id);
      this.fail(`worker ${worker.id} at ${worker.address} was lost (${reason})`);
    }
  }

  // ---- checks ----

  private registered(workerId: string): WorkerRecord {
    const worker = this.membership.get(workerId);
    if (!worker) throw new RpcFailure(status.NOT_FOUND, `worker ${workerId} is not registered in run ${this.runId}`);
    return worker;
  }

  /** The caller must be a member of the current generation: anything older is fenced out. */
  private member(workerId: string, generation: number): WorkerRecord {
    const worker = this.registered(workerId);
    const current = this.rendezvousPoint.generation;
    if (generation !== current) throw new RpcFailure(status.FAILED_PRECONDITION, `stale generation ${generation}: the run is at generation ${current}`);
    if (!this.rendezvousPoint.isMember(workerId)) throw new RpcFailure(status.FAILED_PRECONDITION, `worker ${workerId} is not in generation ${current}`);
    return worker;
  }

  private world(): number {
    return this.rendezvousPoint.current?.members.length ?? 0;
  }
}
