import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { StepWorkload } from '../../bench/workloads.js';
import { initBackend } from '../../engine/backend.js';
import { DispatchCounter } from '../../engine/dispatch-counter.js';
import { gatedWeight } from '../../engine/gates.js';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import { webgpuOnLavapipe } from '../helpers/webgpu.js';

/** The webgpu dispatch counter on lavapipe: it counts what runs, changes no value, and a dry run counts the same. */
describe('dispatch counter (webgpu on lavapipe)', () => {
  before(async function () {
    await webgpuOnLavapipe(this);
  });
  after(async () => {
    await initBackend('cpu', () => {});
  });

  it('counts one dispatch and the bytes of its bindings for an elementwise op, and leaves its result as it was', async () => {
    const a = tf.tensor2d(
      Float32Array.from({ length: 64 * 100 }, (_, i) => i),
      [64, 100],
    );
    const b = tf.onesLike(a);
    await b.data(); // made on the device before counting starts
    const counter = DispatchCounter.attach({ activationElements: 64 * 100, execute: true });
    let sum: tf.Tensor;
    try {
      sum = tf.add(a, b);
      const tally = counter.take();
      assert.equal(tally.dispatches, 1);
      assert.equal(tally.bytes, 3 * 64 * 100 * 4, 'two inputs and one output, float32');
      assert.equal(tally.activationBytes, tally.bytes);
      assert.deepEqual(
        tally.byProgram.map(([, n]) => n),
        [1],
      );
    } finally {
      counter.detach();
    }
    const values = await sum.data();
    assert.equal(values[6399], 6400);
    assert.equal(values[0], 1);
  });

  it("counts autoprune's own kernels, which do not dispatch through the package, as their dispatcher records them", async () => {
    const [weights, aux] = [tf.randomNormal([30, 20], 0, 1, 'float32', 1), tf.randomNormal([30, 20], 0, 1, 'float32', 2)];
    await Promise.all([weights.data(), aux.data()]);
    const dispatcher = dispatcherFor(tf.backend());
    const before = dispatcher.statistics.dispatches;
    const counter = DispatchCounter.attach({ activationElements: 600, execute: true });
    let gated: tf.Tensor;
    try {
      gated = gatedWeight(weights, aux, 'softplus', 'sign');
      const tally = counter.take();
      assert.equal(dispatcher.statistics.dispatches - before, 1, 'the fused gate is one dispatch of the dispatcher');
      assert.equal(tally.dispatches, 1);
      assert.equal(tally.bytes, 3 * 600 * 4, 'W and M in, the gated weight out');
      assert.deepEqual(tally.byProgram, [['AutoPruneGate', 1]]);
    } finally {
      counter.detach();
    }
    const expected = tf.tidy(() => tf.mul(weights, tf.cast(tf.greaterEqual(aux, 0), 'float32')));
    assert.deepEqual(await gated.data(), await expected.data());
    tf.dispose([weights, aux, gated, expected]);
  });

  it('a dry run of an AutoPrune iteration counts what running it counts', async () => {
    const workload = new StepWorkload({ model: 'lenet5', batch: 4 });
    try {
      // The optimizers make their slots on the first iteration: count the second.
      workload.iteration();
      await workload.settle();
      const tallies = [];
      for (const execute of [true, false]) {
        const counter = DispatchCounter.attach({ activationElements: workload.smallestActivation, execute });
        try {
          workload.iteration();
          tallies.push(counter.take());
        } finally {
          counter.detach();
        }
      }
      const [executed, dry] = tallies as [ReturnType<DispatchCounter['take']>, ReturnType<DispatchCounter['take']>];
      assert.ok(executed.dispatches > 50, `${executed.dispatches} dispatches`);
      assert.deepEqual(dry, executed);
      const programs = executed.byProgram.map(([name]) => name);
      for (const name of ['Conv2DMMProgram', 'AutoPruneGate', 'AutoPruneGateGrad', 'Conv2DBackpropFilterSplitK', 'AutoPruneFusedOptimizerStep'])
        assert.ok(programs.includes(name), `${name} in ${programs.join(', ')}`);
      // The fused optimizer gathers its flat buffers and scatters them back with copies.
      assert.ok(executed.copies > 0);
    } finally {
      workload.dispose();
    }
  });
});
