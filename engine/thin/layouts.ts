/**
 * The engine's NHWC layouts turned into the channels-first ones of ONNX and PyTorch: conv kernels
 * [k, k, in, out] → [out, in, k, k], depthwise kernels [k, k, channels, multiplier] → [channels ·
 * multiplier, 1, k, k], and the rows of a dense layer after a flatten from NHWC to NCHW order.
 */

/** A conv or depthwise kernel in the engine's layout, returned as [out, in / group, k, k]. */
export function channelsFirstKernel(op: {
  readonly kind: 'conv' | 'depthwise';
  readonly kernelShape: readonly [number, number, number, number];
  readonly kernel: Float32Array;
}): Float32Array {
  const [height, width, channels, last] = op.kernelShape;
  const positions = height * width;
  const out = new Float32Array(op.kernel.length);
  if (op.kind === 'depthwise') {
    // Engine [y, x, c, m] → [c·m + m', 0, y, x]: output channel o = c·m + m' is the innermost index either way.
    const outputs = channels * last;
    for (let p = 0; p < positions; p++) for (let o = 0; o < outputs; o++) out[o * positions + p] = op.kernel[p * outputs + o]!;
    return out;
  }
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < channels; i++) {
      for (let o = 0; o < last; o++) out[(o * channels + i) * positions + p] = op.kernel[(p * channels + i) * last + o]!;
    }
  }
  return out;
}

/**
 * A dense kernel [in, out] whose rows follow an NHWC flatten of `[height, width, channels]`, with its
 * rows reordered for an NCHW flatten (what ONNX's Flatten and torch.flatten produce).
 */
export function rowsInChannelsFirstOrder(kernel: Float32Array, [height, width, channels]: readonly number[], outputs: number): Float32Array {
  const positions = height! * width!;
  if (positions === 1) return kernel;
  const reordered = new Float32Array(kernel.length);
  for (let p = 0; p < positions; p++) {
    for (let c = 0; c < channels!; c++) {
      reordered.set(kernel.subarray((p * channels! + c) * outputs, (p * channels! + c + 1) * outputs), (c * positions + p) * outputs);
    }
  }
  return reordered;
}

/** [rows, columns] row-major → [columns, rows]. */
export function transposed(matrix: Float32Array, rows: number, columns: number): Float32Array {
  const out = new Float32Array(matrix.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) out[c * rows + r] = matrix[r * columns + c]!;
  return out;
}
