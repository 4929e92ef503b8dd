import * as tf from '@tensorflow/tfjs';
import { conv2DBackpropInputInfo } from '../conv-info.js';
import { composite } from './composite.js';
import { cropNegative, dilateSpatial, explicitPadding, transposedConvPads } from './conv-geometry.js';
import type { KernelArgs } from './kernel-args.js';

/**
 * dx = the gradient convolved with the filter rotated by 180° and its channel axes swapped, after
 * inserting stride−1 zeros between gradient samples.
 */
function conv2DBackpropInput(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const convInfo = conv2DBackpropInputInfo(filter, args.attrs as unknown as tf.Conv2DBackpropInputAttrs);

  return composite(backend, (run) => {
    const rotated = run(tf.Reverse, { x: filter }, { dims: [0, 1] });
    const swapped = run(tf.Transpose, { x: rotated }, { perm: [0, 1, 3, 2] });
    const dilated = dilateSpatial(run, dy, convInfo.strideHeight, convInfo.strideWidth);
    const { x: input, pads } = cropNegative(run, dilated, transposedConvPads(convInfo));
    return run(
      tf.Conv2D,
      { x: input, filter: swapped },
      {
        strides: [1, 1],
        dilations: [1, 1],
        pad: explicitPadding(pads),
        dataFormat: 'NHWC',
      },
    );
  });
}

/**
 * Replaces the wasm backend's own input gradient of conv2d, a naive loop several times slower than
 * this XNNPACK convolution.
 */
export const conv2DBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropInput,
};
