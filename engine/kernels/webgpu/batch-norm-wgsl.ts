import type { FoldedActivation } from '../../fused-batch-norm.js';

/**
 * The normalisation and activation that the forward and backward batch-norm kernels share, as one
 * WGSL text: the backward recomputes the pre-activation to find where the activation passed the
 * gradient, and must find it exactly where the forward did. Needs bindings `mean`, `variance`,
 * `gamma`, `beta` and the uniform `epsilon`.
 */
export function normalization(activation: FoldedActivation): string {
  const apply = { linear: 'y', relu: 'max(y, 0.0)', relu6: 'clamp(y, 0.0, 6.0)' }[activation];
  // tf.relu's and tf.relu6's gradients: dy · 1[y > 0], dy · 1[0 < y ≤ 6].
  const passes = { linear: 'true', relu: 'y > 0.0', relu6: 'y > 0.0 && y <= 6.0' }[activation];
  return `
fn inverse_deviation(c: u32) -> f32 { return inverseSqrt(variance[c] + params.epsilon); }
fn normalized(v: f32, c: u32) -> f32 { return (v - mean[c]) * inverse_deviation(c); }
fn preactivation(xhat: f32, c: u32) -> f32 { return fma(xhat, gamma[c], beta[c]); }
fn activate(y: f32) -> f32 { return ${apply}; }
fn passes(y: f32) -> bool { return ${passes}; }`;
}

export const ACTIVATIONS: readonly FoldedActivation[] = ['linear', 'relu', 'relu6'];
