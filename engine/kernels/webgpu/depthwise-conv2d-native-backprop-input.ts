import * as tf from '@tensorflow/tfjs';
import { depthwiseBackpropInputInfo } from '../conv-info.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { elementwiseGrid, elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/**
 * DepthwiseConv2dNativeBackpropInput on webgpu: one thread per input-gradient element, gathering
 * dx[n,ih,iw,c] = Σ_{m,kh,kw} dy[n, oh, ow, c·M + m] · w[kh,kw,c,m] over the output positions
 * (oh, ow) whose window covers (ih, iw): oh·sh + kh·dh − top = ih. The stride's divisibility test
 * skips the taps that land between outputs instead of iterating over a zero-inserted dy. Adjacent
 * threads take adjacent channels, so the reads of dy and of the filter coalesce. The work is
 * memory-bound (KH·KW·M multiply-adds per element read), so no tiling is needed.
 */
const PROGRAM: ShaderProgram = {
  name: 'DepthwiseConv2dBackpropInput',
  outputs: ['result'],
  inputs: ['dy', 'weights'],
  uniforms: [
    ['size', 'u32'],
    ['inChannels', 'u32'],
    ['multiplier', 'u32'],
    ['inHeight', 'u32'],
    ['inWidth', 'u32'],
    ['outHeight', 'i32'],
    ['outWidth', 'i32'],
    ['filterHeight', 'u32'],
    ['filterWidth', 'u32'],
    ['strideHeight', 'i32'],
    ['strideWidth', 'i32'],
    ['dilationHeight', 'i32'],
    ['dilationWidth', 'i32'],
    ['padTop', 'i32'],
    ['padLeft', 'i32'],
  ],
  body: elementwiseShader(`  let c = i % params.inChannels;
  let iw = i32((i / params.inChannels) % params.inWidth);
  let ih = i32((i / (params.inChannels * params.inWidth)) % params.inHeight);
  let n = i / (params.inChannels * params.inWidth * params.inHeight);
  let outChannels = params.inChannels * params.multiplier;
  var sum = 0.0;
  for (var kh = 0u; kh < params.filterHeight; kh++) {
    let rowOffset = ih + params.padTop - i32(kh) * params.dilationHeight;
    if (rowOffset < 0 || rowOffset % params.strideHeight != 0) { continue; }
    let oh = rowOffset / params.strideHeight;
    if (oh >= params.outHeight) { continue; }
    for (var kw = 0u; kw < params.filterWidth; kw++) {
      let colOffset = iw + params.padLeft - i32(kw) * params.dilationWidth;
      if (colOffset < 0 || colOffset % params.strideWidth != 0) { continue; }
      let ow = colOffset / params.strideWidth;
      if (ow >= params.outWidth) { continue; }
      let dyBase = ((n * u32(params.outHeight) + u32(oh)) * u32(params.outWidth) + u32(ow)) * outChannels + c * params.multiplier;
      let filterBase = (kh * params.filterWidth + kw) * outChannels + c * params.multiplier;
      for (var m = 0u; m < params.multiplier; m++) { sum = fma(dy[dyBase + m], weights[filterBase + m], sum); }
    }
  }
  result[i] = sum;`),
};

function depthwiseConv2dNativeBackpropInput(args: KernelArgs): tf.TensorInfo {
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const { inputShape } = attrs;
  const info = depthwiseBackpropInputInfo(filter, attrs);
  const dispatcher = dispatcherFor(args.backend);
  const size = inputShape.reduce((a, b) => a * b, 1);
  const result = dispatcher.allocate([...inputShape]);
  if (size === 0) return result;
  dispatcher.dispatch(
    PROGRAM,
    elementwiseGrid(size),
    [result],
    [dy, filter],
    [
      size,
      info.inChannels,
      info.outChannels / info.inChannels,
      info.inHeight,
      info.inWidth,
      info.outHeight,
      info.outWidth,
      info.filterHeight,
      info.filterWidth,
      info.strideHeight,
      info.strideWidth,
      info.dilationHeight,
      info.dilationWidth,
      info.padInfo.top,
      info.padInfo.left,
    ],
  );
  return result;
}

/**
 * Replaces the package's kernel, which gathers the same way but takes no dilation (a dilated
 * depthwise layer got the undilated gradient) and tests the stride with float division.
 */
export const depthwiseConv2dNativeBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropInput,
  backendName: 'webgpu',
  kernelFunc: depthwiseConv2dNativeBackpropInput,
};
