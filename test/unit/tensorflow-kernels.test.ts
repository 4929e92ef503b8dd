import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../engine/backend.js';
import { ForwardContext } from '../../engine/layers.js';
import { buildNetwork } from '../../engine/models/index.js';
import { disposeNetwork } from '../../engine/network.js';
import { maxRelativeError, randomValues } from '../helpers/backend-compare.js';
import { assertMatchesCpu, convolutionCases, gradientsOn, type Shape, trainSmallConvNet } from '../helpers/kernel-comparison.js';
import { skipBecause } from '../helpers/skip.js';
import { ensureTensorflowAddon } from '../helpers/tensorflow-addon.js';

/**
 * The tensorflow backend's kernels (TensorFlow's, through tfjs-node's binding) against cpu, on the
 * operations the networks train with: the same comparisons as the wasm kernels', where autoprune's own
 * kernels stand in for missing ones. docs/backends.md says where the two differ and by how much.
 */

/** TensorFlow's oneDNN kernels sum in another order than cpu: differences are float rounding, ~1e-7 here. */
const TOLERANCE = 1e-4;

function assertTensorflowMatchesCpu(f: (...inputs: tf.Tensor[]) => tf.Tensor, shapes: Shape[], seed: number): Promise<void> {
  return assertMatchesCpu('tensorflow', f, shapes, seed, TOLERANCE);
}

describe('tensorflow backend kernels against cpu', () => {
  let previousBackend: string | undefined;

  before(async function () {
    this.timeout(30 * 60_000);
    const addon = await ensureTensorflowAddon();
    if ('missing' in addon) skipBecause(this, `the tensorflow backend cannot be built here: ${addon.missing}`);
    previousBackend = tf.getBackend();
    assert.equal(await initBackend('tensorflow', assert.fail), 'tensorflow');
  });

  after(async () => {
    if (previousBackend) await tf.setBackend(previousBackend);
  });

  // Half the cases, to keep the suite short: per kernel size, stride 1 with same padding and stride 2 with valid.
  convolutionCases()
    .filter((_, index) => index % 4 === 0 || index % 4 === 3)
    .forEach((c, index) => {
      const label = `n${c.batch} ${c.height}x${c.width}x${c.channels} k${c.kernel} s${c.stride} ${c.pad}`;
      it(`conv2d and depthwiseConv2d gradients match cpu (${label} -> ${c.outChannels})`, async () => {
        const input = [c.batch, c.height, c.width, c.channels];
        await assertTensorflowMatchesCpu(
          (x, filter) => tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, c.stride, c.pad),
          [input, [c.kernel, c.kernel, c.channels, c.outChannels]],
          index * 10,
        );
        await assertTensorflowMatchesCpu(
          (x, filter) => tf.depthwiseConv2d(x as tf.Tensor4D, filter as tf.Tensor4D, c.stride, c.pad),
          [input, [c.kernel, c.kernel, c.channels, (index % 2) + 1]],
          index * 10 + 1,
        );
      });
    });

  it('fused conv2d (bias, relu) gradients match cpu', async () => {
    await assertTensorflowMatchesCpu(
      (x, filter, bias) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: filter as tf.Tensor4D, strides: 2, pad: 'same', bias, activation: 'relu' }),
      [[2, 9, 7, 3], [3, 3, 3, 4], [4]],
      40,
    );
  });

  it('maxPool and avgPool gradients match cpu (avgPool with valid padding)', async () => {
    for (const [pool, window, stride, pad] of [
      ['max', 2, 2, 'valid'],
      ['max', 3, 2, 'same'],
      ['avg', 2, 2, 'valid'],
    ] as const) {
      const op = pool === 'max' ? tf.maxPool : tf.avgPool;
      await assertTensorflowMatchesCpu((x) => op(x as tf.Tensor4D, window, stride, pad), [[3, 9, 7, 4]], 50);
    }
  });

  it("avgPool with same padding: tensorflow's gradient leaves the padding out, as the forward pass does; cpu's counts it", async () => {
    // 3x3 windows, stride 1, on a 3x3 image: an output averages 4 (corner), 6 (edge) or 9 (centre) inputs, and
    // each input's gradient is the sum of 1/count over the outputs whose window holds it.
    const n = 3;
    const inside = (i: number) => i >= 0 && i < n;
    const neighbours = (i: number, j: number) =>
      [-1, 0, 1].flatMap((a) => [-1, 0, 1].map((b) => [i + a, j + b] as const)).filter(([p, q]) => inside(p) && inside(q));
    const exact = Array.from({ length: n * n }, (_, k) => {
      const [i, j] = [Math.floor(k / n), k % n];
      return neighbours(i, j).reduce((sum, [p, q]) => sum + 1 / neighbours(p, q).length, 0);
    });
    const paddingCounted = Array.from({ length: n * n }, (_, k) => neighbours(Math.floor(k / n), k % n).length / 9);
    const gradient = async (backend: string) => {
      await tf.setBackend(backend);
      const dx = tf.grad((x: tf.Tensor) => tf.avgPool(x as tf.Tensor4D, 3, 1, 'same'))(tf.ones([1, n, n, 1]), tf.ones([1, n, n, 1]));
      const values = Float32Array.from(dx.dataSync());
      dx.dispose();
      return values;
    };
    assert.ok(maxRelativeError(await gradient('tensorflow'), Float32Array.from(exact)) <= 1e-6);
    assert.ok(maxRelativeError(await gradient('cpu'), Float32Array.from(paddingCounted)) <= 1e-6);
  });

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
    assert.deepEqual(await gradient('tensorflow'), await gradient('cpu'));
  });

  it('matMul (every transposition) and batchNorm gradients match cpu', async () => {
    for (const [aShape, bShape, transposeA, transposeB] of [
      [[5, 7], [7, 3], false, false],
      [[7, 5], [3, 7], true, true],
      [[2, 4, 7], [2, 7, 3], false, false],
    ] as [Shape, Shape, boolean, boolean][]) {
      await assertTensorflowMatchesCpu((a, b) => tf.matMul(a!, b!, transposeA, transposeB), [aShape, bShape], 80);
    }
    await assertTensorflowMatchesCpu(
      (x, scale, offset) => {
        const { mean, variance } = tf.moments(x!, [0, 1, 2]);
        return tf.batchNorm(x!, mean, variance, offset!, scale!, 1e-3);
      },
      [[3, 5, 7, 4], [4], [4]],
      97,
    );
  });

  it('gives the same bits for the same gradients twice (deterministic at a fixed thread count)', async () => {
    const f = (x: tf.Tensor, filter: tf.Tensor) => tf.relu(tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, 1, 'same'));
    const shapes = [
      [8, 14, 14, 6],
      [5, 5, 6, 16],
    ];
    const first = await gradientsOn('tensorflow', f, shapes, 5);
    const second = await gradientsOn('tensorflow', f, shapes, 5);
    first.forEach((gradient, i) => assert.deepEqual(second[i], gradient));
  });

  it('trains a small conv net to the same weights as cpu', async () => {
    const onTensorflow = await trainSmallConvNet('tensorflow');
    const cpu = await trainSmallConvNet('cpu');
    onTensorflow.forEach((w, i) => assert.ok(maxRelativeError(w, cpu[i]!) <= TOLERANCE, `weight ${i}`));
  });

  // torchvision's symmetric padding is numeric; tfjs-node's kernels take only 'same' and 'valid', so it is made explicit there.
  for (const model of ['resnet50', 'mobilenetv2'] as const) {
    it(`${model} with torchvision's numeric padding: the same eval logits as cpu`, async () => {
      await tf.setBackend('cpu');
      const network = buildNetwork(model, {
        seed: 5,
        inputShape: [32, 32, 3],
        numClasses: 10,
        granularityOf: () => 'weight',
        maskInit: { mean: 0.5, std: 0.1 },
      });
      const images = tf.tensor4d(randomValues(2 * 32 * 32 * 3, 120), [2, 32, 32, 3]);
      const context = () => new ForwardContext(false, 'off', 'softplus', 'sign', 0);
      try {
        const cpu = tf.tidy(() => network.apply(images, context())).dataSync() as Float32Array;
        await tf.setBackend('tensorflow');
        const onTensorflow = tf.tidy(() => network.apply(images, context())).dataSync() as Float32Array;
        assert.ok(maxRelativeError(onTensorflow, cpu) <= TOLERANCE, `relative error ${maxRelativeError(onTensorflow, cpu)}`);
      } finally {
        await tf.setBackend('tensorflow');
        images.dispose();
        disposeNetwork(network);
      }
    });
  }
});
