import * as tf from '@tensorflow/tfjs';
import { builtinWasmKernel } from './builtin.js';
import { composite } from './composite.js';
import type { KernelArgs } from './kernel-args.js';

const builtin = builtinWasmKernel(tf.Tile);

/**
 * Tiling is a broadcast: the output viewed as [r0, x0, r1, x1, …] is x viewed as
 * [1, x0, 1, x1, …] plus zeros of shape [r0, 1, r1, 1, …]. Non-float data, and shapes that need
 * more than the 6 axes XNNPACK takes, go to the built-in kernel.
 */
function tileByBroadcast(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const backend = args.backend as tf.KernelBackend;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { reps } = args.attrs as unknown as tf.TileAttrs;
  if (x.dtype !== 'float32') return builtin.kernelFunc(args);
  // Size-1 axes dropped and neighbouring axes of the same kind merged: XNNPACK takes at most 6.
  const dataShape: number[] = [];
  const zerosShape: number[] = [];
  let previous: 'repeat' | 'data' | undefined;
  x.shape.forEach((size, axis) => {
    for (const [kind, extent] of [
      ['repeat', reps[axis]!],
      ['data', size],
    ] as const) {
      if (extent === 1) continue;
      if (kind === previous) {
        dataShape[dataShape.length - 1] *= kind === 'data' ? extent : 1;
        zerosShape[zerosShape.length - 1] *= kind === 'repeat' ? extent : 1;
      } else {
        dataShape.push(kind === 'data' ? extent : 1);
        zerosShape.push(kind === 'repeat' ? extent : 1);
        previous = kind;
      }
    }
  });
  if (dataShape.length > 6) return builtin.kernelFunc(args);

  return composite(backend, (run) => {
    const data = run(tf.Reshape, { x }, { shape: dataShape });
    const zeros = run(tf.Fill, {}, { shape: zerosShape, value: 0, dtype: 'float32' });
    const tiled = run(tf.Add, { a: data, b: zeros });
    return run(tf.Reshape, { x: tiled }, { shape: x.shape.map((size, axis) => size * reps[axis]!) });
  });
}

/**
 * Replaces the built-in Tile, which computes every output index separately, about 20× slower than
 * XNNPACK's broadcasting add; the batch-norm gradient tiles a per-channel vector to a whole
 * activation. Keeps the built-in setup, which prepares the wasm function that the built-in kernel
 * calls.
 */
export const tileConfig: tf.KernelConfig = {
  kernelName: tf.Tile,
  backendName: 'wasm',
  setupFunc: builtin.setupFunc,
  kernelFunc: tileByBroadcast,
};
