import * as tf from '@tensorflow/tfjs';
import { type BackendName, backendOptions, initBackend } from '../../engine/backend.js';
import { createOptimizer } from '../../engine/optimizers.js';
import { AutoPruneTrainer, disposeStep, type PruneRules } from '../../engine/trainer.js';
import { STEP_NETS, type StepNet, type TrainStepResult } from './train-steps.js';

/**
 * `node train-step.js <backend> <net>`: one AutoPrune iteration (a W step, then an M step) of a net of
 * STEP_NETS on a fixed batch, from fixed parameters, on the given backend, in a process of its own.
 * Prints, as JSON on stdout, the backend in use and every parameter before and after, for
 * test/helpers/train-steps.ts to compare an accelerated backend with cpu. Reads only with await data(),
 * as the webgpu backend in Node has no synchronous read.
 */

const rules: PruneRules = { surrogate: 'softplus', auxGradient: 'sign', mu: { conv: 0.2, fc: 0.4 }, nRatio: 1e-3, closedWeights: 'frozen' };

const requested = process.argv[2] as BackendName;
const net = STEP_NETS[process.argv[3] as StepNet];
try {
  if (!net) throw new Error(`unknown net '${process.argv[3]}'; one of ${Object.keys(STEP_NETS).join(', ')}`);
  await initBackend(requested, () => {}, backendOptions({ webgpu: { allowSoftwareAdapter: false } }, process.env));
  const network = net.build({ seed: 7, granularityOf: () => 'weight', maskInit: { mean: 0.5, std: 0.01 }, dropout: 0 });
  // Values made here, not by the backend's initialisers, so that every backend starts from the same bits;
  // masks of both signs, so that some gates are closed; batch-norm variances stay positive.
  network.parameters.forEach((parameter, k) => {
    const positive = parameter.name.endsWith('moving_variance') || parameter.name.endsWith('gamma');
    const values = Float32Array.from({ length: parameter.variable.size }, (_, i) => {
      const wave = Math.sin(i * 0.37 + k);
      return positive ? 1 + 0.1 * wave : wave * (parameter.role === 'aux' ? 0.5 : net.weightScale);
    });
    parameter.variable.assign(tf.tensor(values, parameter.variable.shape));
  });
  const [height, width, channels] = network.inputShape;
  const images = Float32Array.from({ length: net.batch * height * width * channels }, (_, i) => ((i * 37) % 101) / 100);
  const classes = Array.from({ length: net.batch }, (_, i) => i % network.numClasses);
  const batch = {
    images: tf.tensor4d(images, [net.batch, height, width, channels]),
    labels: tf.oneHot(tf.tensor1d(classes, 'int32'), network.numClasses) as tf.Tensor2D,
    size: net.batch,
  };
  const snapshot = async () => {
    const values = await Promise.all(network.parameters.map((p) => p.variable.data()));
    return Object.fromEntries(network.parameters.map((p, i) => [p.name, Array.from(values[i]!)]));
  };
  const before = await snapshot();
  const trainer = new AutoPruneTrainer(network, rules);
  const sgd = { type: 'sgd', momentum: 0, nesterov: false } as const;
  const weights = trainer.weightGradients(batch, 'train', 0);
  trainer.applyWeightUpdate(createOptimizer(sgd), weights.gradients, 0.1, 'train', { l1: 0, l2: 0 });
  trainer.applyBatchStatistics(weights.statistics);
  const aux = trainer.auxGradients(batch, 1);
  trainer.applyAuxUpdate(createOptimizer(sgd), aux.gradients, 0.1);
  const losses = [(await weights.loss.data())[0]!, (await aux.loss.data())[0]!] as const;
  disposeStep(weights);
  disposeStep(aux);
  const result: TrainStepResult = { backend: tf.getBackend(), losses, before, after: await snapshot() };
  // A GPU backend's device keeps node running: exit once the output is written (to a pipe, that is later).
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
} catch (error) {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`, () => process.exit(1));
}
