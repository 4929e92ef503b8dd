import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import { addRelu } from '../../engine/residual-join.js';
import { assertClose, randomInputs, valuesOn } from '../helpers/backend-compare.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

/**
 * ResNet's residual join, ReLU(a + b), on webgpu (AutoPruneAddRelu forward, AutoPruneReluGrad backward: one
 * dispatch each) against the composition on cpu: the value and both inputs' gradients, with sums at exactly 0.
 */
describe('webgpu residual join', () => {
  webgpuSuiteOnLavapipe();

  for (const shape of [
    [2, 7, 5, 13],
    [3, 4, 4, 257],
  ]) {
    it(`[${shape}]: value and gradients match cpu, one dispatch each way`, async () => {
      const inputs = randomInputs({ a: shape, b: shape, dy: shape }, shape[3]!);
      // a + b = 0 exactly at the first positions: ReLU's gradient is 0 there, as tfjs's.
      inputs.b!.values.set(inputs.a!.values.slice(0, 5).map((v) => -v));
      const joined = ({ a, b, dy }: Record<string, tf.Tensor>) =>
        tf.tidy(() => {
          const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) => addRelu(x, y))([a!, b!], dy!);
          return [addRelu(a!, b!), da!, db!];
        });
      await tf.setBackend('webgpu');
      const before = dispatcherFor(tf.backend()).statistics.dispatches;
      const gpu = await valuesOn('webgpu', inputs, joined);
      // The value twice (once under tf.grads) and the gradient once.
      assert.equal(dispatcherFor(tf.backend()).statistics.dispatches - before, 3);
      const cpu = await valuesOn('cpu', inputs, joined);
      assertClose(gpu, cpu, 1e-6, `residual join [${shape}]`);
    });
  }
});
