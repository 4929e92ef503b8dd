import type * as tf from '@tensorflow/tfjs';

/** What a kernel function receives: its inputs, the backend and the attributes. */
export type KernelArgs = Parameters<tf.KernelFunc>[0];

export type Shape4 = [number, number, number, number];

/** The shape of a rank-4 input, which the convolution and pooling kernels require. */
export function shape4(info: tf.TensorInfo): Shape4 {
  if (info.shape.length !== 4) throw new Error(`expected a rank-4 tensor, got shape [${info.shape.join(', ')}]`);
  return info.shape as Shape4;
}
