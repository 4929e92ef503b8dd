import type * as tf from '@tensorflow/tfjs';
import { CHANNEL_MOMENTS } from '../../fused-batch-norm.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { CHANNEL_BLOCK, channelSlices, ROW_LANES, SLICE_COORDINATES } from './channel-slices.js';
import { dispatcherFor } from './dispatcher.js';
import { ELEMENTWISE_WORKGROUP, elementwiseGrid } from './elementwise.js';
import { LINEAR_WORKGROUP, type ShaderProgram } from './program.js';

/**
 * AutoPruneChannelMoments on webgpu: the mean and (biased) variance of each channel over every
 * other axis, as tf.moments gives them, in one read of x. Each slice of rows sums x − s and
 * (x − s)² with s the slice's first value of the channel (the shifted-data algorithm: no
 * cancellation when the mean is large against the spread) and turns them into the slice's mean and
 * sum of squared deviations; a second dispatch combines the slices with Chan et al.'s pairwise
 * update. tf.moments on webgpu takes a transpose of x and a one-workgroup-per-channel reduce for the
 * mean, then a subtraction, a square, another transpose and reduce for the variance.
 */
const SLICE_MOMENTS: ShaderProgram = {
  name: 'ChannelMomentsSlices',
  outputs: ['means', 'deviations'],
  inputs: ['x'],
  uniforms: [
    ['rows', 'u32'],
    ['channels', 'u32'],
    ['chunk', 'u32'],
    ['single', 'u32'],
  ],
  body: `${SLICE_COORDINATES}
var<workgroup> sums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> squares: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
@compute @workgroup_size(${CHANNEL_BLOCK * ROW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = slice_of(wid, t);
  let inside = s.channel < params.channels;
  var shift = 0.0;
  var sum = 0.0;
  var square = 0.0;
  if (inside) {
    shift = x[s.begin * params.channels + s.channel];
    for (var r = s.begin + s.lane; r < s.end; r += ROW_LANES) {
      let d = x[r * params.channels + s.channel] - shift;
      sum += d;
      square = fma(d, d, square);
    }
  }
  sums[t] = sum;
  squares[t] = square;
  workgroupBarrier();
  if (s.lane == 0u && inside) {
    for (var lane = 1u; lane < ROW_LANES; lane++) {
      sum += sums[t + lane * CHANNEL_BLOCK];
      square += squares[t + lane * CHANNEL_BLOCK];
    }
    let n = f32(s.end - s.begin);
    let deviation = max(square - sum * sum / n, 0.0);
    let at = wid.y * params.channels + s.channel;
    means[at] = shift + sum / n;
    // With a single slice, the variance itself.
    deviations[at] = select(deviation, deviation / n, params.single == 1u);
  }
}`,
};

const COMBINE_SLICES: ShaderProgram = {
  name: 'ChannelMomentsCombine',
  outputs: ['mean', 'variance'],
  inputs: ['means', 'deviations'],
  uniforms: [
    ['rows', 'u32'],
    ['channels', 'u32'],
    ['chunk', 'u32'],
    ['slices', 'u32'],
  ],
  body: `${LINEAR_WORKGROUP}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = workgroup_index(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (c >= params.channels) { return; }
  var n = 0.0;
  var m = 0.0;
  var m2 = 0.0;
  for (var s = 0u; s < params.slices; s++) {
    let nb = f32(min(params.chunk, params.rows - s * params.chunk));
    let delta = means[s * params.channels + c] - m;
    let total = n + nb;
    m += delta * nb / total;
    m2 += deviations[s * params.channels + c] + delta * delta * n * nb / total;
    n = total;
  }
  mean[c] = m;
  variance[c] = m2 / n;
}`,
};

function channelMoments(args: KernelArgs): tf.TensorInfo[] {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const dispatcher = dispatcherFor(args.backend);
  const plan = channelSlices(x.shape);
  const mean = dispatcher.allocate([plan.channels]);
  const variance = dispatcher.allocate([plan.channels]);
  if (plan.rows * plan.channels === 0) throw new Error(`${CHANNEL_MOMENTS}: no values to take moments of (shape [${x.shape}])`);
  const grid = [plan.blocks, plan.slices, 1] as const;
  if (plan.slices === 1) {
    dispatcher.dispatch(SLICE_MOMENTS, grid, [mean, variance], [x], [plan.rows, plan.channels, plan.chunk, 1]);
    return [mean, variance];
  }
  const means = dispatcher.allocate([plan.slices, plan.channels]);
  const deviations = dispatcher.allocate([plan.slices, plan.channels]);
  dispatcher.dispatch(SLICE_MOMENTS, grid, [means, deviations], [x], [plan.rows, plan.channels, plan.chunk, 0]);
  dispatcher.dispatch(
    COMBINE_SLICES,
    elementwiseGrid(plan.channels),
    [mean, variance],
    [means, deviations],
    [plan.rows, plan.channels, plan.chunk, plan.slices],
  );
  dispatcher.release(means);
  dispatcher.release(deviations);
  return [mean, variance];
}

export const channelMomentsConfig: tf.KernelConfig = { kernelName: CHANNEL_MOMENTS, backendName: 'webgpu', kernelFunc: channelMoments };
