import * as tf from '@tensorflow/tfjs';
import type { RunKernel } from './composite.js';
import { shape4 } from './kernel-args.js';

/**
 * The padding, cropping and zero insertion that turn convolution gradients into forward
 * convolutions, which XNNPACK runs fast.
 */

export type Pads = { top: number; bottom: number; left: number; right: number };

/**
 * Crops the spatial sides of an NHWC tensor whose wanted padding is negative and returns the
 * remaining (non-negative) padding, which the following XNNPACK convolution applies for free.
 */
export function cropNegative(run: RunKernel, x: tf.TensorInfo, pads: Pads): { x: tf.TensorInfo; pads: Pads } {
  const [n, h, w, c] = shape4(x);
  const cropTop = Math.max(0, -pads.top);
  const cropBottom = Math.max(0, -pads.bottom);
  const cropLeft = Math.max(0, -pads.left);
  const cropRight = Math.max(0, -pads.right);
  const positive = {
    top: Math.max(0, pads.top),
    bottom: Math.max(0, pads.bottom),
    left: Math.max(0, pads.left),
    right: Math.max(0, pads.right),
  };
  if (cropTop + cropBottom + cropLeft + cropRight === 0) return { x, pads: positive };
  const cropped = run(
    tf.Slice,
    { x },
    {
      begin: [0, cropTop, cropLeft, 0],
      size: [n, h - cropTop - cropBottom, w - cropLeft - cropRight, c],
    },
  );
  return { x: cropped, pads: positive };
}

/** `pads` as the explicit `pad` attribute of an NHWC convolution. */
export function explicitPadding(pads: Pads): tf.NamedAttrMap[string] {
  return [
    [0, 0],
    [pads.top, pads.bottom],
    [pads.left, pads.right],
    [0, 0],
  ];
}

/** Inserts stride−1 zeros after every row and column of an NHWC tensor (the transposed-conv input). */
export function dilateSpatial(run: RunKernel, x: tf.TensorInfo, strideHeight: number, strideWidth: number): tf.TensorInfo {
  if (strideHeight === 1 && strideWidth === 1) return x;
  const [n, h, w, c] = shape4(x);
  const split = run(tf.Reshape, { x }, { shape: [n, h, 1, w, 1, c] });
  const padded = run(
    tf.PadV2,
    { x: split },
    {
      paddings: [
        [0, 0],
        [0, 0],
        [0, strideHeight - 1],
        [0, 0],
        [0, strideWidth - 1],
        [0, 0],
      ],
      constantValue: 0,
    },
  );
  return run(tf.Reshape, { x: padded }, { shape: [n, h * strideHeight, w * strideWidth, c] });
}

/**
 * Padding that turns the (zero-inserted) output gradient into the input of a stride-1 convolution
 * with the rotated filter, whose output then has exactly the forward input's size. The dilated
 * gradient ends with stride−1 zero rows/columns beyond the last sample, which the bottom/right
 * amounts account for.
 */
export function transposedConvPads(convInfo: tf.backend_util.Conv2DInfo): Pads {
  const { padInfo, strideHeight, strideWidth, outHeight, outWidth, inHeight, inWidth } = convInfo;
  return {
    top: convInfo.effectiveFilterHeight - 1 - padInfo.top,
    left: convInfo.effectiveFilterWidth - 1 - padInfo.left,
    bottom: inHeight + padInfo.top - outHeight * strideHeight,
    right: inWidth + padInfo.left - outWidth * strideWidth,
  };
}
