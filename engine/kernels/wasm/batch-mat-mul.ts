import * as tf from '@tensorflow/tfjs';
import { builtinWasmKernel } from './builtin.js';
import { composite } from './composite.js';
import type { KernelArgs } from './kernel-args.js';

const builtin = builtinWasmKernel(tf.BatchMatMul);

/**
 * When b has no batch, transposing explicitly and folding a's batch into its rows reaches the
 * built-in kernel's XNNPACK path; other products go to the built-in kernel as they are.
 */
function batchMatMulOnXnnpack(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const backend = args.backend as tf.KernelBackend;
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  if (batchB !== 1 || (batchA === 1 && !transposeA && !transposeB)) return builtin.kernelFunc(args);

  return composite(backend, (run, track) => {
    const toMatrix = (x: tf.TensorInfo, transpose: boolean): tf.TensorInfo => {
      const rank = x.shape.length;
      if (!transpose) return x;
      const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
      return run(tf.Transpose, { x }, { perm });
    };
    const aRows = toMatrix(a, transposeA);
    const bMatrix = toMatrix(b, transposeB);
    const [rows, inner] = aRows.shape.slice(-2);
    const columns = bMatrix.shape[bMatrix.shape.length - 1];
    const a3d = run(tf.Reshape, { x: aRows }, { shape: [1, batchA * rows, inner] });
    const b3d = run(tf.Reshape, { x: bMatrix }, { shape: [1, inner, columns] });
    const product = track(builtin.kernelFunc({ inputs: { a: a3d, b: b3d }, backend, attrs: { transposeA: false, transposeB: false } }) as tf.TensorInfo);
    const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return run(tf.Reshape, { x: product }, { shape: [...outBatch, rows, columns] });
  });
}

/**
 * Replaces the built-in BatchMatMul, which uses XNNPACK only for untransposed operands without a
 * batch and otherwise runs a naive loop 10–20× slower; training multiplies by transposed operands in
 * every dense layer's gradient. Keeps the built-in setup, which prepares the wasm function that the
 * built-in kernel calls.
 */
export const batchMatMulConfig: tf.KernelConfig = {
  kernelName: tf.BatchMatMul,
  backendName: 'wasm',
  setupFunc: builtin.setupFunc,
  kernelFunc: batchMatMulOnXnnpack,
};
