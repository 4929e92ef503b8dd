import * as tf from '@tensorflow/tfjs';
import type { PhaseConfig, RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { keptPerLayer } from './counters.js';
import type { TrainingData } from './data/source.js';
import type { WeightDecay } from './fused-optimizer-step.js';
import type { GateMode } from './layers.js';
import { createOptimizer, type Optimizer, type OptimizerSpec } from './optimizers.js';
import { ReadAhead } from './read-ahead.js';
import { range, type SamplerCursor, splitTrainingSet, type TrainingSplit } from './sampling.js';
import { learningRateAt } from './schedules.js';
import { cursorAfter, evaluationShare } from './sharding.js';
import { batchTensors, evaluationReads, type PlannedBatch, plannedReads, type SegmentPlan, stepSeed, type UpdateKind } from './step-batches.js';
import { type AutoPruneTrainer, disposeBatch, disposeGradients, makeBatch } from './trainer.js';

/**
 * Runs the steps of a phase (dense, prune or finetune): draws batches from the right half of the training
 * data, computes this replica's gradients, combines them through the injected exchange (the identity for
 * a worker alone in its run, the ring all-reduce otherwise), and applies the updates.
 */

/** Batches read ahead of the step that trains on them, unless `data.prefetchBatches` says otherwise. */
export const DEFAULT_PREFETCH_BATCHES = 2;

export interface StepProgress {
  readonly phase: string;
  readonly phaseIndex: number;
  readonly step: number;
  readonly steps: number;
  readonly loss: number;
  /** Training accuracy of the step's weight batch. */
  readonly accuracy: number;
  /** M's objective on the step's auxiliary batch (prune phase). */
  readonly auxLoss: number | undefined;
  /** Fraction of prunable weights still kept. */
  readonly remaining: number;
  readonly imagesPerSecond: number;
  /** Seconds the steps since the last report waited for their batches to be read and decoded. */
  readonly inputWaitSeconds: number;
  /** Seconds the steps since the last report spent combining gradients across replicas (the all-reduce). */
  readonly exchangeSeconds: number;
}

export interface PhaseHooks {
  onProgress?(progress: StepProgress): void | Promise<void>;
  /** A step is complete: both updates are applied (`step` counts the steps done in the phase). */
  onStepDone?(done: { readonly phaseIndex: number; readonly step: number }): void;
  /** The samples this replica takes for a step's W (`weight`) or M (`aux`) batch, for a sample audit. */
  onBatch?(batch: { readonly phaseIndex: number; readonly step: number; readonly kind: 'weight' | 'aux'; readonly samples: Uint32Array }): void;
}

/** Gates as each phase uses them: W steps see constant masks; only M steps differentiate through h. */
export function weightGates(phase: PhaseConfig['phase']): GateMode {
  return phase === 'dense' ? 'off' : 'frozen';
}

export function optimizerSpec(config: PhaseConfig['weights']): OptimizerSpec {
  return config.type === 'adam'
    ? { type: 'adam', beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon }
    : { type: 'sgd', momentum: config.momentum, nesterov: config.nesterov };
}

/** A W or M update's figures, left on the device until a report reads them (readReport). */
interface StepOutcome {
  readonly loss: tf.Scalar;
  /** W steps only. */
  readonly correct: tf.Scalar | undefined;
  /** Samples this replica used. */
  readonly size: number;
}

export interface PhaseOptimizers {
  readonly weights: Optimizer;
  /** M's optimizer, in the prune phase only. */
  readonly aux: Optimizer | undefined;
}

/**
 * Combines the replicas' gradients into the global batch's: identity in one process, the ring all-reduce
 * in a distributed run. `share` is this replica's fraction of the global batch; the exchange consumes
 * `tensors` and returns the combined ones (Σ share_r · tensor_r over replicas).
 */
export interface GradientExchange {
  reduce(tensors: Map<string, tf.Tensor>, share: number, tag: { readonly step: number; readonly kind: 'weight' | 'aux' }): Promise<Map<string, tf.Tensor>>;
}

/** One process holds the whole global batch: there is nothing to combine. */
export const singleProcess: GradientExchange = { reduce: async (tensors) => tensors };

/** This process's place among the replicas. */
export interface Replica {
  readonly world: number;
  readonly rank: number;
  readonly exchange: GradientExchange;
}

/** Steps [from, to) of a phase; cursors say where the sample streams stand at `from`. */
export interface PhaseSegment {
  readonly from: number;
  readonly to: number;
  readonly weightCursor: SamplerCursor;
  readonly auxCursor: SamplerCursor;
}

export class PhaseRunner {
  readonly split: TrainingSplit;
  private readonly all: Uint32Array;

  constructor(
    private readonly trainer: AutoPruneTrainer,
    private readonly config: RunConfig,
    private readonly data: TrainingData,
    private readonly replica: Replica = { world: 1, rank: 0, exchange: singleProcess },
  ) {
    this.split = splitTrainingSet(config.seed, data.train.count);
    this.all = range(data.train.count);
    checkBatchSize(config, data.train.count, this.split);
  }

  /** The segment [from, to) of `phase`, with stream cursors where a run from step 0 leaves them. */
  segment(phase: PhaseConfig, from: number, to: number): PhaseSegment {
    const { batchSize } = this.config;
    return {
      from,
      to,
      weightCursor: cursorAfter(from, batchSize, this.weightMembers(phase).length),
      auxCursor: cursorAfter(from, batchSize, this.split.aux.length),
    };
  }

  /**
   * Runs steps [from, to) of a phase: each step a W update on a batch of the weight half (all samples
   * outside the prune phase) and, when pruning, an M update on a batch of the auxiliary half. This replica
   * computes gradients on its share of each global batch; the exchange combines them before the update.
   * The batches of the coming steps are read ahead (`data.prefetchBatches`) while a step trains.
   */
  async runSteps(phase: PhaseConfig, phaseIndex: number, optimizers: PhaseOptimizers, segment: PhaseSegment, hooks: PhaseHooks = {}): Promise<void> {
    const { config, trainer, replica } = this;
    const decay: WeightDecay = { l1: phase.l1 ?? config.regularization.l1, l2: phase.l2 ?? config.regularization.l2 };
    const kinds = stepKinds(phase, optimizers, config.prune.order);
    const gates = weightGates(phase.phase);
    const ahead = new ReadAhead(plannedReads(this.segmentPlan(phase, phaseIndex, segment, kinds), this.data.train), this.prefetchDepth());
    let windowStart = performance.now();
    let windowImages = 0;
    let windowWaitMs = 0;
    let windowExchangeMs = 0;
    const exchange = async (tensors: Map<string, tf.Tensor>, share: number, tag: { step: number; kind: 'weight' | 'aux' }) => {
      const started = performance.now();
      const combined = await replica.exchange.reduce(tensors, share, tag);
      windowExchangeMs += performance.now() - started;
      return combined;
    };

    const weightStep = async (planned: PlannedBatch, seed: number): Promise<StepOutcome> => {
      const { batch, share } = batchTensors(planned, this.data.train);
      const result = trainer.weightGradients(batch, gates, seed);
      disposeBatch(batch);
      const combined = await exchange(new Map([...result.gradients, ...result.statistics]), share, { step: planned.step, kind: 'weight' });
      const statistics = new Map([...combined].filter(([name]) => result.statistics.has(name)));
      for (const name of statistics.keys()) combined.delete(name);
      trainer.applyBatchStatistics(statistics);
      trainer.applyWeightUpdate(optimizers.weights, combined, learningRateAt(phase.weights.lr, planned.step, phase.steps), gates, decay);
      disposeGradients(combined);
      return { loss: result.loss, correct: result.correct, size: planned.read.indices.length };
    };
    const auxStep = async (
      planned: PlannedBatch,
      seed: number,
      aux: NonNullable<PhaseOptimizers['aux']>,
      lr: PhaseConfig['weights']['lr'],
      reported: boolean,
    ): Promise<StepOutcome> => {
      const { batch, share } = batchTensors(planned, this.data.train);
      const result = trainer.auxGradients(batch, seed, { measurePenalty: reported });
      disposeBatch(batch);
      const combined = await exchange(result.gradients, share, { step: planned.step, kind: 'aux' });
      trainer.applyAuxUpdate(aux, combined, learningRateAt(lr, planned.step, phase.steps));
      disposeGradients(combined);
      return { loss: result.loss, correct: result.correct, size: planned.read.indices.length };
    };

    // Only a reported step's losses are read (readReport); the others skip what only the report needs.
    const reports = (done: number) => hooks.onProgress !== undefined && (done % config.logging.every === 0 || done === segment.to);
    for (let step = segment.from; step < segment.to; step++) {
      let weightResult: StepOutcome | undefined;
      let auxResult: StepOutcome | undefined;
      for (const kind of kinds) {
        const next = await ahead.next();
        if (!next) throw new Error(`no batch was planned for the ${kind} update of step ${step}`);
        windowWaitMs += next.waitedMs;
        const planned = next.value;
        hooks.onBatch?.({ phaseIndex, step, kind, samples: planned.samples });
        const seed = stepSeed(config.seed, phaseIndex, step, kind, replica.rank);
        if (kind === 'weight') weightResult = await weightStep(planned, seed);
        else if (optimizers.aux && phase.phase === 'prune') auxResult = await auxStep(planned, seed, optimizers.aux, phase.aux.lr, reports(step + 1));
      }
      if (!weightResult) throw new Error(`step ${step} of phase ${phaseIndex} made no W update`);
      windowImages += weightResult.size + (auxResult?.size ?? 0);
      hooks.onStepDone?.({ phaseIndex, step: step + 1 });
      // Training ops run synchronously on the CPU backends: let timers (heartbeats) and I/O in between steps.
      await new Promise((resolve) => setImmediate(resolve));

      const done = step + 1;
      try {
        if (hooks.onProgress && reports(done)) {
          const figures = await this.readReport(weightResult, auxResult, gates);
          const now = performance.now();
          await hooks.onProgress({
            phase: phase.phase,
            phaseIndex,
            step: done,
            steps: phase.steps,
            ...figures,
            imagesPerSecond: (windowImages * 1000) / Math.max(1, now - windowStart),
            inputWaitSeconds: windowWaitMs / 1000,
            exchangeSeconds: windowExchangeMs / 1000,
          });
          windowStart = now;
          windowImages = 0;
          windowWaitMs = 0;
          windowExchangeMs = 0;
        }
      } finally {
        for (const outcome of [weightResult, auxResult]) tf.dispose([outcome?.loss, outcome?.correct].filter((t) => t !== undefined));
      }
    }
  }

  /**
   * A report's figures from the step's device tensors and the gates, in one await: the only point
   * where the step loop waits for the device (every `logging.every` steps).
   */
  private async readReport(
    weight: StepOutcome,
    aux: StepOutcome | undefined,
    gates: GateMode,
  ): Promise<Pick<StepProgress, 'loss' | 'accuracy' | 'auxLoss' | 'remaining'>> {
    const network = this.trainer.network;
    const kept = gates === 'off' ? undefined : keptPerLayer(network);
    try {
      const [loss, correct, auxLoss, keptValues] = await Promise.all([weight.loss.data(), weight.correct!.data(), aux?.loss.data(), kept?.data()]);
      const params = network.maskedLayers.reduce((sum, layer) => sum + layer.kernel.variable.size, 0);
      const remaining = keptValues ? Array.from(keptValues as Int32Array).reduce((sum, n) => sum + n, 0) : params;
      return {
        loss: loss[0]!,
        accuracy: weight.size === 0 ? 0 : correct[0]! / weight.size,
        auxLoss: auxLoss?.[0],
        remaining: remaining / params,
      };
    } finally {
      kept?.dispose();
    }
  }

  /** Fresh optimizers per phase, as in the first author's code: each phase is its own optimisation problem. */
  static createOptimizers(phase: PhaseConfig): PhaseOptimizers {
    return {
      weights: createOptimizer(optimizerSpec(phase.weights)),
      aux: phase.phase === 'prune' ? createOptimizer(optimizerSpec(phase.aux)) : undefined,
    };
  }

  /** This replica's share of a test-set evaluation (sharding.ts, evaluationShare), read ahead batch by batch. */
  async evaluateShare(gates: GateMode): Promise<{ correct: number; count: number }> {
    const { test } = this.data;
    const { world, rank } = this.replica;
    const indices = evaluationShare(test.count, world, rank, test.shards);
    const ahead = new ReadAhead(evaluationReads(test, indices, this.config.evaluation.batchSize), this.prefetchDepth());
    // Counted on the device and read once at the end.
    let correct: tf.Scalar = tf.scalar(0, 'int32');
    let count = 0;
    try {
      for (let next = await ahead.next(); next; next = await ahead.next()) {
        if (next.value.indices.length === 0) continue;
        const batch = makeBatch(next.value, test);
        const inBatch = this.trainer.countCorrect(batch, gates);
        const sum = tf.add(correct, inBatch) as tf.Scalar;
        tf.dispose([correct, inBatch]);
        correct = sum;
        count += batch.size;
        disposeBatch(batch);
      }
      return { correct: (await correct.data())[0]!, count };
    } finally {
      correct.dispose();
    }
  }

  private weightMembers(phase: PhaseConfig): Uint32Array {
    return phase.phase === 'prune' ? this.split.weight : this.all;
  }

  private prefetchDepth(): number {
    return this.config.data.prefetchBatches ?? DEFAULT_PREFETCH_BATCHES;
  }

  /** Where the segment's sample streams start: W's (all samples outside the prune phase) and, pruning, M's. */
  private segmentPlan(phase: PhaseConfig, phaseIndex: number, segment: PhaseSegment, kinds: readonly UpdateKind[]): SegmentPlan {
    const { config, replica } = this;
    const pruning = phase.phase === 'prune';
    return {
      seed: config.seed,
      batchSize: config.batchSize,
      world: replica.world,
      rank: replica.rank,
      phaseIndex,
      from: segment.from,
      to: segment.to,
      kinds,
      streams: {
        weight: { name: `${phaseIndex}:${pruning ? 'weight' : 'all'}`, members: this.weightMembers(phase), cursor: segment.weightCursor },
        aux: pruning ? { name: `${phaseIndex}:aux`, members: this.split.aux, cursor: segment.auxCursor } : undefined,
      },
    };
  }
}

/** The updates of a step in their order: W alone, or W and M in the order `prune.order` names. */
function stepKinds(phase: PhaseConfig, optimizers: PhaseOptimizers, order: RunConfig['prune']['order']): UpdateKind[] {
  if (phase.phase !== 'prune' || !optimizers.aux) return ['weight'];
  return order === 'aux-first' ? ['aux', 'weight'] : ['weight', 'aux'];
}

/**
 * Refuses a batch larger than the samples a phase of steps draws it from (the training set; a prune
 * phase's W and M batches come from its two halves): the batch would repeat samples.
 */
function checkBatchSize(config: RunConfig, count: number, split: TrainingSplit): void {
  const { batchSize } = config;
  for (const [index, phase] of config.phases.entries()) {
    if (phase.steps === 0) continue;
    if (batchSize > count)
      throw new InputError('batchSize', `${batchSize} is larger than the training set (${count} samples): a batch would repeat samples`, {
        expected: `at most ${count}`,
      });
    const smallerHalf = Math.min(split.weight.length, split.aux.length);
    if (phase.phase === 'prune' && batchSize > smallerHalf)
      throw new InputError(
        'batchSize',
        `${batchSize} is larger than the halves of the training set (${count} samples) that phases.${index} (prune) draws from ` +
          `(${split.weight.length} and ${split.aux.length} samples): a batch would repeat samples`,
        { expected: `at most ${smallerHalf}` },
      );
  }
}
