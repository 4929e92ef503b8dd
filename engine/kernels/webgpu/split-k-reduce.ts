import type * as tf from '@tensorflow/tfjs';
import type { KernelDispatcher } from './dispatcher.js';
import { elementwiseGrid, elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/**
 * The second pass of a split-K reduction: out[i] = Σₛ partial[s·size + i]. The first pass has each
 * of S workgroup slices reduce its own share of the long axis into partial[s]; WGSL has no float
 * atomics and no ordering between workgroups, so the slices meet here, in a fixed order (the result
 * does not depend on scheduling).
 */
const SPLIT_K_REDUCE: ShaderProgram = {
  name: 'SplitKReduce',
  outputs: ['result'],
  inputs: ['partial'],
  uniforms: [
    ['size', 'u32'],
    ['splits', 'u32'],
  ],
  body: elementwiseShader(`  var sum = 0.0;
  for (var s = 0u; s < params.splits; s++) { sum += partial[s * params.size + i]; }
  result[i] = sum;`),
};

/**
 * Runs the first pass of a split-K reduction (`program`, whose one output takes `splits` slices of `size`
 * elements) and sums its slices into `result`; with one slice the first pass writes `result` itself.
 */
export function dispatchSplitK(
  dispatcher: KernelDispatcher,
  first: {
    readonly program: ShaderProgram;
    readonly grid: readonly [number, number, number];
    readonly inputs: readonly tf.TensorInfo[];
    readonly uniforms: readonly number[];
  },
  result: tf.TensorInfo,
  size: number,
  splits: number,
): void {
  if (splits === 1) {
    dispatcher.dispatch(first.program, first.grid, [result], first.inputs, first.uniforms);
    return;
  }
  const partial = dispatcher.allocate([splits, size]);
  dispatcher.dispatch(first.program, first.grid, [partial], first.inputs, first.uniforms);
  dispatcher.dispatch(SPLIT_K_REDUCE, elementwiseGrid(size), [result], [partial], [size, splits]);
  dispatcher.release(partial);
}

/**
 * How many slices to split a reduction of `length` into when `tiles` workgroups already work on
 * independent outputs: enough for about TARGET_WORKGROUPS in all, each slice at least `minimum`
 * long. A GPU with 132 multiprocessors idles on a few dozen workgroups, each looping over the
 * whole of N·H·W.
 */
export function splitCount(tiles: number, length: number, minimum: number): number {
  return Math.max(1, Math.min(Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(length / minimum)));
}

/** Workgroups a split reduction aims for: a few per multiprocessor of a large GPU. */
const TARGET_WORKGROUPS = 1024;
