import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type KernelArgs, shape4 } from './kernel-args.js';

/**
 * Routes each dy to the first maximum of its window (row-major window order, out-of-image pixels
 * excluded), as the cpu backend does. A composition of wasm kernels would need rank-6 transposes,
 * which the wasm backend runs element by element, so this one loops over the backend's memory in
 * JavaScript.
 */
function maxPoolGrad(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const { filterSize, strides, pad, dimRoundingMode } = args.attrs as unknown as tf.MaxPoolGradAttrs;
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, strideHeight, strideWidth, filterHeight, filterWidth, padInfo } =
    tf.backend_util.computePool2DInfo(shape4(input), filterSize, strides, 1, pad, dimRoundingMode);

  const dxInfo = backend.makeOutput(input.shape, 'float32');
  // Views only after allocating: an allocation may grow the wasm memory, which detaches older views.
  const x = backend.typedArrayFromHeap(input);
  const grad = backend.typedArrayFromHeap(dy);
  const dx = backend.typedArrayFromHeap(dxInfo);
  dx.fill(0);
  const maxValue = new Float32Array(inChannels);
  const maxIndex = new Int32Array(inChannels);
  let dyIndex = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let outRow = 0; outRow < outHeight; outRow++) {
      const firstRow = outRow * strideHeight - padInfo.top;
      const rowStart = Math.max(0, firstRow);
      const rowEnd = Math.min(inHeight, firstRow + filterHeight);
      for (let outColumn = 0; outColumn < outWidth; outColumn++) {
        const firstColumn = outColumn * strideWidth - padInfo.left;
        const columnStart = Math.max(0, firstColumn);
        const columnEnd = Math.min(inWidth, firstColumn + filterWidth);
        maxValue.fill(-Infinity);
        maxIndex.fill(-1);
        for (let row = rowStart; row < rowEnd; row++) {
          for (let column = columnStart; column < columnEnd; column++) {
            const pixel = ((b * inHeight + row) * inWidth + column) * inChannels;
            for (let c = 0; c < inChannels; c++) {
              const value = x[pixel + c]!;
              if (value > maxValue[c]!) {
                maxValue[c] = value;
                maxIndex[c] = pixel + c;
              }
            }
          }
        }
        for (let c = 0; c < inChannels; c++, dyIndex++) {
          const at = maxIndex[c]!;
          if (at >= 0) dx[at] += grad[dyIndex]!;
        }
      }
    }
  }
  return dxInfo;
}

/**
 * Replaces the built-in wasm kernel, which starts its running maximum at the smallest positive
 * float, so that windows without a positive value send their gradient to the wrong pixel, and
 * which lets the last of tied maxima win.
 */
export const maxPoolGradConfig: tf.KernelConfig = {
  kernelName: tf.MaxPoolGrad,
  backendName: 'wasm',
  kernelFunc: maxPoolGrad,
};
