import * as tf from '@tensorflow/tfjs';
import { depthwiseBackpropFilterInfo } from '../conv-info.js';
import { composite } from './composite.js';
import { cropNegative, explicitPadding, type Pads } from './conv-geometry.js';
import type { KernelArgs } from './kernel-args.js';

/**
 * dW[kh,kw,c,m] = Σ_{n,i,j} x[n, i·sh + kh·dh − top, j·sw + kw·dw − left, c] · dy[n,i,j,c·M+m].
 * Folding the batch into the channels makes this one depthwise convolution of x (N·C channels)
 * with dy as an OH×OW filter dilated by the stride; the batch is then summed out.
 */
function depthwiseConv2dNativeBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const { filterShape } = attrs;
  const convInfo = depthwiseBackpropFilterInfo(x, attrs);
  const [filterHeight, filterWidth, channels, multiplier] = filterShape;
  const { batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth, padInfo } = convInfo;

  return composite(backend, (run) => {
    // As in the conv2d filter gradient: exactly KH×KW outputs per folded channel.
    const wanted: Pads = {
      top: padInfo.top,
      left: padInfo.left,
      bottom: convInfo.effectiveFilterHeight + (outHeight - 1) * strideHeight - inHeight - padInfo.top,
      right: convInfo.effectiveFilterWidth + (outWidth - 1) * strideWidth - inWidth - padInfo.left,
    };
    const xMoved = run(tf.Transpose, { x }, { perm: [1, 2, 0, 3] });
    const xFolded = run(tf.Reshape, { x: xMoved }, { shape: [1, inHeight, inWidth, batchSize * channels] });
    const { x: input, pads } = cropNegative(run, xFolded, wanted);
    const dyMoved = run(tf.Transpose, { x: dy }, { perm: [1, 2, 0, 3] });
    const dyFolded = run(tf.Reshape, { x: dyMoved }, { shape: [outHeight, outWidth, batchSize * channels, multiplier] });
    const perImage = run(
      tf.DepthwiseConv2dNative,
      { x: input, filter: dyFolded },
      {
        strides: [dilationHeight, dilationWidth],
        dilations: [strideHeight, strideWidth],
        pad: explicitPadding(pads),
      },
    );
    const split = run(tf.Reshape, { x: perImage }, { shape: [filterHeight, filterWidth, batchSize, channels * multiplier] });
    const summed = run(tf.Sum, { x: split }, { axis: [2], keepDims: false });
    return run(tf.Reshape, { x: summed }, { shape: filterShape });
  });
}

/** The filter gradient of depthwiseConv2d, which tfjs-backend-wasm 4.22 lacks (MobileNetV2 trains through it). */
export const depthwiseConv2dNativeBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropFilter,
};
