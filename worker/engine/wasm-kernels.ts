/**
 * Training kernels that @tensorflow/tfjs-backend-wasm 4.22 lacks (the gradients of conv2d and
 * depthwiseConv2d), built from kernels the wasm backend does have, so that whole training steps run
 * in wasm (XNNPACK) instead of failing or falling back to the much slower pure-JS cpu backend.
 *
 * Each kernel calls the wasm backend's own kernel functions directly on TensorInfos (as tfjs
 * backends compose their kernels internally), which keeps the work off the engine's tape and out of
 * its tensor bookkeeping; intermediates are freed before returning.
 */
import * as tf from '@tensorflow/tfjs';

const WASM = 'wasm';

type Shape4 = [number, number, number, number];
type Pads = { top: number; bottom: number; left: number; right: number };
type RunKernel = (kernelName: string, inputs: tf.NamedTensorInfoMap, attrs?: tf.NamedAttrMap) => tf.TensorInfo;

/**
 * Runs `body` with a `run` function that executes wasm kernels; every TensorInfo `run` made is
 * released afterwards except the one `body` returns (released too if `body` throws).
 */
function composite(backend: tf.KernelBackend, body: (run: RunKernel) => tf.TensorInfo): tf.TensorInfo {
  const made: tf.TensorInfo[] = [];
  const run: RunKernel = (kernelName, inputs, attrs = {}) => {
    const kernel = tf.getKernel(kernelName, WASM);
    if (kernel === undefined) throw new Error(`wasm backend has no '${kernelName}' kernel`);
    const out = kernel.kernelFunc({ inputs, backend, attrs }) as tf.TensorInfo;
    made.push(out);
    return out;
  };
  let result: tf.TensorInfo | undefined;
  try {
    result = body(run);
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
  const cropped = run('Slice', { x }, {
    begin: [0, cropTop, cropLeft, 0],
    size: [n, h - cropTop - cropBottom, w - cropLeft - cropRight, c],
  });
  return { x: cropped, pads: positive };
}

function explicitPadding(pads: Pads): tf.NamedAttrMap[string] {
  return [[0, 0], [pads.top, pads.bottom], [pads.left, pads.right], [0, 0]];
}

/**
 * dW[kh,kw,ci,co] = Σ_{n,i,j} x[n, i·sh + kh − top, j·sw + kw − left, ci] · dy[n,i,j,co].
 * With batch and channels swapped on both operands this is a stride-1 forward convolution of x
 * (Cin images, N channels) with dy (an OH×OW filter from N to Cout channels) dilated by the
 * stride, which XNNPACK runs as one GEMM instead of the naive loops of the cpu backend.
 */
function conv2DBackpropFilter(args: { inputs: tf.NamedTensorInfoMap; backend: {}; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const convInfo = tf.backend_util.computeConv2DInfo(
    shape4(x), filterShape, strides, 1, pad, dimRoundingMode, false,
    tf.backend_util.convertConv2DDataFormat(dataFormat));
  requireChannelsLast(convInfo, 'Conv2DBackpropFilter');
  const { filterHeight, filterWidth, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, padInfo } = convInfo;

  return composite(backend, (run) => {
    const wanted: Pads = {
      top: padInfo.top,
      left: padInfo.left,
      bottom: filterHeight + (outHeight - 1) * strideHeight - inHeight - padInfo.top,
      right: filterWidth + (outWidth - 1) * strideWidth - inWidth - padInfo.left,
    };
    const xSwapped = run('Transpose', { x }, { perm: [3, 1, 2, 0] });
    const { x: xCropped, pads } = cropNegative(run, xSwapped, wanted);
    const dySwapped = run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] });
    const grad = run('Conv2D', { x: xCropped, filter: dySwapped }, {
      strides: [1, 1],
      dilations: [strideHeight, strideWidth],
      pad: explicitPadding(pads),
      dataFormat: 'NHWC',
    });
    return run('Transpose', { x: grad }, { perm: [1, 2, 0, 3] });
  });
}

/** Inserts stride−1 zeros after every row and column of an NHWC tensor (the transposed-conv input). */
function dilateSpatial(run: RunKernel, x: tf.TensorInfo, strideHeight: number, strideWidth: number): tf.TensorInfo {
  if (strideHeight === 1 && strideWidth === 1) return x;
  const [n, h, w, c] = shape4(x);
  const split = run('Reshape', { x }, { shape: [n, h, 1, w, 1, c] });
  const padded = run('PadV2', { x: split }, {
    paddings: [[0, 0], [0, 0], [0, strideHeight - 1], [0, 0], [0, strideWidth - 1], [0, 0]],
    constantValue: 0,
  });
  return run('Reshape', { x: padded }, { shape: [n, h * strideHeight, w * strideWidth, c] });
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
function conv2DBackpropInput(args: { inputs: tf.NamedTensorInfoMap; backend: {}; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const convInfo = tf.backend_util.computeConv2DInfo(
    inputShape, shape4(filter), strides, 1, pad, dimRoundingMode, false,
    tf.backend_util.convertConv2DDataFormat(dataFormat));
  requireChannelsLast(convInfo, 'Conv2DBackpropInput');

  return composite(backend, (run) => {
    const rotated = run('Reverse', { x: filter }, { dims: [0, 1] });
    const swapped = run('Transpose', { x: rotated }, { perm: [0, 1, 3, 2] });
    const dilated = dilateSpatial(run, dy, convInfo.strideHeight, convInfo.strideWidth);
    const { x: input, pads } = cropNegative(run, dilated, transposedConvPads(convInfo));
    return run('Conv2D', { x: input, filter: swapped }, {
      strides: [1, 1], dilations: [1, 1], pad: explicitPadding(pads), dataFormat: 'NHWC',
    });
  });
}

/**
 * Like conv2DBackpropInput, per channel: a depthwise convolution of the zero-inserted gradient
 * with the rotated filter; with a channel multiplier M the M gradient channels of each input
 * channel are convolved separately and summed.
 */
function depthwiseConv2dNativeBackpropInput(args: { inputs: tf.NamedTensorInfoMap; backend: {}; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const { strides, dilations, pad, dimRoundingMode, inputShape } = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const [filterHeight, filterWidth, channels, multiplier] = shape4(filter);
  const convInfo = tf.backend_util.computeConv2DInfo(
    inputShape, shape4(filter), strides, dilations, pad, dimRoundingMode, true);

  return composite(backend, (run) => {
    const perChannel = run('Reshape', { x: filter }, { shape: [filterHeight, filterWidth, channels * multiplier, 1] });
    const rotated = run('Reverse', { x: perChannel }, { dims: [0, 1] });
    const dilated = dilateSpatial(run, dy, convInfo.strideHeight, convInfo.strideWidth);
    const { x: input, pads } = cropNegative(run, dilated, transposedConvPads(convInfo));
    const dx = run('DepthwiseConv2dNative', { x: input, filter: rotated }, {
      strides: [1, 1], dilations: [convInfo.dilationHeight, convInfo.dilationWidth], pad: explicitPadding(pads),
    });
    if (multiplier === 1) return dx;
    const [n, h, w] = inputShape;
    const split = run('Reshape', { x: dx }, { shape: [n, h, w, channels, multiplier] });
    return run('Sum', { x: split }, { axis: [4], keepDims: false });
  });
}

/**
 * dW[kh,kw,c,m] = Σ_{n,i,j} x[n, i·sh + kh·dh − top, j·sw + kw·dw − left, c] · dy[n,i,j,c·M+m].
 * Folding the batch into the channels makes this one depthwise convolution of x (N·C channels)
 * with dy as an OH×OW filter dilated by the stride; the batch is then summed out.
 */
export function depthwiseConv2dNativeBackpropFilterConv(args: { inputs: tf.NamedTensorInfoMap; backend: {}; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, dilations, pad, dimRoundingMode, filterShape } = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const convInfo = tf.backend_util.computeConv2DInfo(shape4(x), filterShape, strides, dilations, pad, dimRoundingMode, true);
  const [filterHeight, filterWidth, channels, multiplier] = filterShape;
  const { batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth, padInfo } = convInfo;

  return composite(backend, (run) => {
    const wanted: Pads = {
      top: padInfo.top,
      left: padInfo.left,
      bottom: convInfo.effectiveFilterHeight + (outHeight - 1) * strideHeight - inHeight - padInfo.top,
      right: convInfo.effectiveFilterWidth + (outWidth - 1) * strideWidth - inWidth - padInfo.left,
    };
    const xMoved = run('Transpose', { x }, { perm: [1, 2, 0, 3] });
    const xFolded = run('Reshape', { x: xMoved }, { shape: [1, inHeight, inWidth, batchSize * channels] });
    const { x: input, pads } = cropNegative(run, xFolded, wanted);
    const dyMoved = run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] });
    const dyFolded = run('Reshape', { x: dyMoved }, { shape: [outHeight, outWidth, batchSize * channels, multiplier] });
    const perImage = run('DepthwiseConv2dNative', { x: input, filter: dyFolded }, {
      strides: [dilationHeight, dilationWidth], dilations: [strideHeight, strideWidth], pad: explicitPadding(pads),
    });
    const split = run('Reshape', { x: perImage }, { shape: [filterHeight, filterWidth, batchSize, channels * multiplier] });
    const summed = run('Sum', { x: split }, { axis: [2], keepDims: false });
    return run('Reshape', { x: summed }, { shape: filterShape });
  });
}

/**
 * Same sum, one filter tap at a time: with channels moved to the front, each tap is a strided
 * slice of the padded input multiplied by dy and summed over batch and space.
 */
export function depthwiseConv2dNativeBackpropFilterTaps(args: { inputs: tf.NamedTensorInfoMap; backend: {}; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { strides, dilations, pad, dimRoundingMode, filterShape } = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const convInfo = tf.backend_util.computeConv2DInfo(shape4(x), filterShape, strides, dilations, pad, dimRoundingMode, true);
  const [filterHeight, filterWidth, channels, multiplier] = filterShape;
  const { batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth, padInfo } = convInfo;

  return composite(backend, (run) => {
    const paddedHeight = convInfo.effectiveFilterHeight + (outHeight - 1) * strideHeight;
    const paddedWidth = convInfo.effectiveFilterWidth + (outWidth - 1) * strideWidth;
    const wanted: Pads = {
      top: padInfo.top, left: padInfo.left,
      bottom: paddedHeight - inHeight - padInfo.top, right: paddedWidth - inWidth - padInfo.left,
    };
    const { x: cropped, pads } = cropNegative(run, x, wanted);
    const padded = run('PadV2', { x: cropped }, {
      paddings: [[0, 0], [pads.top, pads.bottom], [pads.left, pads.right], [0, 0]], constantValue: 0,
    });
    const xFront = run('Transpose', { x: padded }, { perm: [3, 0, 1, 2] });
    const dyFront = run('Transpose', { x: dy }, { perm: [3, 0, 1, 2] });
    const dySplit = run('Reshape', { x: dyFront }, { shape: [channels, multiplier, batchSize, outHeight, outWidth] });
    const taps: tf.TensorInfo[] = [];
    for (let kh = 0; kh < filterHeight; kh++) {
      for (let kw = 0; kw < filterWidth; kw++) {
        const top = kh * dilationHeight;
        const left = kw * dilationWidth;
        const tap = run('StridedSlice', { x: xFront }, {
          begin: [0, 0, top, left],
          end: [channels, batchSize, top + (outHeight - 1) * strideHeight + 1, left + (outWidth - 1) * strideWidth + 1],
          strides: [1, 1, strideHeight, strideWidth],
          beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0,
        });
        const tapSplit = run('Reshape', { x: tap }, { shape: [channels, 1, batchSize, outHeight, outWidth] });
        const product = run('Multiply', { a: tapSplit, b: dySplit });
        taps.push(run('Sum', { x: product }, { axis: [2, 3, 4], keepDims: false }));
      }
    }
    const stacked = run('Pack', taps as unknown as tf.NamedTensorInfoMap, { axis: 0 });
    return run('Reshape', { x: stacked }, { shape: filterShape });
  });
}

export function registerWasmTrainingKernels(): void {
  const kernels: tf.KernelConfig[] = [
    { kernelName: 'Conv2DBackpropFilter', backendName: WASM, kernelFunc: conv2DBackpropFilter },
    { kernelName: 'DepthwiseConv2dNativeBackpropInput', backendName: WASM, kernelFunc: depthwiseConv2dNativeBackpropInput },
    { kernelName: 'DepthwiseConv2dNativeBackpropFilter', backendName: WASM, kernelFunc: process.env.DWF === 'taps' ? depthwiseConv2dNativeBackpropFilterTaps : depthwiseConv2dNativeBackpropFilterConv },
  ];
  for (const config of kernels) {
    if (tf.getKernel(config.kernelName, WASM) === undefined) tf.registerKernel(config);
  }
  if (process.env.DX !== 'builtin') {
    const builtin = tf.getKernel('Conv2DBackpropInput', WASM);
    tf.unregisterKernel('Conv2DBackpropInput', WASM);
    tf.registerKernel({ ...builtin, kernelFunc: conv2DBackpropInput });
  }
}
