import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { WeightDecay } from '../../engine/fused-optimizer-step.js';
import type { Parameter } from '../../engine/layers.js';
import { createOptimizer, type OptimizerSpec } from '../../engine/optimizers.js';
import { randomValues } from './backend-compare.js';

/** Odd shapes: a conv kernel with 3 input channels, a vector, a dense kernel. */
export const OPTIMIZER_SHAPES = [[3, 3, 3, 5], [7], [37, 11]];
export const OPTIMIZER_STEPS = 3;

/** Adam and the three kinds of SGD (heavy ball, Nesterov, none). */
export const OPTIMIZER_SPECS: readonly OptimizerSpec[] = [
  { type: 'adam', beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
  { type: 'sgd', momentum: 0.9, nesterov: false },
  { type: 'sgd', momentum: 0.8, nesterov: true },
  { type: 'sgd', momentum: 0, nesterov: false },
];

export interface OptimizerStepsOptions {
  readonly gated: boolean;
  readonly decay?: WeightDecay;
  readonly rate?: (step: number) => number;
  /** A running count (a dispatcher's dispatches) read around each update. */
  readonly count?: () => number;
}

/**
 * Three updates of `spec` on `backend` on parameters of odd shapes with random gradients: every parameter
 * and slot afterwards, and how much `count` grew in each update. p0 and p1 are decayed (with `decay`); with
 * `gated`, p0 and p2 update only where their gates (random values, about half negative) are ≥ 0, so that
 * gated and decayed, gated only, decayed only and plain parameters all occur.
 */
export async function optimizerSteps(
  backend: string,
  spec: OptimizerSpec,
  options: OptimizerStepsOptions,
): Promise<{ values: Float32Array[]; counts: number[] }> {
  assert.ok(await tf.setBackend(backend));
  const rate = options.rate ?? ((step: number) => 0.01 * (step + 1));
  const parameters: Parameter[] = OPTIMIZER_SHAPES.map((shape, i) => ({
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
  const counts: number[] = [];
  for (let step = 0; step < OPTIMIZER_STEPS; step++) {
    const gradients = new Map(parameters.map((p, i) => [p.name, tf.tensor(randomValues(p.variable.size, 100 * step + i), p.variable.shape)]));
    const gated = options.gated ? [0, 2] : [];
    const gates = new Map(gated.map((i) => [`p${i}`, tf.tensor(randomValues(parameters[i]!.variable.size, 7 + step + i / 2), parameters[i]!.variable.shape)]));
    const before = options.count?.() ?? 0;
    optimizer.apply(parameters, gradients, rate(step), { gates, ...(options.decay ? { decay: options.decay } : {}) });
    counts.push((options.count?.() ?? 0) - before);
    tf.dispose([...gradients.values(), ...gates.values()]);
  }
  const slots = [...optimizer.state().slots.values()];
  const values = await Promise.all([...parameters.map((p) => p.variable), ...slots].map(async (t) => (await t.data()) as Float32Array));
  optimizer.dispose();
  tf.dispose(parameters.map((p) => p.variable));
  return { values, counts };
}
