import * as tf from '@tensorflow/tfjs';

/**
 * ReLU(a + b), a residual block's join (ResNet), as one op over two kernels where a backend has them
 * (webgpu: engine/kernels/webgpu/residual-join.ts); the composition is an addition and a ReLU forward, a
 * step and a product backward, each a pass over the activation.
 *
 * `AutoPruneAddRelu`: inputs { a, b } (float32, one shape) → max(a + b, 0).
 * `AutoPruneReluGrad`: inputs { dy, y } (y the forward's output) → dy · 1[y > 0], tfjs's ReLU gradient
 *   (y > 0 exactly where a + b > 0); a and b both receive it.
 */
export const ADD_RELU = 'AutoPruneAddRelu';
export const RELU_GRAD = 'AutoPruneReluGrad';

function hasKernels(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(ADD_RELU, backend) !== undefined && tf.getKernel(RELU_GRAD, backend) !== undefined;
}

const fused = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  const y = tf.engine().runKernel(ADD_RELU, { a, b }) as tf.Tensor;
  save([y]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const gradient = tf.engine().runKernel(RELU_GRAD, { dy: dy as tf.Tensor, y: saved[0]! }) as tf.Tensor;
      // One gradient for both inputs; a clone shares its data (no copy), so each input owns a tensor.
      return [gradient, tf.clone(gradient)];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/** max(a + b, 0), differentiable in a and b. */
export function addRelu(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return hasKernels() ? fused(a, b) : tf.relu(tf.add(a, b));
}
