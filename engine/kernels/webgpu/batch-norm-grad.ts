import type * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_GRAD, type BatchNormAttrs } from '../../fused-batch-norm.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { ACTIVATIONS, normalization, READ_COEFFICIENTS } from './batch-norm-wgsl.js';
import { CHANNEL_BLOCK, channelSlices, ROW_LANES, SLICE_COORDINATES, SLICE_UNIFORMS, sliceUniforms } from './channel-slices.js';
import { dispatcherFor } from './dispatcher.js';
import type { ShaderProgram } from './program.js';

/**
 * AutoPruneBatchNormGrad on webgpu: [dx, dγ, dβ] of act(γ·x̂ + β) in training mode (formulas in
 * engine/fused-batch-norm.ts), in two dispatches: the per-channel sums Σg and Σg·x̂ by slices of
 * rows (the activation's mask applied to dy on the way), then dx, each of whose workgroups (64
 * channels × a group of rows) first adds every slice's sums of its channels in a fixed order (the 4
 * row lanes each a contiguous quarter of the slices, then the lanes in order), the first row group
 * writing them out as dβ and dγ. The composition it replaces tiles γ-sized tensors up to
 * activation size and transposes the activation for every channel sum.
 */
function sliceSums(activation: BatchNormAttrs['activation']): ShaderProgram {
  return {
    name: `BatchNormGradSlices(${activation})`,
    outputs: ['partials'],
    inputs: ['dy', 'x', 'coefficients'],
    uniforms: SLICE_UNIFORMS,
    body: `${SLICE_COORDINATES}${READ_COEFFICIENTS}${normalization(activation)}
var<workgroup> gradientSums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> productSums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
@compute @workgroup_size(${CHANNEL_BLOCK * ROW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = rows_of(wid, t, params.chunk);
  let inside = s.channel < params.channels;
  var gradient = 0.0;
  var product = 0.0;
  if (inside) {
    let k = coefficients_of(s.channel);
    for (var r = s.begin + s.lane; r < s.end; r += ROW_LANES) {
      let i = r * params.channels + s.channel;
      let xhat = normalized(x[i], k);
      let g = select(0.0, dy[i], passes(preactivation(xhat, k)));
      gradient += g;
      product = fma(g, xhat, product);
    }
  }
  gradientSums[t] = gradient;
  productSums[t] = product;
  workgroupBarrier();
  if (s.lane == 0u && inside) {
    for (var lane = 1u; lane < ROW_LANES; lane++) {
      gradient += gradientSums[t + lane * CHANNEL_BLOCK];
      product += productSums[t + lane * CHANNEL_BLOCK];
    }
    partials[2u * wid.y * params.channels + s.channel] = gradient;
    partials[(2u * wid.y + 1u) * params.channels + s.channel] = product;
  }
}`,
  };
}

function inputGradient(activation: BatchNormAttrs['activation']): ShaderProgram {
  return {
    name: `BatchNormGradInput(${activation})`,
    outputs: ['dx', 'dgamma', 'dbeta'],
    inputs: ['dy', 'x', 'coefficients', 'partials'],
    uniforms: SLICE_UNIFORMS,
    body: `${SLICE_COORDINATES}${READ_COEFFICIENTS}${normalization(activation)}
var<workgroup> gradientSums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> productSums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> channel_coefficients: array<vec4<f32>, ${CHANNEL_BLOCK}>;
var<workgroup> channel_sums: array<vec2<f32>, ${CHANNEL_BLOCK}>;
@compute @workgroup_size(${CHANNEL_BLOCK * ROW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = rows_of(wid, t, params.group_rows);
  let inside = s.channel < params.channels;
  var gradient = 0.0;
  var product = 0.0;
  if (inside) {
    let range = lane_slices(s.lane);
    for (var k = range.x; k < range.y; k++) {
      gradient += partials[2u * k * params.channels + s.channel];
      product += partials[(2u * k + 1u) * params.channels + s.channel];
    }
  }
  gradientSums[t] = gradient;
  productSums[t] = product;
  workgroupBarrier();
  if (s.lane == 0u && inside) {
    for (var lane = 1u; lane < ROW_LANES; lane++) {
      gradient += gradientSums[t + lane * CHANNEL_BLOCK];
      product += productSums[t + lane * CHANNEL_BLOCK];
    }
    channel_sums[t] = vec2<f32>(gradient, product);
    channel_coefficients[t] = coefficients_of(s.channel);
    if (wid.y == 0u) {
      dbeta[s.channel] = gradient;
      dgamma[s.channel] = product;
    }
  }
  workgroupBarrier();
  if (inside) {
    let k = channel_coefficients[t % CHANNEL_BLOCK];
    let sums = channel_sums[t % CHANNEL_BLOCK] / f32(params.rows);
    for (var r = s.begin + s.lane; r < s.end; r += ROW_LANES) {
      let i = r * params.channels + s.channel;
      let xhat = normalized(x[i], k);
      let g = select(0.0, dy[i], passes(preactivation(xhat, k)));
      dx[i] = k.z * k.y * (g - fma(xhat, sums.y, sums.x));
    }
  }
}`,
  };
}

function batchNormGrad(args: KernelArgs): tf.TensorInfo[] {
  const { dy, x, coefficients } = args.inputs as Record<'dy' | 'x' | 'coefficients', tf.TensorInfo>;
  const { activation } = args.attrs as unknown as BatchNormAttrs;
  if (!ACTIVATIONS.includes(activation)) throw new Error(`${BATCH_NORM_GRAD}: unknown activation '${activation}'`);
  const plan = channelSlices(x!.shape);
  if (plan.rows * plan.channels === 0) throw new Error(`${BATCH_NORM_GRAD}: no values (shape [${x!.shape}])`);
  const dispatcher = dispatcherFor(args.backend);
  const uniforms = sliceUniforms(plan);
  const partials = dispatcher.allocate([plan.slices, 2, plan.channels]);
  dispatcher.dispatch(sliceSums(activation), [plan.blocks, plan.slices, 1], [partials], [dy!, x!, coefficients!], uniforms);
  const outputs = [dispatcher.allocate([...x!.shape]), dispatcher.allocate([plan.channels]), dispatcher.allocate([plan.channels])];
  dispatcher.dispatch(inputGradient(activation), [plan.blocks, plan.groups, 1], outputs, [dy!, x!, coefficients!, partials], uniforms);
  dispatcher.release(partials);
  return outputs;
}

export const batchNormGradConfig: tf.KernelConfig = { kernelName: BATCH_NORM_GRAD, backendName: 'webgpu', kernelFunc: batchNormGrad };
