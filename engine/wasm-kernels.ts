/**
 * Training kernels for the wasm backend (@tensorflow/tfjs-backend-wasm 4.22):
 * - the missing ones: the filter gradient of conv2d and both gradients of depthwiseConv2d;
 * - replacements for built-in kernels that training uses and that are wrong (MaxPoolGrad) or run
 *   as naive loops many times slower than a composition (Conv2DBackpropInput, BatchMatMul with
 *   transposed operands, Tile).
 *
 * The compositions call the wasm backend's own kernel functions on TensorInfos (as tfjs backends
 * compose their kernels internally), so that the work lands in XNNPACK convolutions, GEMMs and
 * broadcasts and stays off the engine's tape and out of its tensor bookkeeping.
 */
import * as tf from '@tensorflow/tfjs';
// Registers the built-in wasm kernels, which these compose and some of which they replace.
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

const WASM = 'wasm';

type Shape4 = [number, number, number, number];
type Pads = { top: number; bottom: number; left: number; right: number };
type RunKernel = (kernelName: string, inputs: tf.NamedTensorInfoMap, attrs?: tf.NamedAttrMap) => tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];
type Track = (info: tf.TensorInfo) => tf.TensorInfo;

/**
 * Runs `body` with a `run` function that executes wasm kernels (and `track` for results made
 * otherwise); every TensorInfo they saw is released afterwards except the one `body` returns
 * (released too if `body` throws).
 */
function composite(backend: tf.KernelBackend, body: (run: RunKernel, track: Track) => tf.TensorInfo): tf.TensorInfo {
  const made: tf.TensorInfo[] = [];
  const track: Track = (info) => {
    made.push(info);
    return info;
  };
  const run: RunKernel = (kernelName, inputs, attrs = {}) => {
    const kernel = tf.getKernel(kernelName, WASM);
    if (kernel === undefined) throw new Error(`wasm backend has no '${kernelName}' kernel`);
    return track(kernel.kernelFunc({ inputs, backend, attrs }) as tf.TensorInfo);
  };
  let result: tf.TensorInfo | undefined;
  try {
    result = body(run, track);
    return result;
  } finally {
    for (const info of made) if (info !== result) backend.disposeData(info.dataId);
  }
}

function shape4(info: tf.TensorInfo): Shape4 {
  if (info.shape.length !== 4) throw new Error(`expected a rank-4 tensor, got shape [${info.shape.join(', ')}]`);
  return info.shape as Shape4;
}

function requireChannelsLast(convInfo: tf.backend_util.Conv2DInfo, kernelName: string): void {
  if (convInfo.dataFormat !== 'channelsLast') {
    throw new Error(`wasm ${kernelName} supports only NHWC data, got ${convInfo.dataFormat}`);
  }
}

/**
 * Crops the spatial sides of an NHWC tensor whose wanted padding is negative and returns the
 * remaining (non-negative) padding, which the following XNNPACK convolution applies for free.
 */
function cropNegative(run: RunKernel, x: tf.TensorInfo, pads: Pads): { x: tf.TensorInfo; pads: Pads } {
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

function explicitPadding(pads: Pads): tf.NamedAttrMap[string] {
  return [
    [0, 0],
    [pads.top, pads.bottom],
    [pads.left, pads.right],
    [0, 0],
  ];
}

/**
 * dW[kh,kw,ci,co] = Σ_{n,i,j} x[n, i·sh + kh − top, j·sw + kw − left, ci] · dy[n,i,j,co].
 * With batch and channels swapped on both operands this is a stride-1 forward convolution of x
 * (Cin images, N channels) with dy (an OH×OW filter from N to Cout channels) dilated by the
 * stride, which XNNPACK runs as one GEMM instead of the naive loops of the cpu backend.
 */
function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const convInfo = tf.backend_util.computeConv2DInfo(
    shape4(x),
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  requireChannelsLast(convInfo, 'Conv2DBackpropFilter');
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

/** Inserts stride−1 zeros after every row and column of an NHWC tensor (the transposed-conv input). */
function dilateSpatial(run: RunKernel, x: tf.TensorInfo, strideHeight: number, strideWidth: number): tf.TensorInfo {
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
function transposedConvPads(convInfo: tf.backend_util.Conv2DInfo): Pads {
  const { padInfo, strideHeight, strideWidth, outHeight, outWidth, inHeight, inWidth } = convInfo;
  return {
    top: convInfo.effectiveFilterHeight - 1 - padInfo.top,
    left: convInfo.effectiveFilterWidth - 1 - padInfo.left,
    bottom: inHeight + padInfo.top - outHeight * strideHeight,
    right: inWidth + padInfo.left - outWidth * strideWidth,
  };
}

/**
 * dx = the gradient convolved with the filter rotated by 180° and its channel axes swapped, after
 * inserting stride−1 zeros between gradient samples. Replaces the wasm backend's own kernel, a
 * naive loop several times slower than this XNNPACK convolution.
 */
function conv2DBackpropInput(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const convInfo = tf.backend_util.computeConv2DInfo(
    inputShape,
    shape4(filter),
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(dataFormat),
  );
  requireChannelsLast(convInfo, 'Conv2DBackpropInput');

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
 * Like conv2DBackpropInput, per channel: a depthwise convolution of the zero-inserted gradient
 * with the rotated filter; with a channel multiplier M the M gradient channels of each input
 * channel are convolved separately and summed.
 */
function depthwiseConv2dNativeBackpropInput(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, dilations, pad, dimRoundingMode, inputShape } = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const [filterHeight, filterWidth, channels, multiplier] = shape4(filter);
  const convInfo = tf.backend_util.computeConv2DInfo(inputShape, shape4(filter), strides, dilations, pad, dimRoundingMode, true);

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

/**
 * dW[kh,kw,c,m] = Σ_{n,i,j} x[n, i·sh + kh·dh − top, j·sw + kw·dw − left, c] · dy[n,i,j,c·M+m].
 * Folding the batch into the channels makes this one depthwise convolution of x (N·C channels)
 * with dy as an OH×OW filter dilated by the stride; the batch is then summed out.
 */
function depthwiseConv2dNativeBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, dilations, pad, dimRoundingMode, filterShape } = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const convInfo = tf.backend_util.computeConv2DInfo(shape4(x), filterShape, strides, dilations, pad, dimRoundingMode, true);
  const [filterHeight, filterWidth, channels, multiplier] = filterShape;
  const { batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth, padInfo } = convInfo;

  return composite(backend, (run) => {
    // As in conv2DBackpropFilter: exactly KH×KW outputs per folded channel.
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

/**
 * Routes each dy to the first maximum of its window (row-major window order, out-of-image pixels
 * excluded), as the cpu backend does. Replaces the built-in wasm kernel, which starts its running
 * maximum at the smallest positive float, so that windows without a positive value send their
 * gradient to the wrong pixel, and which lets the last of tied maxima win. A composition of wasm
 * kernels would need rank-6 transposes, which the wasm backend runs element by element, so this
 * one loops over the backend's memory in JavaScript.
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
 * The built-in BatchMatMul uses XNNPACK only for untransposed operands without a batch; otherwise
 * it runs a naive loop 10–20× slower. When b has no batch, transposing explicitly and folding a's
 * batch into its rows reaches the XNNPACK path.
 */
function batchMatMulOnXnnpack(builtin: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as tf.KernelBackend;
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
    const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
    if (batchB !== 1 || (batchA === 1 && !transposeA && !transposeB)) return builtin(args);

    return composite(backend, (run, track) => {
      const toMatrix = (x: tf.TensorInfo, transpose: boolean): tf.TensorInfo => {
        const rank = x.shape.length;
        if (!transpose) return x;
        const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
        return run(tf.Transpose, { x }, { perm });
      };
      const aRows = toMatrix(a, transposeA);
      const bMatrix = toMatrix(b, transposeB);
      const [rows, inner] = aRows.shape.slice(-2);
      const columns = bMatrix.shape[bMatrix.shape.length - 1];
      const a3d = run(tf.Reshape, { x: aRows }, { shape: [1, batchA * rows, inner] });
      const b3d = run(tf.Reshape, { x: bMatrix }, { shape: [1, inner, columns] });
      const product = track(builtin({ inputs: { a: a3d, b: b3d }, backend, attrs: { transposeA: false, transposeB: false } }) as tf.TensorInfo);
      const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
      return run(tf.Reshape, { x: product }, { shape: [...outBatch, rows, columns] });
    });
  };
}

/**
 * The built-in Tile computes every output index separately, about 20× slower than XNNPACK's
 * broadcasting add; the batch-norm gradient tiles a per-channel vector to a whole activation.
 * Tiling is a broadcast: the output viewed as [r0, x0, r1, x1, …] is x viewed as
 * [1, x0, 1, x1, …] plus zeros of shape [r0, 1, r1, 1, …].
 */
function tileByBroadcast(builtin: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as tf.KernelBackend;
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { reps } = args.attrs as unknown as tf.TileAttrs;
    if (x.dtype !== 'float32') return builtin(args);
    // Size-1 axes dropped and neighbouring axes of the same kind merged: XNNPACK takes at most 6.
    const dataShape: number[] = [];
    const zerosShape: number[] = [];
    let previous: 'repeat' | 'data' | undefined;
    x.shape.forEach((size, axis) => {
      for (const [kind, extent] of [
        ['repeat', reps[axis]!],
        ['data', size],
      ] as const) {
        if (extent === 1) continue;
        if (kind === previous) {
          dataShape[dataShape.length - 1] *= kind === 'data' ? extent : 1;
          zerosShape[zerosShape.length - 1] *= kind === 'repeat' ? extent : 1;
        } else {
          dataShape.push(kind === 'data' ? extent : 1);
          zerosShape.push(kind === 'repeat' ? extent : 1);
          previous = kind;
        }
      }
    });
    if (dataShape.length > 6) return builtin(args);

    return composite(backend, (run) => {
      const data = run(tf.Reshape, { x }, { shape: dataShape });
      const zeros = run(tf.Fill, {}, { shape: zerosShape, value: 0, dtype: 'float32' });
      const tiled = run(tf.Add, { a: data, b: zeros });
      return run(tf.Reshape, { x: tiled }, { shape: x.shape.map((size, axis) => size * reps[axis]!) });
    });
  };
}

let registered = false;

/**
 * Registers the wasm kernels that training needs and the backend lacks, and replaces the built-in
 * ones that are wrong or much slower (see the top of this file). Safe to call more than once,
 * before or after the wasm backend is initialised.
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  registered = true;
  const missing: [string, tf.KernelFunc][] = [
    [tf.Conv2DBackpropFilter, conv2DBackpropFilter],
    [tf.DepthwiseConv2dNativeBackpropFilter, depthwiseConv2dNativeBackpropFilter],
    [tf.DepthwiseConv2dNativeBackpropInput, depthwiseConv2dNativeBackpropInput],
  ];
  for (const [kernelName, kernelFunc] of missing) {
    // A later tfjs-backend-wasm may bring its own; that one is likely faster than a composition.
    if (tf.getKernel(kernelName, WASM) === undefined) tf.registerKernel({ kernelName, backendName: WASM, kernelFunc });
  }
  replaceKernel(tf.Conv2DBackpropInput, () => conv2DBackpropInput);
  replaceKernel(tf.MaxPoolGrad, () => maxPoolGrad);
  replaceKernel(tf.BatchMatMul, batchMatMulOnXnnpack);
  replaceKernel(tf.Tile, tileByBroadcast);
}

/** Swaps in a new kernelFunc, keeping the built-in setup (it prepares the wasm functions the built-in kernel calls). */
function replaceKernel(kernelName: string, makeKernelFunc: (builtin: tf.KernelFunc) => tf.KernelFunc): void {
  const builtin = tf.getKernel(kernelName, WASM);
  if (builtin === undefined) throw new Error(`wasm backend has no '${kernelName}' kernel to replace`);
  tf.unregisterKernel(kernelName, WASM);
  tf.registerKernel({ ...builtin, kernelFunc: makeKernelFunc(builtin.kernelFunc) });
}
