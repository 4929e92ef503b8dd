import * as tf from '@tensorflow/tfjs';
import { buildNetwork, type ModelName } from '../engine/models/index.js';
import { disposeNetwork, type Network } from '../engine/network.js';
import { createOptimizer, type Optimizer } from '../engine/optimizers.js';
import { AutoPruneTrainer, type Batch, disposeStep } from '../engine/trainer.js';

/**
 * The two workloads the step benchmarks time and count, on a fixed random batch: a dense training step
 * (gradients and a plain SGD update, what the PyTorch anchors time) and an AutoPrune iteration (a W step
 * with frozen gates, L1/L2 and Adam, then an M step through the gates with R⁺/R⁻ and Adam). Neither
 * reads anything back from the device: a caller that times them waits for the device itself (`settle`).
 */

export interface WorkloadSpec {
  readonly model: ModelName;
  readonly batch: number;
  /** [height, width, channels]; the model's default when omitted. */
  readonly inputShape?: readonly [number, number, number];
}

export class StepWorkload {
  readonly network: Network;
  private readonly trainer: AutoPruneTrainer;
  private readonly data: Batch;
  private readonly optimizers: { sgd: Optimizer; adamW: Optimizer; adamM: Optimizer };

  constructor(readonly spec: WorkloadSpec) {
    this.network = buildNetwork(spec.model, {
      seed: 1,
      granularityOf: () => 'weight',
      maskInit: { mean: 0.5, std: 0.01 },
      ...(spec.inputShape ? { inputShape: spec.inputShape } : {}),
    });
    this.trainer = new AutoPruneTrainer(this.network, {
      surrogate: 'softplus',
      auxGradient: 'sign',
      mu: { conv: 0.2, fc: 0.4 },
      nRatio: 1e-3,
      closedWeights: 'frozen',
    });
    const [height, width, channels] = this.network.inputShape;
    const classes = this.network.numClasses;
    this.data = tf.tidy(() => ({
      images: tf.randomNormal([spec.batch, height, width, channels], 0, 1, 'float32', 1) as tf.Tensor4D,
      labels: tf.oneHot(tf.randomUniformInt([spec.batch], 0, classes, 2), classes) as tf.Tensor2D,
      size: spec.batch,
    }));
    const adam = { type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 } as const;
    this.optimizers = {
      sgd: createOptimizer({ type: 'sgd', momentum: 0, nesterov: false }),
      adamW: createOptimizer(adam),
      adamM: createOptimizer(adam),
    };
  }

  /** Elements of the smallest layer output at this batch: the floor of what counts as activation-sized. */
  get smallestActivation(): number {
    return this.spec.batch * Math.min(...this.network.maskedLayers.map((layer) => layer.outputShape.reduce((a, b) => a * b, 1)));
  }

  /** Bytes of every masked layer's output at this batch (float32): one pass writes each once and reads it once. */
  get activationBytes(): number {
    return 4 * this.spec.batch * this.network.maskedLayers.reduce((sum, layer) => sum + layer.outputShape.reduce((a, b) => a * b, 1), 0);
  }

  dense(): void {
    const g = this.trainer.weightGradients(this.data, 'off', 0);
    this.trainer.applyWeightUpdate(this.optimizers.sgd, g.gradients, 0.01, 'off', { l1: 0, l2: 0 });
    this.trainer.applyBatchStatistics(g.statistics);
    disposeStep(g);
  }

  iteration(): void {
    const w = this.trainer.weightGradients(this.data, 'frozen', 0);
    this.trainer.applyWeightUpdate(this.optimizers.adamW, w.gradients, 1e-3, 'frozen', { l1: 1e-5, l2: 5e-5 });
    this.trainer.applyBatchStatistics(w.statistics);
    disposeStep(w);
    // As a training step between reports: the penalty's gradient, not its value (nobody reads this loss).
    const m = this.trainer.auxGradients(this.data, 0, { measurePenalty: false });
    this.trainer.applyAuxUpdate(this.optimizers.adamM, m.gradients, 0.1);
    disposeStep(m);
  }

  /** Waits until the device has finished everything queued so far (reads one parameter back). */
  async settle(): Promise<void> {
    await this.network.parameters[0]!.variable.data();
  }

  dispose(): void {
    for (const o of Object.values(this.optimizers)) o.dispose();
    tf.dispose([this.data.images, this.data.labels]);
    disposeNetwork(this.network);
  }
}
