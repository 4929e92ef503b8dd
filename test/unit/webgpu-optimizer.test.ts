import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../engine/backend.js';
import { hasFusedOptimizerStep, type WeightDecay } from '../../engine/fused-optimizer-step.js';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import type { Parameter } from '../../engine/layers.js';
import { createOptimizer, type OptimizerSpec } from '../../engine/optimizers.js';
import { assertClose, randomValues } from '../helpers/backend-compare.js';
import { webgpuOnLavapipe } from '../helpers/webgpu.js';

const SHAPES = [[3, 3, 3, 5], [7], [37, 11]];
const STEPS = 3;

/**
 * Three steps of `spec` on parameters of odd shapes with random gradients: every parameter and slot
 * afterwards, and the dispatches of each step (webgpu). p0 and p1 are decayed (when `decay` is given); with
 * `gated`, p0 and p2 are updated only where their gates (random values, about half negative) are ≥ 0, so
 * that every run of the kernel's layout (gated and decayed, gated, decayed, neither) is exercised.
 */
async function train(
  backend: string,
  spec: OptimizerSpec,
  options: { gated: boolean; decay?: WeightDecay },
  rate = (step: number) => 0.01 * (step + 1),
): Promise<{ values: Float32Array[]; dispatches: number[] }> {
  assert.ok(await tf.setBackend(backend));
  const parameters: Parameter[] = SHAPES.map((shape, i) => ({
    name: `p${i}`,
    role: 'weight',
    decayed: i !== 2,
    variable: tf.variable(
      tf.tensor(
        randomValues(
          shape.reduce((a, b) => a * b),
          i,
        ),
        shape,
      ),
    ),
  }));
  const optimizer = createOptimizer(spec);
  const dispatches: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    const gradients = new Map(parameters.map((p, i) => [p.name, tf.tensor(randomValues(p.variable.size, 100 * step + i), p.variable.shape)]));
    const gates = new Map(
      options.gated
        ? ['p0', 'p2'].map((name, k) => [name, tf.tensor(randomValues(parameters[k * 2]!.variable.size, 7 + step + k), parameters[k * 2]!.variable.shape)])
        : [],
    );
    const before = backend === 'webgpu' ? dispatcherFor(tf.backend()).statistics.dispatches : 0;
    optimizer.apply(parameters, gradients, rate(step), { gates, ...(options.decay ? { decay: options.decay } : {}) });
    if (backend === 'webgpu') dispatches.push(dispatcherFor(tf.backend()).statistics.dispatches - before);
    tf.dispose([...gradients.values(), ...gates.values()]);
  }
  const slots = [...optimizer.state().slots.values()];
  const values = await Promise.all([...parameters.map((p) => p.variable), ...slots].map(async (t) => (await t.data()) as Float32Array));
  optimizer.dispose();
  tf.dispose(parameters.map((p) => p.variable));
  return { values, dispatches };
}

describe('webgpu fused optimizer step', () => {
  before(async function () {
    await initBackend('cpu', () => {});
    await webgpuOnLavapipe(this);
  });
  after(async () => {
    await initBackend('cpu', () => {});
  });

  it('is used on webgpu, not on cpu', async () => {
    await tf.setBackend('webgpu');
    assert.equal(hasFusedOptimizerStep(), true);
    await tf.setBackend('cpu');
    assert.equal(hasFusedOptimizerStep(), false);
  });

  const specs: OptimizerSpec[] = [
    { type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    { type: 'sgd', momentum: 0.9, nesterov: false },
    { type: 'sgd', momentum: 0.8, nesterov: true },
    { type: 'sgd', momentum: 0, nesterov: false },
  ];
  for (const spec of specs) {
    for (const gated of [false, true]) {
      it(`${JSON.stringify(spec)}${gated ? ', gated' : ''}: one dispatch per step, the composition's parameters and slots`, async () => {
        const gpu = await train('webgpu', spec, { gated });
        assert.deepEqual(gpu.dispatches, Array(STEPS).fill(1));
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
      for (const spec of [specs[0]!, specs[1]!]) {
        const gpu = await train('webgpu', spec, { gated: true, decay });
        assert.deepEqual(gpu.dispatches, Array(STEPS).fill(1));
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
      [specs[0]!, () => tf.train.adam(0.01, 0.9, 0.999, 1e-8)],
      [specs[1]!, () => tf.train.momentum(0.01, 0.9)],
      [specs[2]!, () => tf.train.momentum(0.01, 0.8, true)],
    ];
    for (const [spec, makeReference] of references) {
      const gpu = await train('webgpu', spec, { gated: false }, () => 0.01);
      await tf.setBackend('cpu');
      const variables = SHAPES.map((shape, i) =>
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
      for (let step = 0; step < STEPS; step++) {
        const gradients = variables.map((v, i) => tf.tensor(randomValues(v.size, 100 * step + i), v.shape));
        reference.applyGradients(Object.fromEntries(variables.map((v, i) => [v.name, gradients[i]!])));
        tf.dispose(gradients);
      }
      const expected = variables.map((v) => v.dataSync() as Float32Array);
      reference.dispose();
      tf.dispose(variables);
      assertClose(gpu.values.slice(0, SHAPES.length), expected, 1e-5, `tf.train for ${JSON.stringify(spec)}`);
    }
  });
});
