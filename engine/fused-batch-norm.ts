import * as tf from '@tensorflow/tfjs';

/**
 * Batch normalisation in training mode (batch statistics), optionally followed by a ReLU or ReLU6,
 * as one op over two kernels where a backend has them (webgpu: engine/kernels/webgpu/):
 *
 *   AutoPruneBatchNormActivate {x, gamma, beta}, {epsilon, activation} → [y, mean, variance, coefficients]
 *   AutoPruneBatchNormGrad     {dy, x, coefficients}, {epsilon, activation} → [dx, dγ, dβ]
 *
 * mean and variance are tf.moments' over every axis but the last (the biased variance); coefficients
 * is [4, C]: the rows μ, 1/√(σ² + ε), γ and β, exactly as the forward used them, so that the backward
 * finds the activation's mask where the forward applied it and needs no statistics of its own.
 * The gradient is the closed form of the composition it replaces (tf.moments, tf.batchNorm, the
 * activation): with x̂ = (x − μ)/√(σ² + ε), g = dy · act'(γx̂ + β) and R values per channel,
 *   dβ = Σ g,  dγ = Σ g·x̂,  dx = γ/√(σ² + ε) · (g − dβ/R − x̂·dγ/R),
 * so a pass reads x and dy once for the sums and once for dx, with no tile or transpose. Backends
 * without the kernels keep the composition (BatchNorm in layers.ts), so their results do not change.
 */
export const BATCH_NORM_ACTIVATE = 'AutoPruneBatchNormActivate';
export const BATCH_NORM_GRAD = 'AutoPruneBatchNormGrad';

/** The activation folded into the normalisation: none, max(y, 0) or min(max(y, 0), 6). */
export type FoldedActivation = 'linear' | 'relu' | 'relu6';

export interface BatchNormAttrs {
  readonly epsilon: number;
  readonly activation: FoldedActivation;
}

/** Whether the active backend has the fused kernels. */
export function hasFusedBatchNorm(): boolean {
  const backend = tf.getBackend();
  return [BATCH_NORM_ACTIVATE, BATCH_NORM_GRAD].every((name) => tf.getKernel(name, backend) !== undefined);
}

export interface FusedBatchNormResult {
  readonly y: tf.Tensor;
  /** The batch statistics, kept (outside every tidy): the caller disposes them. */
  readonly mean: tf.Tensor1D;
  readonly variance: tf.Tensor1D;
}

/** act(γ·(x − μ)/√(σ² + ε) + β) with the batch's μ and σ², differentiable in x, γ and β. */
export function fusedBatchNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, attrs: BatchNormAttrs): FusedBatchNormResult {
  const named = attrs as unknown as tf.NamedAttrMap;
  let statistics: [tf.Tensor1D, tf.Tensor1D] | undefined;
  const op = tf.customGrad(((input: tf.Tensor, scale: tf.Tensor, offset: tf.Tensor, save: tf.GradSaveFunc) => {
    const [y, mean, variance, coefficients] = tf.engine().runKernel(BATCH_NORM_ACTIVATE, { x: input, gamma: scale, beta: offset }, named) as unknown as [
      tf.Tensor,
      tf.Tensor1D,
      tf.Tensor1D,
      tf.Tensor2D,
    ];
    statistics = [tf.keep(mean), tf.keep(variance)];
    save([input, coefficients]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [savedX, savedCoefficients] = saved as [tf.Tensor, tf.Tensor];
        return tf.engine().runKernel(BATCH_NORM_GRAD, { dy: dy as tf.Tensor, x: savedX, coefficients: savedCoefficients }, named) as unknown as tf.Tensor[];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;
  const y = op(x, gamma, beta);
  const [mean, variance] = statistics!;
  return { y, mean, variance };
}
