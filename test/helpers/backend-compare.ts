import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';

/** Comparing a backend's results with the cpu backend's on the same deterministic random inputs. */

/** Deterministic uniform values in [-1, 1) so that failures reproduce. */
export function randomValues(size: number, seed: number): Float32Array {
  const values = new Float32Array(size);
  let state = seed >>> 0;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values[i] = state / 2 ** 31 - 1;
  }
  return values;
}

/** The largest absolute difference relative to the largest expected magnitude. */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, 'result sizes differ');
  let worstDifference = 0;
  let largest = 0;
  for (let i = 0; i < expected.length; i++) {
    const difference = Math.abs(actual[i]! - expected[i]!);
    worstDifference = Number.isNaN(difference) ? Number.POSITIVE_INFINITY : Math.max(worstDifference, difference);
    largest = Math.max(largest, Math.abs(expected[i]!));
  }
  return worstDifference / Math.max(largest, 1e-12);
}

export type Inputs = Readonly<Record<string, { readonly shape: readonly number[]; readonly values: Float32Array }>>;

/** Random inputs of the given shapes, seeded one after another from `seed`. */
export function randomInputs(shapes: Readonly<Record<string, readonly number[]>>, seed: number): Inputs {
  return Object.fromEntries(
    Object.entries(shapes).map(([name, shape], i) => [
      name,
      {
        shape,
        values: randomValues(
          shape.reduce((a, b) => a * b, 1),
          seed + i,
        ),
      },
    ]),
  );
}

/**
 * Runs `f` on `backend` with `inputs` as tensors and returns the values of what it returns (one
 * tensor or several), read with `await data()`. Checks that nothing is left behind.
 */
export async function valuesOn(backend: string, inputs: Inputs, f: (tensors: Record<string, tf.Tensor>) => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  assert.ok(await tf.setBackend(backend), `backend ${backend} initialises`);
  const tensorsBefore = tf.memory().numTensors;
  const tensors = Object.fromEntries(Object.entries(inputs).map(([name, { shape, values }]) => [name, tf.tensor(values, [...shape])]));
  const result = f(tensors);
  const outputs = Array.isArray(result) ? result : [result];
  const values = await Promise.all(outputs.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose([...Object.values(tensors), ...outputs]);
  assert.equal(tf.memory().numTensors, tensorsBefore, `${backend}: the computation leaks tensors`);
  return values;
}

/** Asserts that every output of `actual` is within `tolerance` (relative, see maxRelativeError) of `expected`. */
export function assertClose(actual: readonly Float32Array[], expected: readonly Float32Array[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: number of outputs`);
  actual.forEach((values, i) => {
    const error = maxRelativeError(values, expected[i]!);
    assert.ok(error <= tolerance, `${what}, output ${i}: relative error ${error.toExponential(2)} > ${tolerance}`);
  });
}
