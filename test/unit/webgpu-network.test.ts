import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import { ForwardContext, globalAveragePool } from '../../engine/layers.js';
import { identity, LayerFactory, relu, relu6 } from '../../engine/models/common.js';
import { assertClose, randomValues } from '../helpers/backend-compare.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

/**
 * autoprune's webgpu kernels together, as a pruning pass uses them: the gradients of a small
 * MobileNet-like block's loss (a strided convolution, a depthwise one, batch norms with ReLU and
 * ReLU6 folded in and without, a residual addition, weight gates in training mode) with respect to
 * every weight and gate, against cpu.
 */
async function gradients(backend: string): Promise<{ names: string[]; values: Float32Array[]; ownDispatches: number }> {
  assert.ok(await tf.setBackend(backend));
  const layers = new LayerFactory(
    { seed: 3, granularityOf: () => 'weight', maskInit: { mean: 0.5, std: 0.01 } },
    { kernelInit: 'he-normal', biasInit: 'zeros', useBias: false },
  );
  const stem = layers.convBn('stem', 'stem.bn', { inputShape: [12, 12, 3], filters: 9, kernelSize: 3, strides: 2 }, relu);
  const spatial = layers.depthwiseBn('dw', 'dw.bn', { inputShape: [6, 6, 9], kernelSize: 3 }, relu6);
  const project = layers.convBn('project', 'project.bn', { inputShape: [6, 6, 9], filters: 9, kernelSize: 1 }, identity);
  const head = layers.dense('fc', { inputFeatures: 9, units: 5, useBias: true });
  const parameters = [...layers.maskedLayers.flatMap((l) => l.parameters()), ...layers.batchNorms.flatMap((b) => b.parameters())];
  // The same values on every backend (the initialisers' random streams differ between backends).
  parameters.forEach((parameter, k) => {
    const values = randomValues(parameter.variable.size, 1000 + k).map((v) => (parameter.role === 'aux' ? v : 0.5 * v));
    parameter.variable.assign(tf.tensor(values, parameter.variable.shape));
  });
  const images = tf.tensor4d(randomValues(4 * 12 * 12 * 3, 5), [4, 12, 12, 3]);
  const labels = tf.oneHot(tf.tensor1d([1, 3, 0, 4], 'int32'), 5);
  const trained = parameters.filter((p) => p.role !== 'state');
  const dispatcher = backend === 'webgpu' ? dispatcherFor(tf.backend()) : undefined;
  const before = dispatcher?.statistics.dispatches ?? 0;
  const ctx = new ForwardContext(true, 'train', 'softplus', 'sign', 1);
  const { value, grads } = tf.variableGrads(
    () => {
      const x = stem.apply(images, ctx);
      const y = tf.add(project.apply(spatial.apply(x, ctx), ctx), x);
      return tf.losses.softmaxCrossEntropy(labels, head.apply(globalAveragePool(y), ctx)) as tf.Scalar;
    },
    trained.map((p) => p.variable),
  );
  const ownDispatches = (dispatcher?.statistics.dispatches ?? 0) - before;
  const values = await Promise.all([value, ...trained.map((p) => grads[p.variable.name]!)].map(async (t) => (await t.data()) as Float32Array));
  tf.dispose([value, images, labels, ...Object.values(grads), ...ctx.batchStatistics.flatMap((s) => [s.mean, s.variance])]);
  tf.dispose(parameters.map((p) => p.variable));
  return { names: ['loss', ...trained.map((p) => p.name)], values, ownDispatches };
}

describe('webgpu kernels in a network', () => {
  webgpuSuiteOnLavapipe();

  it('a MobileNet-like block: the loss and every gradient match cpu', async () => {
    const gpu = await gradients('webgpu');
    const cpu = await gradients('cpu');
    // Per batch norm 2 forward and 2 or 3 backward, per convolution 1 or 2 for the filter gradient.
    assert.ok(gpu.ownDispatches >= 12, `autoprune's kernels ran (${gpu.ownDispatches} dispatches)`);
    gpu.values.forEach((values, i) => assertClose([values], [cpu.values[i]!], 1e-4, gpu.names[i]!));
  });
});
