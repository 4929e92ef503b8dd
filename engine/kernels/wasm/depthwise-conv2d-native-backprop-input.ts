import * as tf from '@tensorflow/tfjs';
import { depthwiseBackpropInputInfo } from '../conv-info.js';
import { composite } from './composite.js';
import { cropNegative, dilateSpatial, explicitPadding, transposedConvPads } from './conv-geometry.js';
import { type KernelArgs, shape4 } from './kernel-args.js';

/**
 * Like the conv2d input gradient, per channel: a depthwise convolution of the zero-inserted gradient
 * with the rotated filter; with a channel multiplier M the M gradient channels of each input
 * channel are convolved separately and summed.
 */
function depthwiseConv2dNativeBackpropInput(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const { inputShape } = attrs;
  const [filterHeight, filterWidth, channels, multiplier] = shape4(filter);
  const convInfo = depthwiseBackpropInputInfo(filter, attrs);

  return composite(backend, (run) => {
    const perChannel = run(tf.Reshape, { x: filter }, { shape: [filterHeight, filterWidth, channels * multiplier, 1] });
    const rotated = run(tf.Reverse, { x: perChannel }, { dims: [0, 1] });
    const dilated = dilateSpatial(run, dy, convInfo.strideHeight, convInfo.strideWidth);
    const { x: input, pads } = cropNegative(run, dilated, transposedConvPads(convInfo));
    const dx = run(
      tf.DepthwiseConv2dNative,
      { x: input, filter: rotated },
      {
        strides: [1, 1],
        dilations: [convInfo.dilationHeight, convInfo.dilationWidth],
        pad: explicitPadding(pads),
      },
    );
    if (multiplier === 1) return dx;
    const [n, h, w] = inputShape;
    const split = run(tf.Reshape, { x: dx }, { shape: [n, h, w, channels, multiplier] });
    return run(tf.Sum, { x: split }, { axis: [4], keepDims: false });
  });
}

/** The input gradient of depthwiseConv2d, which tfjs-backend-wasm 4.22 lacks (MobileNetV2 trains through it). */
export const depthwiseConv2dNativeBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropInput,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropInput,
};
