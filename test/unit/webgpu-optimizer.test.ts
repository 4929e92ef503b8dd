import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { hasFusedOptimizerStep, type WeightDecay } from '../../engine/fused-optimizer-step.js';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import type { OptimizerSpec } from '../../engine/optimizers.js';
import { assertClose, randomValues } from '../helpers/backend-compare.js';
import { OPTIMIZER_SHAPES, OPTIMIZER_SPECS, OPTIMIZER_STEPS, optimizerSteps } from '../helpers/optimizer-steps.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

/** optimizerSteps on `backend`, counting autoprune's webgpu dispatches there. */
function train(backend: string, spec: OptimizerSpec, options: { gated: boolean; decay?: WeightDecay }, rate?: (step: number) => number) {
  const count = backend === 'webgpu' ? () => dispatcherFor(tf.backend()).statistics.dispatches : undefined;
  return optimizerSteps(backend, spec, { ...options, ...(rate ? { rate } : {}), ...(count ? { count } : {}) });
}

describe('webgpu fused optimizer step', () => {
  webgpuSuiteOnLavapipe();

  it('is used on webgpu, not on cpu', async () => {
    await tf.setBackend('webgpu');
    assert.equal(hasFusedOptimizerStep(), true);
    await tf.setBackend('cpu');
    assert.equal(hasFusedOptimizerStep(), false);
  });

  for (const spec of OPTIMIZER_SPECS) {
    for (const gated of [false, true]) {
      it(`${JSON.stringify(spec)}${gated ? ', gated' : ''}: one dispatch per step, the composition's parameters and slots`, async () => {
        const gpu = await train('webgpu', spec, { gated });
        assert.deepEqual(gpu.counts, Array(OPTIMIZER_STEPS).fill(1));
        const cpu = await train('cpu', spec, { gated });
        assertClose(gpu.values, cpu.values, 1e-6, JSON.stringify(spec));
      });
    }
  }

  for (const decay of [
    { l1: 1e-2, l2: 0.1 },
    { l1: 0, l2: 0.5 },
  ]) {
    it(`adds L1/L2 ${JSON.stringify(decay)} to the decayed parameters' gradients in the same dispatch, gated or not`, async () => {
      for (const spec of [OPTIMIZER_SPECS[0]!, OPTIMIZER_SPECS[1]!]) {
        const gpu = await train('webgpu', spec, { gated: true, decay });
        assert.deepEqual(gpu.counts, Array(OPTIMIZER_STEPS).fill(1));
        const cpu = await train('cpu', spec, { gated: true, decay });
        assertClose(gpu.values, cpu.values, 1e-6, `${JSON.stringify(spec)} with ${JSON.stringify(decay)}`);
        const undecayed = await train('cpu', spec, { gated: true });
        assert.notDeepEqual(cpu.values[0], undecayed.values[0], 'the decay changed p0');
        assert.deepEqual(cpu.values[2], undecayed.values[2], 'p2 is not decayed');
      }
    });
  }

  it("matches tf.train's Adam and momentum optimizers", async () => {
    const references: [OptimizerSpec, () => tf.Optimizer][] = [
      [OPTIMIZER_SPECS[0]!, () => tf.train.adam(0.01, 0.9, 0.999, 1e-8)],
      [OPTIMIZER_SPECS[1]!, () => tf.train.momentum(0.01, 0.9)],
      [OPTIMIZER_SPECS[2]!, () => tf.train.momentum(0.01, 0.8, true)],
    ];
    for (const [spec, makeReference] of references) {
      const gpu = await train('webgpu', spec, { gated: false }, () => 0.01);
      await tf.setBackend('cpu');
      const variables = OPTIMIZER_SHAPES.map((shape, i) =>
        tf.variable(
          tf.tensor(
            randomValues(
              shape.reduce((a, b) => a * b),
              i,
            ),
            shape,
          ),
        ),
      );
      const reference = makeReference();
      for (let step = 0; step < OPTIMIZER_STEPS; step++) {
        const gradients = variables.map((v, i) => tf.tensor(randomValues(v.size, 100 * step + i), v.shape));
        reference.applyGradients(Object.fromEntries(variables.map((v, i) => [v.name, gradients[i]!])));
        tf.dispose(gradients);
      }
      const expected = variables.map((v) => v.dataSync() as Float32Array);
      reference.dispose();
      tf.dispose(variables);
      assertClose(gpu.values.slice(0, OPTIMIZER_SHAPES.length), expected, 1e-5, `tf.train for ${JSON.stringify(spec)}`);
    }
  });
});
