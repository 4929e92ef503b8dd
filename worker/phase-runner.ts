import type { PhaseConfig, RunConfig } from '../shared/config.js';
import type { ImageDataset } from './data/dataset.js';
import { countNetwork } from './engine/counters.js';
import type { GateMode } from './engine/layers.js';
import { createOptimizer, type Optimizer, type OptimizerSpec } from './engine/optimizers.js';
import { deriveSeed, seededUniform } from './engine/random.js';
import { EpochSampler, range, splitTrainingSet, type TrainingSplit } from './engine/sampling.js';
import { learningRateAt } from './engine/schedules.js';
import { AutoPruneTrainer, disposeBatch, disposeGradients, makeBatch, type StepGradients, type WeightDecay } from './engine/trainer.js';

/**
 * Runs one phase of a run (dense, prune or finetune) step by step: draws batches from the right half of
 * the training data, computes gradients, and applies the updates. The step loop of a distributed worker
 * is the same loop with gradients all-reduced in between.
 */

export interface TrainingData {
  readonly train: ImageDataset;
  readonly test: ImageDataset;
  /** Per-batch image augmentation (CIFAR crops and flips), deterministic in `uniform`. */
  readonly augment?: (images: Float32Array, count: number, uniform: () => number) => Float32Array;
}

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
}

export interface PhaseResult {
  readonly name: string;
  readonly steps: number;
  readonly seconds: number;
  readonly testAccuracy: number;
  readonly epoch: number;
}

export interface PhaseHooks {
  onProgress?(progress: StepProgress): void;
  onEvaluation?(evaluation: { phase: string; step: number; testAccuracy: number }): void;
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

export interface PhaseOptimizers {
  readonly weights: Optimizer;
  /** M's optimizer, in the prune phase only. */
  readonly aux: Optimizer | undefined;
}

export class PhaseRunner {
  readonly split: TrainingSplit;
  private readonly all: Uint32Array;

  constructor(
    private readonly trainer: AutoPruneTrainer,
    private readonly config: RunConfig,
    private readonly data: TrainingData,
  ) {
    this.split = splitTrainingSet(config.seed, data.train.count);
    this.all = range(data.train.count);
  }

  /** Runs `phase` with the given optimizers (left to the caller, who checkpoints and disposes them). */
  async run(phase: PhaseConfig, phaseIndex: number, optimizers: PhaseOptimizers, hooks: PhaseHooks = {}): Promise<PhaseResult> {
    const { config, trainer } = this;
    const decay: WeightDecay = { l1: phase.l1 ?? config.regularization.l1, l2: phase.l2 ?? config.regularization.l2 };
    const pruning = phase.phase === 'prune';
    const weightStream = new EpochSampler(config.seed, `${phaseIndex}:${pruning ? 'weight' : 'all'}`, pruning ? this.split.weight : this.all);
    const auxStream = pruning ? new EpochSampler(config.seed, `${phaseIndex}:aux`, this.split.aux) : undefined;
    const gates = weightGates(phase.phase);
    const started = performance.now();
    let windowStart = started;
    let windowImages = 0;

    for (let step = 0; step < phase.steps; step++) {
      const seedOf = (stream: string) => deriveSeed(config.seed, phaseIndex, step, stream);
      const weightStep = (): StepGradients => {
        const batch = this.batch(weightStream, seedOf('weight'));
        const result = trainer.weightGradients(batch, gates, decay, seedOf('weight'));
        disposeBatch(batch);
        trainer.applyWeightUpdate(optimizers.weights, result.gradients, learningRateAt(phase.weights.lr, step, phase.steps), gates);
        disposeGradients(result.gradients);
        return result;
      };
      const auxStep = (): StepGradients | undefined => {
        if (!auxStream || !optimizers.aux || phase.phase !== 'prune') return undefined;
        const batch = this.batch(auxStream, seedOf('aux'));
        const result = trainer.auxGradients(batch, seedOf('aux'));
        disposeBatch(batch);
        trainer.applyAuxUpdate(optimizers.aux, result.gradients, learningRateAt(phase.aux.lr, step, phase.steps));
        disposeGradients(result.gradients);
        return result;
      };
      let weightResult: StepGradients;
      let auxResult: StepGradients | undefined;
      if (config.prune.order === 'aux-first') {
        auxResult = auxStep();
        weightResult = weightStep();
      } else {
        weightResult = weightStep();
        auxResult = auxStep();
      }
      windowImages += config.batchSize * (auxResult ? 2 : 1);

      const done = step + 1;
      if (hooks.onProgress && (done % config.logging.every === 0 || done === phase.steps)) {
        const now = performance.now();
        hooks.onProgress({
          phase: phase.phase,
          phaseIndex,
          step: done,
          steps: phase.steps,
          loss: weightResult.loss,
          accuracy: weightResult.correct / config.batchSize,
          auxLoss: auxResult?.loss,
          remaining: this.remainingFraction(gates),
          imagesPerSecond: (windowImages * 1000) / Math.max(1, now - windowStart),
        });
        windowStart = now;
        windowImages = 0;
        // Let log and progress output flush between synchronous training steps.
        await new Promise((resolve) => setImmediate(resolve));
      }
      const evaluateNow = config.evaluation.every > 0 && done % config.evaluation.every === 0 && done < phase.steps;
      if (evaluateNow) hooks.onEvaluation?.({ phase: phase.phase, step: done, testAccuracy: this.evaluate(gates) });
    }
    const testAccuracy = this.evaluate(gates);
    hooks.onEvaluation?.({ phase: phase.phase, step: phase.steps, testAccuracy });
    return { name: phase.phase, steps: phase.steps, seconds: (performance.now() - started) / 1000, testAccuracy, epoch: weightStream.cursor.epoch };
  }

  /** Fresh optimizers per phase, as in the first author's code: each phase is its own optimisation problem. */
  static createOptimizers(phase: PhaseConfig): PhaseOptimizers {
    return {
      weights: createOptimizer(optimizerSpec(phase.weights)),
      aux: phase.phase === 'prune' ? createOptimizer(optimizerSpec(phase.aux)) : undefined,
    };
  }

  evaluate(gates: GateMode): number {
    return this.trainer.evaluate(this.data.test, gates, this.config.evaluation.batchSize);
  }

  private batch(stream: EpochSampler, seed: number) {
    const indices = stream.next(this.config.batchSize);
    const augment = this.data.augment;
    return makeBatch(this.data.train, indices, augment && ((images, count) => augment(images, count, seededUniform(seed, 'augment'))));
  }

  private remainingFraction(gates: GateMode): number {
    const { totals } = countNetwork(this.trainer.network, gates !== 'off');
    return totals.remaining / totals.params;
  }

}
