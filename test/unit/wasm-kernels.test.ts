import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { MISSING_WASM_KERNELS, REPLACEMENT_WASM_KERNELS, registerWasmTrainingKernels } from '../../engine/kernels/wasm/index.js';
import { maxRelativeError, randomValues } from '../helpers/backend-compare.js';
import { dilatedDepthwiseGradientTests } from '../helpers/dilated-depthwise.js';
import { assertMatchesCpu, convolutionCases, kernelOn, type Shape, trainSmallConvNet } from '../helpers/kernel-comparison.js';

function assertWasmMatchesCpu(f: (...inputs: tf.Tensor[]) => tf.Tensor, shapes: Shape[], seed: number): Promise<void> {
  return assertMatchesCpu('wasm', f, shapes, seed, 1e-4);
}

describe('wasm training kernels', () => {
  let previousBackend: string | undefined;

  before(async () => {
    previousBackend = tf.getBackend();
    registerWasmTrainingKernels();
    registerWasmTrainingKernels();
    assert.ok(await tf.setBackend('wasm'), 'the wasm backend initialises');
  });

  after(async () => {
    if (previousBackend) await tf.setBackend(previousBackend);
  });

  it('registers the missing gradient kernels for wasm', () => {
    for (const kernelName of ['Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropFilter', 'DepthwiseConv2dNativeBackpropInput']) {
      assert.ok(tf.getKernel(kernelName, 'wasm'), `${kernelName} is registered`);
    }
  });

  it('registers every listed kernel in place of the built-in one', () => {
    for (const config of [...MISSING_WASM_KERNELS, ...REPLACEMENT_WASM_KERNELS]) {
      assert.equal(tf.getKernel(config.kernelName, 'wasm').kernelFunc, config.kernelFunc, `${config.kernelName} is autoprune's`);
    }
  });

  convolutionCases().forEach((c, index) => {
    const label = `n${c.batch} ${c.height}x${c.width}x${c.channels} k${c.kernel} s${c.stride} ${c.pad}`;

    it(`conv2d gradients match cpu (${label} -> ${c.outChannels})`, async () => {
      await assertWasmMatchesCpu(
        (x, filter) => tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, c.stride, c.pad),
        [
          [c.batch, c.height, c.width, c.channels],
          [c.kernel, c.kernel, c.channels, c.outChannels],
        ],
        index * 10,
      );
    });

    const multiplier = (index % 2) + 1;
    it(`depthwiseConv2d gradients match cpu (${label}, multiplier ${multiplier})`, async () => {
      await assertWasmMatchesCpu(
        (x, filter) => tf.depthwiseConv2d(x as tf.Tensor4D, filter as tf.Tensor4D, c.stride, c.pad),
        [
          [c.batch, c.height, c.width, c.channels],
          [c.kernel, c.kernel, c.channels, multiplier],
        ],
        index * 10 + 1,
      );
    });
  });

  it('fused conv2d (bias, relu) gradients match cpu', async () => {
    await assertWasmMatchesCpu(
      (x, filter, bias) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: filter as tf.Tensor4D, strides: 2, pad: 'same', bias, activation: 'relu' }),
      [[2, 9, 7, 3], [3, 3, 3, 4], [4]],
      40,
    );
  });

  for (const [pool, window, stride, pad] of [
    ['max', 2, 2, 'valid'],
    ['max', 3, 2, 'same'],
    ['max', 3, 1, 'same'],
    ['max', 1, 2, 'valid'],
    ['avg', 2, 2, 'valid'],
    ['avg', 3, 2, 'same'],
    ['avg', 3, 1, 'same'],
  ] as const) {
    it(`${pool}Pool ${window}x${window} stride ${stride} ${pad} gradient matches cpu`, async () => {
      const op = pool === 'max' ? tf.maxPool : tf.avgPool;
      await assertWasmMatchesCpu((x) => op(x as tf.Tensor4D, window, stride, pad), [[3, 9, 7, 4]], 50);
    });
  }

  it('maxPool gradient goes to the first of tied maxima, as on cpu', async () => {
    // Whole windows of zeros (as after a ReLU) and of equal negative values.
    const values = [0, 0, -1, -1, 0, 0, -1, -1, 2, 2, 3, 1, 2, 2, 3, 3];
    const gradient = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor4d(values, [1, 4, 4, 1]);
      const dx = tf.grad((input: tf.Tensor) => tf.maxPool(input as tf.Tensor4D, 2, 2, 'valid'))(x, tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]));
      const result = Array.from(dx.dataSync());
      tf.dispose([x, dx]);
      return result;
    };
    assert.deepEqual(await gradient('wasm'), await gradient('cpu'));
  });

  it('conv2d gradients match cpu with explicit numeric padding', async () => {
    await assertWasmMatchesCpu(
      (x, filter) => tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, 2, 1),
      [
        [2, 9, 8, 3],
        [3, 3, 3, 4],
      ],
      60,
    );
  });

  describe('depthwise gradient kernels with dilation 2 match cpu on the equivalent zero-inserted 5x5 filter', () => {
    dilatedDepthwiseGradientTests('wasm');
  });

  for (const [aShape, bShape, transposeA, transposeB] of [
    [[5, 7], [7, 3], false, false],
    [[7, 5], [7, 3], true, false],
    [[5, 7], [3, 7], false, true],
    [[7, 5], [3, 7], true, true],
    [[2, 4, 7], [2, 7, 3], false, false],
  ] as [Shape, Shape, boolean, boolean][]) {
    it(`matMul gradients match cpu ([${aShape}]${transposeA ? 'ᵀ' : ''} · [${bShape}]${transposeB ? 'ᵀ' : ''})`, async () => {
      await assertWasmMatchesCpu((a, b) => tf.matMul(a!, b!, transposeA, transposeB), [aShape, bShape], 80);
    });
  }

  // tfjs has no gradient for a batch of a times an unbatched b, so these compare the kernel itself.
  for (const [aShape, bShape, transposeA, transposeB] of [
    [[2, 4, 7], [7, 3], false, false],
    [[3, 2, 7, 4], [1, 3, 7], true, true],
    [[2, 7, 4], [2, 7, 3], true, false],
  ] as [Shape, Shape, boolean, boolean][]) {
    it(`BatchMatMul matches cpu ([${aShape}]${transposeA ? 'ᵀ' : ''} · [${bShape}]${transposeB ? 'ᵀ' : ''})`, async () => {
      const wasm = await kernelOn('wasm', 'BatchMatMul', { a: aShape, b: bShape }, { transposeA, transposeB }, 85);
      const cpu = await kernelOn('cpu', 'BatchMatMul', { a: aShape, b: bShape }, { transposeA, transposeB }, 85);
      assert.ok(maxRelativeError(wasm, cpu) <= 1e-4);
    });
  }

  for (const [shape, reps, dtype] of [
    [[1, 1, 1, 5], [2, 3, 4, 1], 'float32'],
    [[2, 3], [3, 2], 'float32'],
    [[2, 1, 3], [1, 4, 2], 'float32'],
    [[3], [1], 'float32'],
    [[2, 2, 2, 2], [2, 2, 2, 2], 'float32'],
    [[2, 2], [2, 3], 'int32'],
  ] as [Shape, number[], 'float32' | 'int32'][]) {
    it(`tile of [${shape}] by [${reps}] (${dtype}) matches cpu`, async () => {
      const tileOn = async (backend: string) => {
        await tf.setBackend(backend);
        const x = tf.cast(tf.mul(tf.tensor(randomValues(tf.util.sizeFromShape(shape), 95), shape), 10), dtype);
        const tiled = tf.tile(x, reps);
        const values = Array.from(tiled.dataSync());
        tf.dispose([x, tiled]);
        return values;
      };
      assert.deepEqual(await tileOn('wasm'), await tileOn('cpu'));
    });
  }

  it('batchNorm gradients (which tile per-channel values) match cpu', async () => {
    await assertWasmMatchesCpu(
      (x, scale, offset) => {
        const { mean, variance } = tf.moments(x!, [0, 1, 2]);
        return tf.batchNorm(x!, mean, variance, offset!, scale!, 1e-3);
      },
      [[3, 5, 7, 4], [4], [4]],
      97,
    );
  });

  it('trains a small conv net on wasm to the same weights as on cpu', async () => {
    const wasm = await trainSmallConvNet('wasm');
    const cpu = await trainSmallConvNet('cpu');
    wasm.forEach((w, i) => assert.ok(maxRelativeError(w, cpu[i]!) <= 1e-4, `weight ${i}`));
  });
});
