import type { FoldedActivation } from '../../fused-batch-norm.js';

/**
 * The normalisation and activation that the forward and backward batch-norm kernels share, as one
 * WGSL text, over a channel's coefficients k = (μ, 1/√(σ² + ε), γ, β): the backward recomputes the
 * pre-activation to find where the activation passed the gradient, and must find it exactly where
 * the forward did, so both take the same k (the forward computes it, and writes it out as the
 * `coefficients` the backward reads).
 */
export function normalization(activation: FoldedActivation): string {
  const apply = { linear: 'y', relu: 'max(y, 0.0)', relu6: 'clamp(y, 0.0, 6.0)' }[activation];
  // tf.relu's and tf.relu6's gradients: dy · 1[y > 0], dy · 1[0 < y ≤ 6].
  const passes = { linear: 'true', relu: 'y > 0.0', relu6: 'y > 0.0 && y <= 6.0' }[activation];
  return `
fn normalized(v: f32, k: vec4<f32>) -> f32 { return (v - k.x) * k.y; }
fn preactivation(xhat: f32, k: vec4<f32>) -> f32 { return fma(xhat, k.z, k.w); }
fn activate(y: f32) -> f32 { return ${apply}; }
fn passes(y: f32) -> bool { return ${passes}; }`;
}

/** WGSL: channel c's coefficients k from a [4, C] `coefficients` binding. */
export const READ_COEFFICIENTS = `
fn coefficients_of(c: u32) -> vec4<f32> {
  let C = params.channels;
  return vec4<f32>(coefficients[c], coefficients[C + c], coefficients[2u * C + c], coefficients[3u * C + c]);
}`;

export const ACTIVATIONS: readonly FoldedActivation[] = ['linear', 'relu', 'relu6'];
