import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import { BatchNorm } from '../../engine/layers.js';
import { assertClose, randomValues } from '../helpers/backend-compare.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

/**
 * A batch norm's moving averages after a step on webgpu (AutoPruneMovingMoments, one dispatch) against the
 * composition on cpu, through BatchNorm.updateMovingStatistics, the path the trainer takes.
 */
describe('webgpu moving moments', () => {
  webgpuSuiteOnLavapipe();

  /** The moving mean and variance after three updates with random statistics, and the dispatches each took. */
  const update = async (backend: string, channels: number, momentum: number) => {
    assert.ok(await tf.setBackend(backend));
    const layer = new BatchNorm({ name: 'bn', channels, momentum });
    const dispatches: number[] = [];
    for (let step = 0; step < 3; step++) {
      const mean = tf.tensor1d(randomValues(channels, 10 + step));
      const variance = tf.abs(tf.tensor1d(randomValues(channels, 20 + step))) as tf.Tensor1D;
      const before = backend === 'webgpu' ? dispatcherFor(tf.backend()).statistics.dispatches : 0;
      layer.updateMovingStatistics(mean, variance);
      if (backend === 'webgpu') dispatches.push(dispatcherFor(tf.backend()).statistics.dispatches - before);
      tf.dispose([mean, variance]);
    }
    const values = [(await layer.movingMean.variable.data()) as Float32Array, (await layer.movingVariance.variable.data()) as Float32Array];
    tf.dispose(layer.parameters().map((p) => p.variable));
    return { values, dispatches };
  };

  for (const [channels, momentum] of [
    [67, 0.9],
    [1000, 0.99],
  ] as const) {
    it(`${channels} channels, momentum ${momentum}: the composition's averages in one dispatch per update`, async () => {
      const gpu = await update('webgpu', channels, momentum);
      assert.deepEqual(gpu.dispatches, [1, 1, 1]);
      const cpu = await update('cpu', channels, momentum);
      assertClose(gpu.values, cpu.values, 1e-6, `moving moments over ${channels} channels`);
    });
  }
});
