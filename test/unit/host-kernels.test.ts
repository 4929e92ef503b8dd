import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../engine/backend.js';
import { AUTOPRUNE_GATE, type AuxGradientRule, composedGatedWeight, type GatePenalty, gatedWeight, type Surrogate } from '../../engine/gates.js';
import type { Parameter } from '../../engine/layers.js';
import { ADAM_UPDATE, createOptimizer } from '../../engine/optimizers.js';

/**
 * autoprune's kernels for the cpu backend (engine/kernels/host/) against the compositions of core ops
 * they replace, to the bit: the fused gate (AutoPruneGate, AutoPruneGateGrad) on
 * random shapes with weights and gates at exactly zero, forward values and both gradients, for every
 * surrogate and rule, with and without a sparsity penalty; the fused Adam update over several steps, with
 * L1/L2 and with and without gates.
 */

const SHAPES: readonly number[][] = [[5, 5, 3, 7], [13], [31, 17], [3, 3, 11, 1]];
const SURROGATES: readonly Surrogate[] = ['linear', 'relu', 'leaky-relu', 'softplus'];
const RULES: readonly AuxGradientRule[] = ['sign', 'magnitude'];

/** Deterministic values in [-2, 2), every seventh exactly 0, and some beyond softplus's thresholds. */
function values(size: number, seed: number): Float32Array {
  return Float32Array.from({ length: size }, (_, i) => (i % 7 === 3 ? 0 : i % 29 === 5 ? 20 * Math.sin(i + seed) : 2 * Math.sin(i * 1.3 + seed * 7.1)));
}

/** The forward value and both gradients of Σ R ⊙ gate(W, M), R fixed, with `gateOf` as the gate. */
function run(gateOf: typeof gatedWeight, shape: number[], surrogate: Surrogate, rule: AuxGradientRule, penalty?: GatePenalty): Float32Array[] {
  return tf.tidy(() => {
    const size = shape.reduce((a, b) => a * b, 1);
    const w = tf.tensor(values(size, 1), shape);
    const m = tf.tensor(values(size, 2), shape);
    const r = tf.tensor(values(size, 3), shape);
    const forward = gateOf(w, m, surrogate, rule, penalty);
    const [dw, dm] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(gateOf(a, b, surrogate, rule, penalty), r)))([w, m]);
    return [forward, dw!, dm!].map((t) => t.dataSync() as Float32Array);
  });
}

/** Parameters after three Adam steps with L1/L2 from fixed values (every third gate closed, with `masked`). */
function adamSteps(shape: number[], masked: boolean): Float32Array[] {
  const size = shape.reduce((a, b) => a * b, 1);
  const parameter: Parameter = { name: 'p', role: 'weight', decayed: true, variable: tf.variable(tf.tensor(values(size, 4), shape)) };
  const optimizer = createOptimizer({ type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
  const gate = tf.tensor(
    Float32Array.from({ length: size }, (_, i) => (i % 3 === 0 ? -0.5 : 0.5)),
    shape,
  );
  for (let step = 0; step < 3; step++) {
    const gradient = tf.tensor(values(size, 5 + step), shape);
    const options = { decay: { l1: 1e-3, l2: 1e-2 }, ...(masked ? { gates: new Map([['p', gate]]) } : {}) };
    optimizer.apply([parameter], new Map([['p', gradient]]), 1e-3 * (step + 1), options);
    gradient.dispose();
  }
  const state = optimizer.state();
  const read = [parameter.variable, state.slots.get('p/m')!, state.slots.get('p/v')!].map((t) => t.dataSync() as Float32Array);
  optimizer.dispose();
  tf.dispose([parameter.variable, gate]);
  return read;
}

function assertAgree(backend: string, what: string, a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) {
    const ok = backend === 'cpu' ? Object.is(a[i], b[i]) : Math.abs(a[i]! - b[i]!) <= 1e-6 * Math.max(1, Math.abs(b[i]!));
    assert.ok(ok, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

describe('host kernels', () => {
  after(async () => {
    await initBackend('cpu', () => {});
  });

  for (const backend of ['cpu'] as const) {
    it(`${backend}: AutoPruneGate and its gradient match the composition${backend === 'cpu' ? ' to the bit' : ''}`, async () => {
      await initBackend(backend, () => {});
      assert.ok(tf.getKernel(AUTOPRUNE_GATE, backend), `${AUTOPRUNE_GATE} is registered on ${backend}`);
      for (const shape of SHAPES)
        for (const surrogate of SURROGATES)
          for (const rule of RULES)
            for (const penalty of [undefined, { weight: 0.37, nRatio: 1e-3 }]) {
              const fused = run(gatedWeight, shape, surrogate, rule, penalty);
              const composed = run(composedGatedWeight, shape, surrogate, rule, penalty);
              ['forward', 'dW', 'dM'].forEach((what, k) => {
                assertAgree(backend, `[${shape}] ${surrogate} ${rule} ${JSON.stringify(penalty)} ${what}`, fused[k]!, composed[k]!);
              });
            }
    });

    it(`${backend}: AutoPruneAdam matches Adam's composition${backend === 'cpu' ? ' to the bit' : ''}`, async () => {
      await initBackend(backend, () => {});
      const kernel = tf.getKernel(ADAM_UPDATE, backend);
      assert.ok(kernel, `${ADAM_UPDATE} is registered on ${backend}`);
      for (const shape of SHAPES)
        for (const masked of [false, true]) {
          const fused = adamSteps(shape, masked);
          // Without the kernel, the optimizer composes the update from core ops.
          tf.unregisterKernel(ADAM_UPDATE, backend);
          try {
            const composed = adamSteps(shape, masked);
            ['parameter', 'm', 'v'].forEach((what, k) => {
              assertAgree(backend, `[${shape}] masked ${masked} ${what}`, fused[k]!, composed[k]!);
            });
          } finally {
            tf.registerKernel(kernel);
          }
        }
    });
  }
});
