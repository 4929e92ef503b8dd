import type * as tf from '@tensorflow/tfjs';
import { CHANNEL_BLOCK, type ChannelSlices, ROW_LANES, SLICE_COORDINATES, SLICE_UNIFORMS, sliceUniforms } from './channel-slices.js';
import type { KernelDispatcher } from './dispatcher.js';
import type { ShaderProgram } from './program.js';

/**
 * The first pass of the batch-norm forward (batch-norm-activate.ts): each slice of rows' moments of
 * each channel, in one read of x, as partials [slices, 2, C]: the slice's mean and its sum of
 * squared deviations. A slice sums x − s and (x − s)² with s the slice's first value of the channel
 * (the shifted-data algorithm: no cancellation when the mean is large against the spread). The
 * consuming pass combines the slices with Chan et al.'s pairwise update (CHAN_MERGE). tf.moments on
 * webgpu takes a transpose of x and a one-workgroup-per-channel reduce for the mean, then a
 * subtraction, a square, another transpose and reduce for the variance.
 */
const SLICE_MOMENTS: ShaderProgram = {
  name: 'ChannelMomentsSlices',
  outputs: ['partials'],
  inputs: ['x'],
  uniforms: SLICE_UNIFORMS,
  body: `${SLICE_COORDINATES}
var<workgroup> sums: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
var<workgroup> squares: array<f32, ${CHANNEL_BLOCK * ROW_LANES}>;
@compute @workgroup_size(${CHANNEL_BLOCK * ROW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = rows_of(wid, t, params.chunk);
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
    let at = 2u * wid.y * params.channels + s.channel;
    partials[at] = shift + sum / n;
    partials[at + params.channels] = max(square - sum * sum / n, 0.0);
  }
}`,
};

/**
 * WGSL: Chan et al.'s pairwise update of (count, mean, sum of squared deviations), the order of
 * merging fixed by the caller; merging with an empty side gives the other unchanged.
 */
export const CHAN_MERGE = `
struct Moments { n: f32, mean: f32, m2: f32 }
fn merge(a: Moments, b: Moments) -> Moments {
  if (b.n == 0.0) { return a; }
  if (a.n == 0.0) { return b; }
  let total = a.n + b.n;
  let delta = b.mean - a.mean;
  return Moments(total, a.mean + delta * b.n / total, a.m2 + b.m2 + delta * delta * a.n * b.n / total);
}
fn slice_moments(k: u32, c: u32) -> Moments {
  let at = 2u * k * params.channels + c;
  return Moments(f32(min(params.chunk, params.rows - k * params.chunk)), partials[at], partials[at + params.channels]);
}`;

/** Records the first pass over x ([R..., C], R·C > 0); returns the partials for the second. */
export function momentSlices(dispatcher: KernelDispatcher, x: tf.TensorInfo, plan: ChannelSlices): tf.TensorInfo {
  const partials = dispatcher.allocate([plan.slices, 2, plan.channels]);
  dispatcher.dispatch(SLICE_MOMENTS, [plan.blocks, plan.slices, 1], [partials], [x], sliceUniforms(plan));
  return partials;
}
