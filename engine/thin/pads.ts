import type { Padding } from '../layers.js';

/** Explicit zero padding of a window over an [height, width, …] input. */
export interface Pads {
  readonly top: number;
  readonly bottom: number;
  readonly left: number;
  readonly right: number;
}

/**
 * The pads a window operation adds: TensorFlow's 'same' puts the odd pixel at the bottom and right
 * (ONNX's SAME_UPPER), a number pads every side alike, 'valid' pads nothing.
 */
export function windowPads(inputShape: readonly number[], window: number, stride: number, padding: Padding): Pads {
  if (padding === 'valid') return { top: 0, bottom: 0, left: 0, right: 0 };
  if (typeof padding === 'number') return { top: padding, bottom: padding, left: padding, right: padding };
  const total = (length: number) => Math.max((Math.ceil(length / stride) - 1) * stride + window - length, 0);
  const vertical = total(inputShape[0]!);
  const horizontal = total(inputShape[1]!);
  const top = Math.floor(vertical / 2);
  const left = Math.floor(horizontal / 2);
  return { top, bottom: vertical - top, left, right: horizontal - left };
}

export function padsAreZero(pads: Pads): boolean {
  return pads.top === 0 && pads.bottom === 0 && pads.left === 0 && pads.right === 0;
}
