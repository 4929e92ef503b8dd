import * as tf from '@tensorflow/tfjs';
import { conv2DBackpropFilterInfo } from '../conv-info.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { WEBGPU_F16_FLAG } from './device.js';
import { dispatcherFor } from './dispatcher.js';
import type { ShaderProgram } from './program.js';
import { dispatchSplitK, splitCount } from './split-k-reduce.js';

/**
 * Conv2DBackpropFilter on webgpu as a tiled implicit GEMM with split-K.
 *
 * dW[kh,kw,ci,co] = Σ_{n,oh,ow} x[n, oh·sh + kh·dh − top, ow·sw + kw·dw − left, ci] · dy[n,oh,ow,co]
 * is C = A·B with rows r = (kh,kw,ci) (M = KH·KW·Cin), columns co (N = Cout) and the reduction
 * over k = (n,oh,ow) (K = N·OH·OW): A[r,k] is x gathered on the fly (never materialised), B = dy
 * read as a K×Cout matrix, and C is dW in its own layout. Each 256-thread workgroup computes a
 * 64×64 tile of C, 4×4 per thread, staging 16-deep slices of A and B in workgroup memory. K is far
 * longer than M·N for the early layers (ResNet-50's first conv: M·N = 9,408, K = 802,816 at batch
 * 64), so the workgroups along z each take one slice of K and write a partial tile; a second
 * dispatch (split-k-reduce.ts) sums the slices. The package's kernel runs one thread per weight
 * over all of K.
 */
const TILE = 64;
const DEPTH = 16;
/** The shortest share of K worth a workgroup of its own. */
const MIN_SPLIT = 8 * DEPTH;

/**
 * With `half`, the workgroup tiles hold fp16 (half the workgroup memory and its bandwidth; the
 * device needs 'shader-f16'), and the products accumulate in fp32.
 */
function program(half: boolean): ShaderProgram {
  const tile = half ? 'f16' : 'f32';
  return {
    name: `Conv2DBackpropFilterSplitK(${tile})`,
    enables: half ? ['f16'] : [],
    outputs: ['result'],
    inputs: ['x', 'dy'],
    uniforms: [
      ['rows', 'u32'],
      ['cols', 'u32'],
      ['depth', 'u32'],
      ['chunk', 'u32'],
      ['inChannels', 'u32'],
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
const TILE = ${TILE}u;
const DEPTH = ${DEPTH}u;
var<workgroup> tileA: array<${tile}, ${TILE * DEPTH}>; // [DEPTH][TILE]: A[r0 + i, k0 + kk]
var<workgroup> tileB: array<${tile}, ${TILE * DEPTH}>; // [DEPTH][TILE]: B[k0 + kk, c0 + j]

// A[r, k]: the input pixel that weight row r meets at output position k (0 in the padding).
fn loadA(r: u32, k: u32, kEnd: u32) -> f32 {
  if (r >= params.rows || k >= kEnd) { return 0.0; }
  let ci = r % params.inChannels;
  let tap = r / params.inChannels;
  let kw = tap % params.filterWidth;
  let kh = tap / params.filterWidth;
  let ow = k % params.outWidth;
  let position = k / params.outWidth;
  let oh = position % params.outHeight;
  let n = position / params.outHeight;
  let ih = i32(oh * params.strideHeight + kh * params.dilationHeight) - params.padTop;
  let iw = i32(ow * params.strideWidth + kw * params.dilationWidth) - params.padLeft;
  if (ih < 0 || ih >= params.inHeight || iw < 0 || iw >= params.inWidth) { return 0.0; }
  return x[((n * u32(params.inHeight) + u32(ih)) * u32(params.inWidth) + u32(iw)) * params.inChannels + ci];
}

fn loadB(k: u32, c: u32, kEnd: u32) -> f32 {
  if (k >= kEnd || c >= params.cols) { return 0.0; }
  return dy[k * params.cols + c];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let c0 = wid.x * TILE;
  let r0 = wid.y * TILE;
  let kBegin = wid.z * params.chunk;
  let kEnd = min(params.depth, kBegin + params.chunk);
  let tx = t % 16u;
  let ty = t / 16u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = kBegin; k0 < kEnd; k0 += DEPTH) {
    for (var j = 0u; j < 4u; j++) {
      let e = t + 256u * j;
      let lane = e % TILE;
      let kk = e / TILE;
      tileA[e] = ${tile}(loadA(r0 + lane, k0 + kk, kEnd));
      tileB[e] = ${tile}(loadB(k0 + kk, c0 + lane, kEnd));
    }
    workgroupBarrier();
    for (var kk = 0u; kk < DEPTH; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = f32(tileA[kk * TILE + ty + 16u * i]);
        b[i] = f32(tileB[kk * TILE + tx + 16u * i]);
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  // Slice wid.z of the partial results; with one slice, the filter gradient itself.
  let base = wid.z * params.rows * params.cols;
  for (var i = 0u; i < 4u; i++) {
    let r = r0 + ty + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + tx + 16u * j;
      if (r < params.rows && c < params.cols) { result[base + r * params.cols + c] = acc[i][j]; }
    }
  }
}`,
  };
}

function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const info = conv2DBackpropFilterInfo(x, args.attrs as unknown as tf.Conv2DBackpropFilterAttrs);
  const dispatcher = dispatcherFor(args.backend);
  const half = tf.env().getBool(WEBGPU_F16_FLAG) && dispatcher.features.has('shader-f16');
  const rows = info.filterHeight * info.filterWidth * info.inChannels;
  const cols = info.outChannels;
  const depth = info.batchSize * info.outHeight * info.outWidth;
  const result = dispatcher.allocate([...info.filterShape]);
  if (rows * cols === 0) return result;
  const tiles = Math.ceil(cols / TILE) * Math.ceil(rows / TILE);
  const chunk = Math.ceil(Math.ceil(depth / splitCount(tiles, depth, MIN_SPLIT)) / DEPTH) * DEPTH;
  const splits = Math.max(1, Math.ceil(depth / chunk));
  const uniforms = [
    rows,
    cols,
    depth,
    chunk,
    info.inChannels,
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
  const grid = [Math.ceil(cols / TILE), Math.ceil(rows / TILE), splits] as const;
  dispatchSplitK(dispatcher, { program: program(half), grid, inputs: [x, dy], uniforms }, result, rows * cols, splits);
  return result;
}

/** Replaces the package's one-thread-per-weight kernel. */
export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'webgpu',
  kernelFunc: conv2DBackpropFilter,
};
