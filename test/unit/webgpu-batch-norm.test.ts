import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { type FoldedActivation, fusedBatchNorm, hasFusedBatchNorm } from '../../engine/fused-batch-norm.js';
import { channelSlices, MAX_SLICES } from '../../engine/kernels/webgpu/channel-slices.js';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import { BatchNorm, ForwardContext } from '../../engine/layers.js';
import { assertClose, type Inputs, randomInputs, valuesOn } from '../helpers/backend-compare.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

const EPSILON = 1e-5;

/** What the engine computes without the fused kernels: tf.moments, tf.batchNorm, the activation. */
function composed(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, activation: FoldedActivation): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const { mean, variance } = tf.moments(
    x,
    x.shape.slice(0, -1).map((_, i) => i),
  );
  const normalized = tf.batchNorm(x, mean, variance, beta, gamma, EPSILON);
  const y = activation === 'relu' ? tf.relu(normalized) : activation === 'relu6' ? tf.relu6(normalized) : normalized;
  return { y, mean, variance };
}

/** y, the batch mean and variance, and the gradients of Σ y·dy with respect to x, γ and β. */
function forwardAndGradients(fused: boolean, activation: FoldedActivation) {
  return ({ x, gamma, beta, dy }: Record<string, tf.Tensor>): tf.Tensor[] => {
    let statistics: tf.Tensor[] = [];
    const { value, grads } = tf.valueAndGrads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const result = fused ? fusedBatchNorm(a, g, b, { epsilon: EPSILON, activation }) : composed(a, g, b, activation);
      statistics = [tf.keep(result.mean), tf.keep(result.variance)];
      return result.y;
    })([x!, gamma!, beta!], dy!);
    return [value, ...statistics, ...grads];
  };
}

function inputs(shape: number[], seed: number, offset: number): Inputs {
  const channels = shape[shape.length - 1]!;
  const made = randomInputs({ x: shape, gamma: [channels], beta: [channels], dy: shape }, seed);
  // An offset far above the spread: the shifted sums must not cancel.
  return { ...made, x: { shape, values: made.x!.values.map((v) => offset + 3 * v) } };
}

describe('webgpu fused batch norm', () => {
  webgpuSuiteOnLavapipe();

  it('is used where its kernels are registered (webgpu), not on cpu', async () => {
    await tf.setBackend('webgpu');
    assert.equal(hasFusedBatchNorm(), true);
    await tf.setBackend('cpu');
    assert.equal(hasFusedBatchNorm(), false);
  });

  // Odd channel counts, more than one 64-channel block, rank 2 (batch norm after a dense layer),
  // 2,048 rows per channel (8 slices, combined by every workgroup of the second pass), 528 rows (2
  // slices: two of the four lanes that combine them have none), and 33,800 rows (91 slices, 93 row
  // groups in the second pass, not aligned with them).
  const cases: { shape: number[]; activation: FoldedActivation; offset: number }[] = [
    { shape: [2, 5, 3, 7], activation: 'relu', offset: 0 },
    { shape: [3, 4, 5, 67], activation: 'linear', offset: 0.5 },
    { shape: [33, 5], activation: 'relu6', offset: 2 },
    { shape: [8, 16, 16, 3], activation: 'relu', offset: 100 },
    { shape: [4, 12, 11, 9], activation: 'relu6', offset: 3 },
    { shape: [2, 130, 130, 3], activation: 'relu6', offset: 100 },
  ];
  cases.forEach(({ shape, activation, offset }, index) => {
    it(`matches the composition on cpu: y, statistics, dx, dγ, dβ ([${shape}], ${activation}, mean ${offset})`, async () => {
      const values = inputs(shape, 20 * index, offset);
      const gpu = await valuesOn('webgpu', values, forwardAndGradients(true, activation));
      const cpu = await valuesOn('cpu', values, forwardAndGradients(false, activation));
      assertClose(gpu, cpu, 2e-4, `[${shape}] ${activation}`);
    });
  });

  it('plans slices and row groups that cover the rows, each group re-reading at most 1/2 of its x in partials', () => {
    const wide = channelSlices([2, 130, 130, 3]);
    assert.deepEqual([wide.slices, wide.groups], [91, 93]);
    assert.equal(channelSlices([64, 112, 112, 64]).slices, MAX_SLICES);
    for (const plan of [wide, channelSlices([64, 112, 112, 64]), channelSlices([64, 7, 7, 2048]), channelSlices([4, 12, 11, 9])]) {
      assert.ok((plan.slices - 1) * plan.chunk < plan.rows && plan.slices * plan.chunk >= plan.rows, 'slices cover the rows');
      assert.ok((plan.groups - 1) * plan.groupRows < plan.rows && plan.groups * plan.groupRows >= plan.rows, 'groups cover the rows');
      // 2 partials per slice re-read for each channel of its rows: at most half as many as the rows.
      assert.ok(2 * plan.slices <= Math.min(plan.groupRows, plan.rows) / 2, `${plan.slices} slices for ${plan.groupRows} rows`);
    }
  });

  it('takes at most two dispatches forward and two backward', async () => {
    const values = inputs([8, 16, 16, 3], 200, 0);
    const dispatcher = dispatcherFor(await tf.setBackend('webgpu').then(() => tf.backend()));
    const before = dispatcher.statistics.dispatches;
    await valuesOn('webgpu', values, forwardAndGradients(true, 'relu'));
    assert.ok(dispatcher.statistics.dispatches - before <= 4, `${dispatcher.statistics.dispatches - before} dispatches`);
  });

  it("BatchNorm.apply takes the fused path on webgpu and reports the batch's statistics", async () => {
    const values = inputs([2, 3, 3, 5], 300, 1);
    const run = ({ x }: Record<string, tf.Tensor>) =>
      tf.tidy(() => {
        const layer = new BatchNorm({ name: 'bn', channels: 5 });
        const ctx = new ForwardContext(true, 'off', 'linear', 'sign', 1);
        const y = layer.apply(x!, ctx, 'relu');
        const [statistic] = ctx.batchStatistics;
        tf.dispose(layer.parameters().map((p) => p.variable));
        return [y, statistic!.mean, statistic!.variance];
      });
    assertClose(await valuesOn('webgpu', values, run), await valuesOn('cpu', values, run), 1e-4, 'BatchNorm.apply');
  });
});
