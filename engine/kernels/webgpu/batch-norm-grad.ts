import type * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_GRAD, type BatchNormAttrs } from '../../fused-batch-norm.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { ACTIVATIONS, normalization } from './batch-norm-wgsl.js';
import { CHANNEL_BLOCK, channelSlices, ROW_LANES, SLICE_COORDINATES } from './channel-slices.js';
import { dispatcherFor } from './dispatcher.js';
import { ELEMENTWISE_WORKGROUP, elementwiseGrid } from './elementwise.js';
import { LINEAR_WORKGROUP, type ShaderProgram } from './program.js';

/**
 * AutoPruneBatchNormGrad on webgpu: [dx, dγ, dβ] of act(γ·x̂ + β) in training mode (formulas in
 * engine/fused-batch-norm.ts), in three dispatches: the per-channel sums Σg and Σg·x̂ by slices of
 * rows (the activation's mask applied to dy on the way), the slices' sums added, and dx element by
 * element. The composition it replaces tiles γ-sized tensors up to activation size and transposes
 * the activation for every channel sum. (The sums travel packed, [Σg | Σg·x̂] per slice, so that dx's
 * kernel stays within WebGPU's default of 8 storage buffers per shader.)
 */
function sliceSums(activation: BatchNormAttrs['activation']): ShaderProgram {
  return {
    name: `BatchNormGradSlices(${activation})`,
    outputs: ['sums'],
    inputs: ['dy', 'x', 'mean', 'variance', 'gamma', 'beta'],
    uniforms: [
      ['rows', 'u32'],
      ['channels', 'u32'],
      ['chunk', 'u32'],
      ['epsilon', 'f32'],
    ],
    body: `${SLICE_COORDINATES}${normalization(activation)}
var<workgroup> gradientSums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> productSums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
@compute @workgroup_size(${CHANNEL_BLOCK * ROW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = slice_of(wid, t);
  let inside = s.channel < params.channels;
  var gradient = 0.0;
  var product = 0.0;
  if (inside) {
    for (var r = s.begin + s.lane; r < s.end; r += ROW_LANES) {
      let i = r * params.channels + s.channel;
      let xhat = normalized(x[i], s.channel);
      let g = select(0.0, dy[i], passes(preactivation(xhat, s.channel)));
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
    sums[2u * wid.y * params.channels + s.channel] = gradient;
    sums[(2u * wid.y + 1u) * params.channels + s.channel] = product;
  }
}`,
  };
}

const ADD_SLICES: ShaderProgram = {
  name: 'BatchNormGradAddSlices',
  outputs: ['dbeta', 'dgamma', 'sums'],
  inputs: ['partials'],
  uniforms: [
    ['channels', 'u32'],
    ['slices', 'u32'],
  ],
  body: `${LINEAR_WORKGROUP}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = workgroup_index(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (c >= params.channels) { return; }
  var b = 0.0;
  var g = 0.0;
  for (var s = 0u; s < params.slices; s++) {
    b += partials[2u * s * params.channels + c];
    g += partials[(2u * s + 1u) * params.channels + c];
  }
  dbeta[c] = b;
  dgamma[c] = g;
  sums[c] = b;
  sums[params.channels + c] = g;
}`,
};

function inputGradient(activation: BatchNormAttrs['activation']): ShaderProgram {
  return {
    name: `BatchNormGradInput(${activation})`,
    outputs: ['dx'],
    inputs: ['dy', 'x', 'mean', 'variance', 'gamma', 'beta', 'sums'],
    uniforms: [
      ['size', 'u32'],
      ['channels', 'u32'],
      ['rows', 'f32'],
      ['epsilon', 'f32'],
    ],
    body: `${LINEAR_WORKGROUP}${normalization(activation)}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroup_index(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (i >= params.size) { return; }
  let c = i % params.channels;
  let xhat = normalized(x[i], c);
  let g = select(0.0, dy[i], passes(preactivation(xhat, c)));
  dx[i] = gamma[c] * inverse_deviation(c) * (g - (sums[c] + xhat * sums[params.channels + c]) / params.rows);
}`,
  };
}

function batchNormGrad(args: KernelArgs): tf.TensorInfo[] {
  const { dy, x, mean, variance, gamma, beta } = args.inputs as Record<'dy' | 'x' | 'mean' | 'variance' | 'gamma' | 'beta', tf.TensorInfo>;
  const { epsilon, activation } = args.attrs as unknown as BatchNormAttrs;
  if (!ACTIVATIONS.includes(activation)) throw new Error(`${BATCH_NORM_GRAD}: unknown activation '${activation}'`);
  const dispatcher = dispatcherFor(args.backend);
  const plan = channelSlices(x!.shape);
  if (plan.rows * plan.channels === 0) throw new Error(`${BATCH_NORM_GRAD}: no values (shape [${x!.shape}])`);
  const statistics = [mean!, variance!, gamma!, beta!];
  const partials = dispatcher.allocate([plan.slices, 2, plan.channels]);
  dispatcher.dispatch(
    sliceSums(activation),
    [plan.blocks, plan.slices, 1],
    [partials],
    [dy!, x!, ...statistics],
    [plan.rows, plan.channels, plan.chunk, epsilon],
  );
  const dbeta = dispatcher.allocate([plan.channels]);
  const dgamma = dispatcher.allocate([plan.channels]);
  const sums = dispatcher.allocate([2, plan.channels]);
  dispatcher.dispatch(ADD_SLICES, elementwiseGrid(plan.channels), [dbeta, dgamma, sums], [partials], [plan.channels, plan.slices]);
  const size = plan.rows * plan.channels;
  const dx = dispatcher.allocate([...x!.shape]);
  dispatcher.dispatch(inputGradient(activation), elementwiseGrid(size), [dx], [dy!, x!, ...statistics, sums], [size, plan.channels, plan.rows, epsilon]);
  dispatcher.release(partials);
  dispatcher.release(sums);
  return [dx, dgamma, dbeta];
}

export const batchNormGradConfig: tf.KernelConfig = { kernelName: BATCH_NORM_GRAD, backendName: 'webgpu', kernelFunc: batchNormGrad };
