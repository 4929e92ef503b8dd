import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { type AuxGradientRule, composedGatedWeight, gatedWeight, type Surrogate } from '../../engine/gates.js';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import { assertClose, type Inputs, randomInputs, randomValues, valuesOn } from '../helpers/backend-compare.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

/**
 * The fused AutoPrune gate kernels on webgpu, reached through engine/gates.ts's public gatedWeight (so that
 * a mismatch between the op it runs and the kernels fails here), against the composition on cpu. Each
 * check also counts the kernels' dispatches, so that the composition on webgpu cannot stand in for them.
 */
describe('webgpu AutoPrune gate kernels', () => {
  webgpuSuiteOnLavapipe();

  /** Runs `f` on webgpu and asserts that it went through `dispatches` of autoprune's kernels. */
  const onWebGpu = async (inputs: Inputs, dispatches: number, f: (tensors: Record<string, tf.Tensor>) => tf.Tensor | tf.Tensor[]) => {
    await tf.setBackend('webgpu');
    const before = dispatcherFor(tf.backend()).statistics.dispatches;
    const values = await valuesOn('webgpu', inputs, f);
    assert.equal(dispatcherFor(tf.backend()).statistics.dispatches - before, dispatches, "dispatches of autoprune's gate kernels");
    return values;
  };

  // Odd sizes (a conv kernel with 3 input channels, a dense layer) and a size above one workgroup row.
  const shapes = [
    [3, 3, 3, 5],
    [37, 11],
    [300, 301],
  ];

  shapes.forEach((shape, index) => {
    it(`AutoPruneGate is W ⊙ 1[M ≥ 0] ([${shape}])`, async () => {
      const inputs = randomInputs({ weights: shape, aux: shape }, 10 * index);
      // Exact zeros in M: the gate is open there.
      inputs.aux!.values.fill(0, 0, 7);
      const gpu = await onWebGpu(inputs, 1, ({ weights, aux }) => gatedWeight(weights!, aux!, 'linear', 'sign'));
      const cpu = await valuesOn('cpu', inputs, ({ weights, aux }) => composedGatedWeight(weights!, aux!, 'linear', 'sign'));
      assert.deepEqual(gpu, cpu);
    });
  });

  const surrogates: Surrogate[] = ['linear', 'relu', 'leaky-relu', 'softplus'];
  const rules: AuxGradientRule[] = ['sign', 'magnitude'];
  surrogates.forEach((surrogate, s) => {
    rules.forEach((rule, r) => {
      const shape = shapes[(s + r) % shapes.length]!;
      it(`AutoPruneGateGrad gives gatedWeight's gradients (${surrogate}, ${rule}, [${shape}])`, async () => {
        const inputs = randomInputs({ dy: shape, weights: shape, aux: shape }, 100 + 10 * s + r);
        // Zeros in W and M, and M far out on both sides (softplus's exact branches).
        inputs.weights!.values.fill(0, 0, 3);
        inputs.aux!.values.fill(0, 3, 6);
        inputs.aux!.values.set([-20, 20, -14, 14], 6);
        // The forward gate and its gradient: two dispatches.
        const gpu = await onWebGpu(inputs, 2, ({ dy, weights, aux }) =>
          tf.grads((w: tf.Tensor, m: tf.Tensor) => gatedWeight(w, m, surrogate, rule))([weights!, aux!], dy!),
        );
        const cpu = await valuesOn('cpu', inputs, ({ dy, weights, aux }) =>
          tf.grads((w: tf.Tensor, m: tf.Tensor) => composedGatedWeight(w, m, surrogate, rule))([weights!, aux!], dy!),
        );
        assertClose(gpu, cpu, 1e-6, `${surrogate}/${rule}`);
      });
    });
  });

  surrogates.forEach((surrogate, s) => {
    it(`AutoPruneGateGrad adds a sparsity penalty's gradient to dM in the same dispatch (${surrogate})`, async () => {
      const shape = shapes[s % shapes.length]!;
      const inputs = randomInputs({ dy: shape, weights: shape, aux: shape }, 200 + s);
      inputs.aux!.values.fill(0, 3, 6);
      inputs.aux!.values.set([-20, 20, -14, 14], 6);
      const penalty = { weight: 0.37, nRatio: 1e-3 };
      const gpu = await onWebGpu(inputs, 2, ({ dy, weights, aux }) =>
        tf.grads((w: tf.Tensor, m: tf.Tensor) => gatedWeight(w, m, surrogate, 'sign', penalty))([weights!, aux!], dy!),
      );
      const cpu = await valuesOn('cpu', inputs, ({ dy, weights, aux }) =>
        tf.grads((w: tf.Tensor, m: tf.Tensor) => composedGatedWeight(w, m, surrogate, 'sign', penalty))([weights!, aux!], dy!),
      );
      assertClose(gpu, cpu, 1e-6, `${surrogate} with a penalty`);
    });
  });

  it('reuses its pipeline, uniform buffer and bind group when the same shapes come again', async () => {
    await tf.setBackend('webgpu');
    const dispatcher = dispatcherFor(tf.backend());
    const [weights, aux] = [tf.tensor(randomValues(300, 1), [20, 15]), tf.tensor(randomValues(300, 2), [20, 15])];
    const gate = async () => {
      const gated = gatedWeight(weights, aux, 'linear', 'sign');
      await gated.data();
      // Back to the pool: the next output of this size takes the same buffer.
      gated.dispose();
    };
    await gate();
    const first = { ...dispatcher.statistics };
    await gate();
    const second = dispatcher.statistics;
    assert.equal(second.dispatches, first.dispatches + 1);
    assert.equal(second.pipelines, first.pipelines, 'no new pipeline');
    assert.equal(second.uniformBuffers, first.uniformBuffers, 'no new uniform buffer');
    assert.equal(second.bindGroups, first.bindGroups, 'no new bind group');
    assert.equal(second.bindGroupHits, first.bindGroupHits + 1);
    tf.dispose([weights, aux]);
  });
});
