import * as tf from '@tensorflow/tfjs';
import { type BackendName, initBackend } from '../../engine/backend.js';
import { buildNetwork } from '../../engine/models/index.js';
import { createOptimizer } from '../../engine/optimizers.js';
import { AutoPruneTrainer, disposeGradients, type PruneRules } from '../../engine/trainer.js';

/**
 * `node train-step.js <backend>`: one AutoPrune iteration (a W step, then an M step) of LeNet-5 on a
 * fixed batch, from fixed parameters, on the given backend, in a process of its own. Prints, as JSON on
 * stdout, the backend in use and every parameter before and after, for test/unit/backend.test.ts to
 * compare an accelerated backend with cpu.
 */

export interface TrainStepResult {
  readonly backend: string;
  readonly before: Record<string, number[]>;
  readonly after: Record<string, number[]>;
}

const rules: PruneRules = { surrogate: 'softplus', auxGradient: 'sign', mu: { conv: 0.2, fc: 0.4 }, nRatio: 1e-3, closedWeights: 'frozen' };
const BATCH = 8;

const requested = process.argv[2] as BackendName;
try {
  await initBackend(requested, () => {});
  const network = buildNetwork('lenet5', { seed: 7, granularityOf: () => 'weight', maskInit: { mean: 0.5, std: 0.01 }, dropout: 0 });
  // Values made here, not by the backend's initialisers, so that every backend starts from the same bits;
  // masks of both signs, so that some gates are closed.
  network.parameters.forEach((parameter, k) => {
    const values = Float32Array.from({ length: parameter.variable.size }, (_, i) => Math.sin(i * 0.37 + k) * (parameter.role === 'aux' ? 0.5 : 0.1));
    parameter.variable.assign(tf.tensor(values, parameter.variable.shape));
  });
  const [height, width, channels] = network.inputShape;
  const images = Float32Array.from({ length: BATCH * height * width * channels }, (_, i) => ((i * 37) % 101) / 100);
  const classes = Array.from({ length: BATCH }, (_, i) => i % network.numClasses);
  const batch = {
    images: tf.tensor4d(images, [BATCH, height, width, channels]),
    labels: tf.oneHot(tf.tensor1d(classes, 'int32'), network.numClasses) as tf.Tensor2D,
    size: BATCH,
  };
  const snapshot = () => Object.fromEntries(network.parameters.map((p) => [p.name, Array.from(p.variable.dataSync())]));
  const before = snapshot();
  const trainer = new AutoPruneTrainer(network, rules);
  const sgd = { type: 'sgd', momentum: 0, nesterov: false } as const;
  const weights = trainer.weightGradients(batch, 'train', { l1: 0, l2: 0 }, 0);
  trainer.applyWeightUpdate(createOptimizer(sgd), weights.gradients, 0.1, 'train');
  disposeGradients(weights.gradients);
  const aux = trainer.auxGradients(batch, 1);
  trainer.applyAuxUpdate(createOptimizer(sgd), aux.gradients, 0.1);
  disposeGradients(aux.gradients);
  const result: TrainStepResult = { backend: tf.getBackend(), before, after: snapshot() };
  // A GPU backend's device keeps node running: exit once the output is written (to a pipe, that is later).
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
} catch (error) {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`, () => process.exit(1));
}
