import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../engine/backend.js';
import { gate, gatedWeight, type Surrogate, stepGate, surrogateDerivative } from '../../engine/gates.js';
import { skipBecause } from '../helpers/skip.js';
import { ensureTensorflowAddon } from '../helpers/tensorflow-addon.js';

const m = [-2, -0.5, 0, 0.5, 2];
const softplus = (x: number) => Math.log1p(Math.exp(x));

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance = 1e-5): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance * Math.max(1, Math.abs(expected[i]!)), `element ${i}: ${actual[i]} vs ${expected[i]}`);
  }
}

// On cpu, the reference, and on the tensorflow backend, whose kernels (softplus, sign, abs, pow) are TensorFlow's.
for (const backend of ['cpu', 'tensorflow'] as const)
  describe(`gates on ${backend}`, () => {
    before(async function () {
      this.timeout(30 * 60_000);
      if (backend === 'tensorflow') {
        const addon = await ensureTensorflowAddon();
        if ('missing' in addon) skipBecause(this, `the tensorflow backend cannot be built here: ${addon.missing}`);
      }
      assert.equal(await initBackend(backend, assert.fail), backend);
    });

    it('h(m) is 1 for m >= 0 and 0 otherwise', () => {
      assert.deepEqual(Array.from(stepGate(tf.tensor1d(m)).dataSync()), [0, 0, 1, 1, 1]);
    });

    const expectedSurrogates: Record<Surrogate, number[]> = {
      linear: [1, 1, 1, 1, 1],
      relu: [0, 0, 0, 1, 1],
      'leaky-relu': [1, 1, 1, 0.1, 0.1],
      softplus: [0.126928, 0.474077, Math.LN2, 0.974077, 2.126928],
    };
    for (const [surrogate, expected] of Object.entries(expectedSurrogates) as [Surrogate, number[]][]) {
      it(`${surrogate} surrogate: weight gate gradient is dy · surrogate(m)`, () => {
        assertClose(surrogateDerivative(tf.tensor1d(m), surrogate).dataSync(), expected);
        const dy = [1, 2, 3, 4, 5];
        const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(gate(x, surrogate, 'weight'), tf.tensor1d(dy))))(tf.tensor1d(m));
        assertClose(
          grad.dataSync(),
          expected.map((s, i) => s * dy[i]!),
        );
      });

      it(`${surrogate} surrogate: neuron gate gradient is scaled by |m|^(-3/2), 0 at m = 0`, () => {
        const grad = tf.grad((x: tf.Tensor) => tf.sum(gate(x, surrogate, 'neuron')))(tf.tensor1d(m));
        const scale = m.map((v) => (Math.abs(v) < 1e-15 ? 0 : Math.abs(v) ** -1.5));
        assertClose(
          grad.dataSync(),
          expected.map((s, i) => s * scale[i]!),
        );
      });
    }

    it('forward of a gated weight is W ⊙ h(M)', () => {
      const w = tf.tensor1d([0.3, -0.7, 1.5, -2, 0]);
      assertClose(gatedWeight(w, tf.tensor1d(m), 'softplus', 'sign').dataSync(), [0, 0, 1.5, -2, 0]);
    });

    it('sgn(W) rule: ∂L/∂M = ∂L/∂(W⊙h) · sgn(W) · surrogate(M), 0 where W = 0; ∂L/∂W = ∂L/∂(W⊙h) · h(M)', () => {
      const w = tf.tensor1d([0.3, -0.7, 1.5, -2, 0]);
      const aux = tf.tensor1d(m);
      const dy = tf.tensor1d([1, -1, 2, 0.5, 3]);
      const [dw, dm] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(gatedWeight(a, b, 'softplus', 'sign'), dy)))([w, aux]);
      const sp = m.map(softplus);
      assertClose(dm!.dataSync(), [1 * 1 * sp[0]!, -1 * -1 * sp[1]!, 2 * 1 * sp[2]!, 0.5 * -1 * sp[3]!, 0]);
      assertClose(dw!.dataSync(), [0, 0, 2, 0.5, 3]);
    });

    it('magnitude rule: ∂L/∂M = ∂L/∂(W⊙h) · W · surrogate(M)', () => {
      const wValues = [0.3, -0.7, 1.5, -2, 0];
      const dyValues = [1, -1, 2, 0.5, 3];
      const dm = tf.grad((b: tf.Tensor) => tf.sum(tf.mul(gatedWeight(tf.tensor1d(wValues), b, 'linear', 'magnitude'), tf.tensor1d(dyValues))))(tf.tensor1d(m));
      assertClose(
        dm.dataSync(),
        wValues.map((w, i) => w * dyValues[i]!),
      );
    });

    it('the sgn rule makes the gate speed independent of the weight magnitude', () => {
      const dm = (scale: number) =>
        tf
          .grad((b: tf.Tensor) => tf.sum(gatedWeight(tf.mul(tf.tensor1d([0.01, -0.02]), scale), b, 'softplus', 'sign')))(tf.tensor1d([0.5, 0.5]))
          .dataSync();
      assertClose(dm(1), dm(1000));
    });
  });
