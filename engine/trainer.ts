import * as tf from '@tensorflow/tfjs';
import type { SampleBatch } from './data/source.js';
import type { WeightDecay } from './fused-optimizer-step.js';
import {
  type AuxGradientRule,
  type FrozenGateGradient,
  type GatePenalty,
  type Granularity,
  type Surrogate,
  sparsityGradient,
  sparsityPenalty,
} from './gates.js';
import { type BatchNorm, ForwardContext, type GateMode, type LayerGroup, type Parameter } from './layers.js';
import type { Network } from './network.js';
import type { Optimizer } from './optimizers.js';

/**
 * One process's share of AutoPrune training: gradients of W and of M on a batch, and the updates that
 * apply (already reduced) gradients. Computing and applying are separate so that a distributed worker
 * can all-reduce in between; nothing here knows about transport.
 */

export interface PruneRules {
  readonly surrogate: Surrogate;
  readonly auxGradient: AuxGradientRule;
  /** μ per regulariser group. */
  readonly mu: Readonly<Record<LayerGroup, number>>;
  /** Weight of R⁻ relative to R⁺. */
  readonly nRatio: number;
  /**
   * What W steps do to weights behind closed gates. `frozen`: nothing, they keep their stored values and
   * come back intact if the gate reopens. `decayed`: they still receive the optimizer's update from
   * L1/L2 (their loss gradient is zero), shrinking towards zero, as in the first author's code.
   */
  readonly closedWeights: 'frozen' | 'decayed';
}

export interface Batch {
  readonly images: tf.Tensor4D;
  readonly labels: tf.Tensor2D; // one-hot
  readonly size: number;
}

/**
 * What a step computed, left on the device: reading a value back waits for the device to finish its
 * queue, so the step loop reads these only when it reports (readStepMetrics), all in one await.
 */
export interface StepGradients {
  /**
   * Cross-entropy of the batch, plus the sparsity penalty for an M step that measured it (AuxStepOptions);
   * the caller disposes it.
   */
  readonly loss: tf.Scalar;
  /** Correct predictions in the batch (int32), for W steps (what a report reads); the caller disposes it. */
  readonly correct: tf.Scalar | undefined;
  readonly gradients: Map<string, tf.Tensor>;
  /**
   * Batch-norm statistics of a W step's pass (`<layer>/mean`, `<layer>/variance`), to fold into the moving
   * averages with applyBatchStatistics once replicas have averaged them; empty for M steps.
   */
  readonly statistics: Map<string, tf.Tensor>;
}

export interface AuxStepOptions {
  /**
   * Whether the step's loss includes the value of the sparsity penalty. Its gradient is always applied;
   * its value costs a reduction per layer, so a step whose loss nobody reads leaves it out.
   */
  readonly measurePenalty: boolean;
}

/**
 * The tensors of a batch read from a source: images (uint8 pixels are normalised here, on the device, so
 * that they travel as bytes) and one-hot labels.
 */
export function makeBatch(
  read: SampleBatch,
  shape: { readonly height: number; readonly width: number; readonly channels: number; readonly numClasses: number },
): Batch {
  const size = read.indices.length;
  const dims: [number, number, number, number] = [size, shape.height, shape.width, shape.channels];
  const { pixels } = read;
  return tf.tidy(() => ({
    images:
      pixels.type === 'float32'
        ? tf.tensor4d(pixels.values, dims)
        : (tf.add(
            tf.mul(tf.cast(tf.tensor4d(pixels.values, dims, 'int32'), 'float32'), tf.tensor1d([...pixels.scale])),
            tf.tensor1d([...pixels.offset]),
          ) as tf.Tensor4D),
    labels: tf.oneHot(tf.tensor1d(read.labels, 'int32'), shape.numClasses) as tf.Tensor2D,
    size,
  }));
}

export function disposeBatch(batch: Batch): void {
  batch.images.dispose();
  batch.labels.dispose();
}

interface PenalizedGate {
  readonly layer: string;
  readonly aux: Parameter;
  readonly granularity: Granularity;
  readonly penalty: GatePenalty;
}

/** The gates that carry a sparsity penalty (μ of their group not 0), with its weight μ_g / |group g|. */
function penalizedGates(network: Network, rules: PruneRules): PenalizedGate[] {
  const groupSizes = new Map<LayerGroup, number>();
  for (const { mask, group } of network.maskedLayers) if (mask) groupSizes.set(group, (groupSizes.get(group) ?? 0) + mask.variable.size);
  const gates: PenalizedGate[] = [];
  for (const { name, mask, granularity, group } of network.maskedLayers) {
    if (!mask || granularity === 'none') continue;
    const weight = rules.mu[group] / groupSizes.get(group)!;
    if (weight !== 0) gates.push({ layer: name, aux: mask, granularity, penalty: { weight, nRatio: rules.nRatio } });
  }
  return gates;
}

export class AutoPruneTrainer {
  private readonly weightParams: Parameter[];
  private readonly auxParams: Parameter[];
  /** The gates that carry a sparsity penalty, by layer name. */
  private readonly penalized: ReadonlyMap<string, PenalizedGate>;
  /** Batch-norm layers by name, as met in forward passes. */
  private readonly normalizations = new Map<string, BatchNorm>();

  constructor(
    readonly network: Network,
    readonly rules: PruneRules,
  ) {
    this.weightParams = network.parameters.filter((p) => p.role === 'weight');
    this.auxParams = network.parameters.filter((p) => p.role === 'aux');
    this.penalized = new Map(penalizedGates(network, rules).map((gate) => [gate.layer, gate]));
  }

  private context(
    gates: GateMode,
    seed: number,
    pass: { penaltyOf?: (layer: string) => GatePenalty | undefined; frozenGateGradient?: FrozenGateGradient; training?: boolean } = {},
  ): ForwardContext {
    const { rules } = this;
    return new ForwardContext(pass.training ?? true, gates, rules.surrogate, rules.auxGradient, seed, pass.penaltyOf, pass.frozenGateGradient);
  }

  /** Whether W's updates apply only where the gates are open (applyWeightUpdate with gates in use). */
  private gatesTheUpdate(gates: GateMode): boolean {
    return gates !== 'off' && this.rules.closedWeights === 'frozen';
  }

  /**
   * Gradients of the cross-entropy on a batch of the weight half, for applyWeightUpdate with the same gate
   * mode. W's objective also has λ1‖W‖₁ + λ2‖W‖²/2; its gradient is added by the update, after the replicas'
   * gradients are combined, where a backend can fold it into the optimizer's kernel. Where the update is
   * gated, so is the gradient there, and frozen gates pass theirs through unmasked.
   */
  weightGradients(batch: Batch, gates: GateMode, seed: number): StepGradients {
    const ctx = this.context(gates, seed, { frozenGateGradient: this.gatesTheUpdate(gates) ? 'passed' : 'masked' });
    return this.differentiate(batch, ctx, this.weightParams, true);
  }

  /** Folds a W step's (averaged) batch-norm statistics into the moving averages, and disposes them. */
  applyBatchStatistics(statistics: Map<string, tf.Tensor>): void {
    for (const [name, layer] of this.normalizations) {
      const mean = statistics.get(`${name}/mean`);
      const variance = statistics.get(`${name}/variance`);
      if (mean && variance) layer.updateMovingStatistics(mean as tf.Tensor1D, variance as tf.Tensor1D);
    }
    disposeGradients(statistics);
  }

  /**
   * Gradients of M's objective on a batch of the auxiliary half:
   *   cross-entropy + Σ_g μ_g·R⁺_g + n_ratio·μ_g·R⁻_g
   * R⁺_g is the fraction of open gates in group g (conv or fc) and R⁻_g the fraction of closed ones; both
   * go through the gate's surrogate backward, so R⁺ pushes every gate down and R⁻ lets closed ones reopen.
   */
  auxGradients(batch: Batch, seed: number, options: AuxStepOptions = { measurePenalty: true }): StepGradients {
    const ctx = this.context('train', seed, { penaltyOf: (layer) => this.penalized.get(layer)?.penalty });
    const result = this.differentiate(batch, ctx, this.auxParams, false);
    // M steps do not move batch-norm statistics: only W steps train the network's normalisation.
    disposeGradients(result.statistics);
    // R⁺ and R⁻ are added analytically, as L1/L2 are for W: no tape, no reductions to differentiate. Weight
    // gates added theirs in their own backward pass (ctx.penalizedGates); unit gates get theirs here.
    const { surrogate } = this.rules;
    const penalties: tf.Scalar[] = [];
    for (const { layer, aux, granularity, penalty } of this.penalized.values()) {
      const m = aux.variable;
      if (!ctx.penalizedGates.has(layer)) {
        const g = result.gradients.get(aux.name)!;
        result.gradients.set(
          aux.name,
          tf.tidy(() => tf.add(g, sparsityGradient(m, surrogate, granularity, penalty.weight, penalty.nRatio))),
        );
        g.dispose();
      }
      if (options.measurePenalty) penalties.push(sparsityPenalty(m, penalty.weight, penalty.nRatio));
    }
    if (penalties.length === 0) return result;
    // Summed pairwise, not with addN: tfjs-backend-webgpu 4.22 binds every addN input at once and fails past
    // the device's storage-buffer limit (8 on many adapters) instead of splitting.
    const loss = tf.tidy(() => penalties.reduce<tf.Scalar>((sum, penalty) => tf.add(sum, penalty), result.loss));
    tf.dispose([result.loss, ...penalties]);
    return { ...result, loss };
  }

  private differentiate(batch: Batch, ctx: ForwardContext, params: Parameter[], countsCorrect: boolean): StepGradients {
    let logits: tf.Tensor2D | undefined;
    const byVariable = new Map(params.map((p) => [p.variable.name, p.name]));
    const { value, grads } = tf.variableGrads(
      () => {
        const out = this.network.apply(batch.images, ctx);
        logits = tf.keep(out);
        for (const s of ctx.batchStatistics) {
          tf.keep(s.mean);
          tf.keep(s.variance);
        }
        return tf.losses.softmaxCrossEntropy(batch.labels, out) as tf.Scalar;
      },
      params.map((p) => p.variable),
    );
    const gradients = new Map<string, tf.Tensor>();
    for (const [variableName, g] of Object.entries(grads)) gradients.set(byVariable.get(variableName)!, g);
    const correct = countsCorrect ? countCorrect(logits!, batch.labels) : undefined;
    logits!.dispose();
    const statistics = new Map<string, tf.Tensor>();
    for (const { layer, mean, variance } of ctx.batchStatistics) {
      this.normalizations.set(layer.name, layer);
      statistics.set(`${layer.name}/mean`, mean);
      statistics.set(`${layer.name}/variance`, variance);
    }
    return { loss: value, correct, gradients, statistics };
  }

  /**
   * Applies W's (reduced) gradients with L1/L2 added to the kernels'. With gates in use and closed weights
   * `frozen`, each kernel's gradient and update apply only where its gates are open, so weights behind
   * closed gates keep their stored values and their optimizer state sees no loss gradient.
   */
  applyWeightUpdate(optimizer: Optimizer, gradients: ReadonlyMap<string, tf.Tensor>, learningRate: number, gates: GateMode, decay: WeightDecay): void {
    tf.tidy(() => {
      const gateValues = new Map<string, tf.Tensor>();
      if (this.gatesTheUpdate(gates)) {
        for (const layer of this.network.maskedLayers) {
          const values = layer.gateOverKernel();
          if (values) gateValues.set(layer.kernel.name, values);
        }
      }
      optimizer.apply(this.weightParams, gradients, learningRate, { gates: gateValues, decay });
    });
  }

  applyAuxUpdate(optimizer: Optimizer, gradients: ReadonlyMap<string, tf.Tensor>, learningRate: number): void {
    optimizer.apply(this.auxParams, gradients, learningRate);
  }

  /** Correct predictions on a batch (a part of a rank's share of an evaluation), int32 on the device. */
  countCorrect(batch: Batch, gates: GateMode): tf.Scalar {
    const ctx = this.context(gates === 'train' ? 'frozen' : gates, 0, { training: false });
    const logits = tf.tidy(() => this.network.apply(batch.images, ctx));
    const correct = countCorrect(logits, batch.labels);
    logits.dispose();
    return correct;
  }
}

function countCorrect(logits: tf.Tensor2D, oneHot: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(oneHot, 1)), 'int32')));
}

/** Disposes what a step left on the device: its loss, correct count, gradients and statistics. */
export function disposeStep(step: StepGradients): void {
  step.loss.dispose();
  step.correct?.dispose();
  disposeGradients(step.gradients);
  disposeGradients(step.statistics);
}

export function disposeGradients(gradients: Map<string, tf.Tensor>): void {
  for (const g of gradients.values()) g.dispose();
  gradients.clear();
}
