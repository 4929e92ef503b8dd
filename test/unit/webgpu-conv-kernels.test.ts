import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { conv2DBackpropFilterConfig } from '../../engine/kernels/webgpu/conv2d-backprop-filter.js';
import { dispatcherFor } from '../../engine/kernels/webgpu/dispatcher.js';
import { WEBGPU_F16_FLAG, WEBGPU_KERNELS } from '../../engine/kernels/webgpu/index.js';
import { assertClose, type Inputs, randomInputs, valuesOn } from '../helpers/backend-compare.js';
import { dilatedDepthwiseGradientTests } from '../helpers/dilated-depthwise.js';
import { skipBecause } from '../helpers/skip.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

type Pad = 'same' | 'valid';

/** Odd channel counts and sizes, kernels 1/3/5/7, strides 1 and 2, both paddings; small enough for lavapipe. */
const CASES = [
  { batch: 2, height: 7, width: 6, channels: 3, outChannels: 5, kernel: 3, stride: 1, pad: 'same' as Pad },
  { batch: 3, height: 9, width: 8, channels: 1, outChannels: 3, kernel: 3, stride: 2, pad: 'valid' as Pad },
  { batch: 1, height: 5, width: 5, channels: 5, outChannels: 7, kernel: 1, stride: 2, pad: 'same' as Pad },
  { batch: 2, height: 11, width: 9, channels: 3, outChannels: 2, kernel: 5, stride: 1, pad: 'valid' as Pad },
  { batch: 2, height: 13, width: 13, channels: 3, outChannels: 9, kernel: 7, stride: 2, pad: 'same' as Pad },
  // Larger than one 64×64 tile on both sides of the filter-gradient GEMM (rows 3·3·9 = 81, 67 columns).
  { batch: 1, height: 6, width: 5, channels: 9, outChannels: 67, kernel: 3, stride: 2, pad: 'valid' as Pad },
];

function label(c: (typeof CASES)[number]): string {
  return `n${c.batch} ${c.height}x${c.width}x${c.channels} k${c.kernel} s${c.stride} ${c.pad}`;
}

/** Gradients of Σ f(x, filter)·dy with respect to x and the filter, dy random. */
async function gradientsOn(backend: string, inputs: Inputs, f: (x: tf.Tensor4D, filter: tf.Tensor4D) => tf.Tensor): Promise<Float32Array[]> {
  return valuesOn(backend, inputs, ({ x, filter, dy }) => tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a as tf.Tensor4D, b as tf.Tensor4D))([x!, filter!], dy!));
}

function outputShape(c: (typeof CASES)[number], channels: number): number[] {
  const out = (size: number) => (c.pad === 'same' ? Math.ceil(size / c.stride) : Math.floor((size - c.kernel) / c.stride) + 1);
  return [c.batch, out(c.height), out(c.width), channels];
}

describe('webgpu convolution gradient kernels', () => {
  webgpuSuiteOnLavapipe();

  it("registers autoprune's kernels over the package's", () => {
    for (const config of WEBGPU_KERNELS) assert.equal(tf.getKernel(config.kernelName, 'webgpu')?.kernelFunc, config.kernelFunc, config.kernelName);
    assert.equal(tf.env().getBool('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE'), false, "the package's tiled Conv2DBackpropInput is selected");
  });

  CASES.forEach((c, index) => {
    it(`conv2d gradients match cpu (${label(c)} -> ${c.outChannels})`, async () => {
      const inputs = randomInputs(
        { x: [c.batch, c.height, c.width, c.channels], filter: [c.kernel, c.kernel, c.channels, c.outChannels], dy: outputShape(c, c.outChannels) },
        10 * index,
      );
      const conv = (x: tf.Tensor4D, filter: tf.Tensor4D) => tf.conv2d(x, filter, c.stride, c.pad);
      assertClose(await gradientsOn('webgpu', inputs, conv), await gradientsOn('cpu', inputs, conv), 1e-4, label(c));
    });

    const multiplier = (index % 2) + 1;
    it(`depthwiseConv2d gradients match cpu (${label(c)}, multiplier ${multiplier})`, async () => {
      const inputs = randomInputs(
        { x: [c.batch, c.height, c.width, c.channels], filter: [c.kernel, c.kernel, c.channels, multiplier], dy: outputShape(c, c.channels * multiplier) },
        10 * index + 1,
      );
      const conv = (x: tf.Tensor4D, filter: tf.Tensor4D) => tf.depthwiseConv2d(x, filter, c.stride, c.pad);
      assertClose(await gradientsOn('webgpu', inputs, conv), await gradientsOn('cpu', inputs, conv), 1e-4, label(c));
    });
  });

  it('splits a long reduction across workgroups and still matches cpu', async () => {
    // N·OH·OW = 4·16·16 = 1,024 positions against a 27×5 filter gradient: 8 slices of 128.
    const inputs = randomInputs({ x: [4, 16, 16, 3], dy: [4, 16, 16, 5] }, 90);
    const attrs = { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 3, 5] };
    const dispatcher = dispatcherFor(await tf.setBackend('webgpu').then(() => tf.backend()));
    const before = dispatcher.statistics.dispatches;
    const gpu = await valuesOn('webgpu', inputs, ({ x, dy }) => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: x!, dy: dy! }, attrs) as tf.Tensor);
    assert.equal(dispatcher.statistics.dispatches - before, 2, 'one GEMM dispatch over the slices and one reduction');
    const cpu = await valuesOn('cpu', inputs, ({ x, dy }) => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: x!, dy: dy! }, attrs) as tf.Tensor);
    assertClose(gpu, cpu, 1e-4, 'split-K');
    assert.equal(tf.getKernel(tf.Conv2DBackpropFilter, 'webgpu')?.kernelFunc, conv2DBackpropFilterConfig.kernelFunc);
  });

  it('with fp16 tiles (shader-f16), the filter gradient stays within fp16 rounding of cpu', async function () {
    await tf.setBackend('webgpu');
    const dispatcher = dispatcherFor(tf.backend());
    if (!dispatcher.features.has('shader-f16')) skipBecause(this, "the WebGPU adapter has no 'shader-f16'");
    const shapes = randomInputs({ x: [4, 16, 16, 3], dy: [4, 8, 8, 5] }, 95);
    const attrs = { strides: 2, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 3, 5] };
    const run = (t: Record<string, tf.Tensor>) => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: t.x!, dy: t.dy! }, attrs) as tf.Tensor;
    const full = await valuesOn('webgpu', shapes, run);
    tf.env().set(WEBGPU_F16_FLAG, true);
    try {
      const half = await valuesOn('webgpu', shapes, run);
      const cpu = await valuesOn('cpu', shapes, run);
      assertClose(full, cpu, 1e-4, 'fp32 tiles');
      assertClose(half, cpu, 1e-2, 'fp16 tiles');
      assert.notDeepEqual(half, full, 'the fp16 variant ran (its rounding shows)');
    } finally {
      tf.env().set(WEBGPU_F16_FLAG, false);
    }
  });

  describe('depthwise gradients with dilation 2 match cpu on the equivalent zero-inserted 5x5 filter', () => {
    dilatedDepthwiseGradientTests('webgpu');
  });
});
