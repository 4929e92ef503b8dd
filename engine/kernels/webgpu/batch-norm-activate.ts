import type * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_ACTIVATE, type BatchNormAttrs } from '../../fused-batch-norm.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { ACTIVATIONS, normalization } from './batch-norm-wgsl.js';
import { CHAN_MERGE, momentSlices } from './channel-moments.js';
import { CHANNEL_BLOCK, channelSlices, ROW_LANES, SLICE_COORDINATES, SLICE_UNIFORMS, sliceUniforms } from './channel-slices.js';
import { dispatcherFor } from './dispatcher.js';
import type { ShaderProgram } from './program.js';

/**
 * AutoPruneBatchNormActivate on webgpu: y = act(γ·(x − μ)/√(σ² + ε) + β) with the batch's μ and σ²,
 * the ReLU or ReLU6 folded in, in two dispatches: the slices' moments (channel-moments.ts), then
 * this one. Each of its workgroups (64 channels × a group of rows) first combines every slice's
 * moments of its channels (the 4 row lanes each a contiguous quarter of the slices, then the lanes
 * in order: the same order in every workgroup, so the same bits), then normalises its rows. The
 * workgroups of the first row group write μ, σ² and the coefficients (μ, 1/√(σ² + ε), γ, β) that
 * the backward reads.
 */
function program(activation: BatchNormAttrs['activation']): ShaderProgram {
  return {
    name: `${BATCH_NORM_ACTIVATE}(${activation})`,
    outputs: ['y', 'mean', 'variance', 'coefficients'],
    inputs: ['x', 'partials', 'gamma', 'beta'],
    uniforms: [...SLICE_UNIFORMS, ['epsilon', 'f32']],
    body: `${SLICE_COORDINATES}${CHAN_MERGE}${normalization(activation)}
var<workgroup> counts: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> means: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> deviations: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> channel_coefficients: array<vec4<f32>, ${CHANNEL_BLOCK}>;
@compute @workgroup_size(${CHANNEL_BLOCK * ROW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = rows_of(wid, t, params.group_rows);
  let inside = s.channel < params.channels;
  var moments = Moments(0.0, 0.0, 0.0);
  if (inside) {
    let range = lane_slices(s.lane);
    for (var k = range.x; k < range.y; k++) { moments = merge(moments, slice_moments(k, s.channel)); }
  }
  counts[t] = moments.n;
  means[t] = moments.mean;
  deviations[t] = moments.m2;
  workgroupBarrier();
  if (s.lane == 0u && inside) {
    for (var lane = 1u; lane < ROW_LANES; lane++) {
      let at = t + lane * CHANNEL_BLOCK;
      moments = merge(moments, Moments(counts[at], means[at], deviations[at]));
    }
    let c = s.channel;
    let v = moments.m2 / moments.n;
    let k = vec4<f32>(moments.mean, inverseSqrt(v + params.epsilon), gamma[c], beta[c]);
    channel_coefficients[t] = k;
    if (wid.y == 0u) {
      mean[c] = k.x;
      variance[c] = v;
      let C = params.channels;
      coefficients[c] = k.x;
      coefficients[C + c] = k.y;
      coefficients[2u * C + c] = k.z;
      coefficients[3u * C + c] = k.w;
    }
  }
  workgroupBarrier();
  if (inside) {
    let k = channel_coefficients[t % CHANNEL_BLOCK];
    for (var r = s.begin + s.lane; r < s.end; r += ROW_LANES) {
      let i = r * params.channels + s.channel;
      y[i] = activate(preactivation(normalized(x[i], k), k));
    }
  }
}`,
  };
}

function batchNormActivate(args: KernelArgs): tf.TensorInfo[] {
  const { x, gamma, beta } = args.inputs as Record<'x' | 'gamma' | 'beta', tf.TensorInfo>;
  const { epsilon, activation } = args.attrs as unknown as BatchNormAttrs;
  if (!ACTIVATIONS.includes(activation)) throw new Error(`${BATCH_NORM_ACTIVATE}: unknown activation '${activation}'`);
  const plan = channelSlices(x!.shape);
  if (plan.rows * plan.channels === 0) throw new Error(`${BATCH_NORM_ACTIVATE}: no values to normalise (shape [${x!.shape}])`);
  const dispatcher = dispatcherFor(args.backend);
  const partials = momentSlices(dispatcher, x!, plan);
  const outputs = [
    dispatcher.allocate([...x!.shape]),
    dispatcher.allocate([plan.channels]),
    dispatcher.allocate([plan.channels]),
    dispatcher.allocate([4, plan.channels]),
  ];
  dispatcher.dispatch(program(activation), [plan.blocks, plan.groups, 1], outputs, [x!, partials, gamma!, beta!], [...sliceUniforms(plan), epsilon]);
  dispatcher.release(partials);
  return outputs;
}

export const batchNormActivateConfig: tf.KernelConfig = { kernelName: BATCH_NORM_ACTIVATE, backendName: 'webgpu', kernelFunc: batchNormActivate };
