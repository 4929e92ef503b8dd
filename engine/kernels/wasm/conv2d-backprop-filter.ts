import * as tf from '@tensorflow/tfjs';
import { conv2DBackpropFilterInfo } from '../conv-info.js';
import { composite } from './composite.js';
import { cropNegative, explicitPadding, type Pads } from './conv-geometry.js';
import type { KernelArgs } from './kernel-args.js';

/**
 * dW[kh,kw,ci,co] = Σ_{n,i,j} x[n, i·sh + kh − top, j·sw + kw − left, ci] · dy[n,i,j,co].
 * With batch and channels swapped on both operands this is a stride-1 forward convolution of x
 * (Cin images, N channels) with dy (an OH×OW filter from N to Cout channels) dilated by the
 * stride, which XNNPACK runs as one GEMM instead of the naive loops of the cpu backend.
 */
function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const convInfo = conv2DBackpropFilterInfo(x, args.attrs as unknown as tf.Conv2DBackpropFilterAttrs);
  const { filterHeight, filterWidth, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, padInfo } = convInfo;

  return composite(backend, (run) => {
    // The forward padding on top/left; bottom/right padded or cropped to give exactly KH×KW outputs.
    const wanted: Pads = {
      top: padInfo.top,
      left: padInfo.left,
      bottom: filterHeight + (outHeight - 1) * strideHeight - inHeight - padInfo.top,
      right: filterWidth + (outWidth - 1) * strideWidth - inWidth - padInfo.left,
    };
    const xSwapped = run(tf.Transpose, { x }, { perm: [3, 1, 2, 0] });
    const { x: xCropped, pads } = cropNegative(run, xSwapped, wanted);
    const dySwapped = run(tf.Transpose, { x: dy }, { perm: [1, 2, 0, 3] });
    const grad = run(
      tf.Conv2D,
      { x: xCropped, filter: dySwapped },
      {
        strides: [1, 1],
        dilations: [strideHeight, strideWidth],
        pad: explicitPadding(pads),
        dataFormat: 'NHWC',
      },
    );
    return run(tf.Transpose, { x: grad }, { perm: [1, 2, 0, 3] });
  });
}

/** The filter gradient of conv2d, which tfjs-backend-wasm 4.22 lacks (training a conv layer needs it). */
export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter,
};
