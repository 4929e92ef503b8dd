import * as tf from '@tensorflow/tfjs';
import { depthwiseBackpropFilterInfo } from '../conv-info.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import type { ShaderProgram } from './program.js';
import { dispatchSplitK, splitCount } from './split-k-reduce.js';

/**
 * DepthwiseConv2dNativeBackpropFilter on webgpu with split-K over the output positions.
 *
 * dW[kh,kw,c,m] = Σ_{n,oh,ow} x[n, oh·sh + kh·dh − top, ow·sw + kw·dw − left, c] · dy[n,oh,ow,c·M + m].
 * The filter is tiny (KH·KW·C·M: 288 weights for a 3×3 filter over 32 channels) and the reduction
 * long, so the package's one thread per weight leaves a GPU idle. Here a thread owns one output
 * channel o = c·M + m and keeps all KH·KW taps in registers: it reads dy[n,oh,ow,o] once and the
 * KH·KW input pixels under it (adjacent threads read adjacent channels), and the workgroups along y
 * each take one slice of the positions, summed by a second dispatch.
 */
const WORKGROUP = 64;
/** The fewest output positions worth a workgroup of their own. */
const MIN_SPLIT = 64;

function program(taps: number): ShaderProgram {
  return {
    name: `DepthwiseConv2dBackpropFilterSplitK(${taps} taps)`,
    outputs: ['result'],
    inputs: ['x', 'dy'],
    uniforms: [
      ['outChannels', 'u32'],
      ['multiplier', 'u32'],
      ['inChannels', 'u32'],
      ['positions', 'u32'],
      ['chunk', 'u32'],
      ['filterWidth', 'u32'],
      ['outHeight', 'u32'],
      ['outWidth', 'u32'],
      ['inHeight', 'i32'],
      ['inWidth', 'i32'],
      ['strideHeight', 'u32'],
      ['strideWidth', 'u32'],
      ['dilationHeight', 'u32'],
      ['dilationWidth', 'u32'],
      ['padTop', 'i32'],
      ['padLeft', 'i32'],
    ],
    body: `
const TAPS = ${taps}u;
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let o = wid.x * ${WORKGROUP}u + t;
  if (o >= params.outChannels) { return; }
  let c = o / params.multiplier;
  let begin = wid.y * params.chunk;
  let end = min(params.positions, begin + params.chunk);
  var acc: array<f32, ${taps}>;
  for (var p = begin; p < end; p++) {
    let g = dy[p * params.outChannels + o];
    let ow = p % params.outWidth;
    let oh = (p / params.outWidth) % params.outHeight;
    let n = p / (params.outWidth * params.outHeight);
    for (var tap = 0u; tap < TAPS; tap++) {
      let kh = tap / params.filterWidth;
      let kw = tap % params.filterWidth;
      let ih = i32(oh * params.strideHeight + kh * params.dilationHeight) - params.padTop;
      let iw = i32(ow * params.strideWidth + kw * params.dilationWidth) - params.padLeft;
      if (ih >= 0 && ih < params.inHeight && iw >= 0 && iw < params.inWidth) {
        acc[tap] = fma(x[((n * u32(params.inHeight) + u32(ih)) * u32(params.inWidth) + u32(iw)) * params.inChannels + c], g, acc[tap]);
      }
    }
  }
  // Slice wid.y of the partial results, in the filter's layout [kh, kw, c, m] = tap·(C·M) + o.
  let base = wid.y * TAPS * params.outChannels;
  for (var tap = 0u; tap < TAPS; tap++) { result[base + tap * params.outChannels + o] = acc[tap]; }
}`,
  };
}

function depthwiseConv2dNativeBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const { filterShape } = attrs;
  const info = depthwiseBackpropFilterInfo(x, attrs);
  const dispatcher = dispatcherFor(args.backend);
  const taps = info.filterHeight * info.filterWidth;
  const outChannels = info.outChannels;
  const positions = info.batchSize * info.outHeight * info.outWidth;
  const size = taps * outChannels;
  const result = dispatcher.allocate([...filterShape]);
  if (size === 0) return result;
  const blocks = Math.ceil(outChannels / WORKGROUP);
  const chunk = Math.ceil(positions / splitCount(blocks, positions, MIN_SPLIT));
  const splits = Math.max(1, Math.ceil(positions / chunk));
  const uniforms = [
    outChannels,
    outChannels / info.inChannels,
    info.inChannels,
    positions,
    chunk,
    info.filterWidth,
    info.outHeight,
    info.outWidth,
    info.inHeight,
    info.inWidth,
    info.strideHeight,
    info.strideWidth,
    info.dilationHeight,
    info.dilationWidth,
    info.padInfo.top,
    info.padInfo.left,
  ];
  const grid = [blocks, splits, 1] as const;
  dispatchSplitK(dispatcher, { program: program(taps), grid, inputs: [x, dy], uniforms }, result, size, splits);
  return result;
}

/** Replaces the package's one-thread-per-weight kernel. */
export const depthwiseConv2dNativeBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
  backendName: 'webgpu',
  kernelFunc: depthwiseConv2dNativeBackpropFilter,
};
