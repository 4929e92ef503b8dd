import * as tf from '@tensorflow/tfjs';

/**
 * A batch norm's moving averages after a W step, as one kernel where a backend has it (webgpu:
 * engine/kernels/webgpu/moving-moments.ts; the composition is six dispatches per batch norm, about 320
 * per ResNet-50 W step for vectors of a few hundred values).
 *
 * `AutoPruneMovingMoments`: inputs { movingMean, movingVariance, mean, variance } (float32, [C]);
 *   attrs MovingMomentsAttrs; outputs [movingMean′, movingVariance′], each
 *     moving′ = moving · momentum + observed · (1 − momentum)   (products and sum rounded to float32).
 */
export const MOVING_MOMENTS = 'AutoPruneMovingMoments';

export interface MovingMomentsAttrs {
  /** Weight of the old average (Keras's convention). */
  readonly momentum: number;
}

/** The updated moving mean and variance; the caller disposes them. */
export function movingMoments(
  moving: { readonly mean: tf.Tensor1D; readonly variance: tf.Tensor1D },
  observed: { readonly mean: tf.Tensor1D; readonly variance: tf.Tensor1D },
  momentum: number,
): [tf.Tensor1D, tf.Tensor1D] {
  if (tf.getKernel(MOVING_MOMENTS, tf.getBackend()) !== undefined) {
    const inputs = { movingMean: moving.mean, movingVariance: moving.variance, mean: observed.mean, variance: observed.variance };
    const attrs: MovingMomentsAttrs = { momentum };
    return tf.engine().runKernel(MOVING_MOMENTS, inputs, attrs as unknown as tf.NamedAttrMap) as unknown as [tf.Tensor1D, tf.Tensor1D];
  }
  return tf.tidy(() => [
    tf.add(tf.mul(moving.mean, momentum), tf.mul(observed.mean, 1 - momentum)),
    tf.add(tf.mul(moving.variance, momentum), tf.mul(observed.variance, 1 - momentum)),
  ]);
}
