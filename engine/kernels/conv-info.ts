import * as tf from '@tensorflow/tfjs';
import { shape4 } from './wasm/kernel-args.js';

/**
 * The geometry (tfjs's Conv2DInfo) of the convolution-gradient kernels' inputs and attributes, as every
 * backend's kernels need it; autoprune's kernels take NHWC data only.
 */

function requireChannelsLast(info: tf.backend_util.Conv2DInfo, kernel: string): tf.backend_util.Conv2DInfo {
  if (info.dataFormat !== 'channelsLast') throw new Error(`autoprune's ${kernel} supports only NHWC data, got ${info.dataFormat}`);
  return info;
}

export function conv2DBackpropFilterInfo(x: tf.TensorInfo, attrs: tf.Conv2DBackpropFilterAttrs): tf.backend_util.Conv2DInfo {
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  const format = tf.backend_util.convertConv2DDataFormat(dataFormat);
  return requireChannelsLast(
    tf.backend_util.computeConv2DInfo(shape4(x), filterShape, strides, 1, pad, dimRoundingMode, false, format),
    tf.Conv2DBackpropFilter,
  );
}

export function conv2DBackpropInputInfo(filter: tf.TensorInfo, attrs: tf.Conv2DBackpropInputAttrs): tf.backend_util.Conv2DInfo {
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs;
  const format = tf.backend_util.convertConv2DDataFormat(dataFormat);
  return requireChannelsLast(
    tf.backend_util.computeConv2DInfo(inputShape, shape4(filter), strides, 1, pad, dimRoundingMode, false, format),
    tf.Conv2DBackpropInput,
  );
}

export function depthwiseBackpropFilterInfo(x: tf.TensorInfo, attrs: tf.DepthwiseConv2dNativeBackpropFilterAttrs): tf.backend_util.Conv2DInfo {
  const { strides, dilations, pad, dimRoundingMode, filterShape } = attrs;
  return tf.backend_util.computeConv2DInfo(shape4(x), filterShape, strides, dilations, pad, dimRoundingMode, true);
}

export function depthwiseBackpropInputInfo(filter: tf.TensorInfo, attrs: tf.DepthwiseConv2dNativeBackpropInputAttrs): tf.backend_util.Conv2DInfo {
  const { strides, dilations, pad, dimRoundingMode, inputShape } = attrs;
  return tf.backend_util.computeConv2DInfo(inputShape, shape4(filter), strides, dilations, pad, dimRoundingMode, true);
}
