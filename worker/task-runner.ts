import { appendFileSync } from 'node:fs';
import { keptFractionByGroup } from '../engine/counters.js';
import { gateSummary } from '../engine/gate-summary.js';
import type { Network } from '../engine/network.js';
import { type PhaseOptimizers, PhaseRunner, type StepProgress, weightGates } from '../engine/phase-runner.js';
import { assignParameters, captureCheckpoint, optimizerStateFrom, parametersDigest } from '../engine/state.js';
import { decodeCheckpointSnapshot, encodeCheckpointSnapshot } from '../shared/checkpoint.js';
import { configHash, type PhaseConfig, type RunConfig } from '../shared/config.js';
import type { CoordinatorApi, StepPosition } from '../shared/coordinator-api.js';
import type { Logger } from '../shared/logging.js';
import type { TrainTask__Output } from '../shared/proto/generated/autoprune/v1/TrainTask.js';
import type { CommittedState } from './committed-state.js';
import type { WorkerMetrics } from './metrics.js';
import type { SkippedSamples } from './skipped-samples.js';

/** Who runs the tasks: the worker, the generation it is in, and its rank there. */
interface Identity {
  readonly workerId: string;
  readonly generation: number;
  readonly rank: number;
}

/** What a task runner works with beyond the engine and the coordinator: the worker's own state and reporting. */
export interface TaskContext {
  readonly logger: Logger;
  /** A file to append every step's samples to (JSON lines), to audit that none is lost or repeated. */
  readonly sampleLog: string | undefined;
  /** The state after the last completed step, committed after each. */
  readonly committed: CommittedState;
  readonly skipped: SkippedSamples;
  /** Called after each step is committed: throws to stop there (the worker was told to stop). */
  readonly afterStep: () => void;
  readonly metrics: WorkerMetrics | undefined;
}

/** Runs one training task: the steps, the evaluation share, the state upload. Keeps the phase's optimizers between tasks. */
export class TaskRunner {
  private optimizers: PhaseOptimizers | undefined;
  /** The step in progress (phase index, step within the phase). */
  reached: StepPosition = { phaseIndex: 0, step: 0 };
  private readonly hash: string;

  constructor(
    private readonly runner: PhaseRunner,
    private readonly config: RunConfig,
    private readonly network: Network,
    private readonly coordinator: CoordinatorApi,
    private readonly identity: Identity,
    private readonly context: TaskContext,
  ) {
    this.hash = configHash(config);
  }

  private get logger(): Logger {
    return this.context.logger;
  }

  private get skipped(): SkippedSamples {
    return this.context.skipped;
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
    const { committed, metrics, sampleLog } = this.context;
    let stepStarted = performance.now();
    await this.runner.runSteps(phase, task.phaseIndex, optimizers, this.runner.segment(phase, task.fromStep, task.toStep), {
      onStepDone: ({ phaseIndex, step }) => {
        const now = performance.now();
        metrics?.stepDone((now - stepStarted) / 1000);
        stepStarted = now;
        const epoch = this.runner.segment(phase, step, step).weightCursor.epoch;
        committed.commit(this.network.parameters, optimizers, {
          phase: phase.phase,
          phaseIndex,
          step,
          epoch,
          configHash: this.hash,
          model: this.config.model.name,
        });
        this.context.afterStep();
      },
      onBatch: (batch) => {
        this.reached = { phaseIndex: batch.phaseIndex, step: batch.step };
        if (sampleLog !== undefined) this.audit(batch, sampleLog);
      },
      onProgress: async (progress) => {
        const withChecksum = progress.step === task.toStep || (checksumEvery > 0 && progress.step % checksumEvery === 0);
        if (metrics) {
          metrics.progress(progress);
          metrics.keptFractions(await keptFractionByGroup(this.network, phase.phase !== 'dense'));
        }
        await this.coordinator.reportProgress(await this.progressReport(progress, withChecksum));
      },
    });
    if (task.evaluate) {
      const { correct, count } = await this.runner.evaluateShare(weightGates(phase.phase));
      await this.coordinator.reportEvaluation({
        workerId,
        generation,
        rank,
        phaseIndex: task.phaseIndex,
        step: task.toStep,
        correct,
        count,
        skipped: this.skipped.drain(),
        // The replicas agree on the gates, so one rank describes them.
        layers:
          rank === 0
            ? (await gateSummary(this.network, phase.phase !== 'dense')).map((l) => ({
                ...l,
                histogram: { ...l.histogram, bucketLimit: [...l.histogram.bucketLimit], bucket: [...l.histogram.bucket] },
              }))
            : [],
      });
    }
    if (task.uploadState) await this.upload(phase, task);
  }

  /** One JSON line per batch: generation, phase, step, stream, rank and samples. */
  private audit(batch: { phaseIndex: number; step: number; kind: 'weight' | 'aux'; samples: Uint32Array }, sampleLog: string): void {
    const { generation, rank } = this.identity;
    const line = { generation, phaseIndex: batch.phaseIndex, step: batch.step, kind: batch.kind, rank, samples: [...batch.samples] };
    appendFileSync(sampleLog, `${JSON.stringify(line)}\n`);
  }

  private async progressReport(progress: StepProgress, withChecksum: boolean) {
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
      inputWaitSeconds: progress.inputWaitSeconds,
      exchangeSeconds: progress.exchangeSeconds,
      skipped: this.skipped.drain(),
      checksum: withChecksum ? await parametersDigest(this.network.parameters) : '',
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
    const snapshot = encodeCheckpointSnapshot(await captureCheckpoint(this.network.parameters, states, position));
    await this.coordinator.uploadState(workerId, generation, task.phaseIndex, task.toStep, snapshot);
  }

  dispose(): void {
    this.optimizers?.weights.dispose();
    this.optimizers?.aux?.dispose();
    this.optimizers = undefined;
  }
}
