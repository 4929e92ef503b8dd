import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { maxRelativeError, randomValues } from './backend-compare.js';

/** Runs the same gradients and kernels on an accelerated backend and on cpu, the reference, for the kernel tests. */

export type Pad = 'same' | 'valid';
export type Shape = number[];

/**
 * Gradients of Σ f(inputs)·r (r random, so dy is random) with respect to every input, computed on
 * `backend`. Also checks that neither the engine nor the backend keeps anything afterwards.
 */
export async function gradientsOn(backend: string, f: (...inputs: tf.Tensor[]) => tf.Tensor, shapes: Shape[], seed: number): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const tensorsBefore = tf.memory().numTensors;
  const dataBefore = tf.engine().backend.numDataIds();
  const inputs = shapes.map((shape, i) => tf.tensor(randomValues(tf.util.sizeFromShape(shape), seed + i), shape));
  const grads = tf.grads((...xs: tf.Tensor[]) => {
    const y = f(...xs);
    return tf.sum(tf.mul(y, tf.tensor(randomValues(y.size, seed + 100), y.shape)));
  })(inputs);
  const values = grads.map((g) => g.dataSync() as Float32Array);
  tf.dispose([...inputs, ...grads]);
  assert.equal(tf.memory().numTensors, tensorsBefore, `${backend} leaks tensors`);
  assert.equal(tf.engine().backend.numDataIds(), dataBefore, `${backend} leaks backend data`);
  return values;
}

/** Runs one kernel directly on both backends (for attributes that tf.grad never produces). */
export async function kernelOn(
  backend: string,
  kernelName: string,
  shapes: Record<string, Shape>,
  attrs: tf.NamedAttrMap,
  seed: number,
): Promise<Float32Array> {
  await tf.setBackend(backend);
  const inputs = Object.fromEntries(
    Object.entries(shapes).map(([name, shape], i) => [name, tf.tensor(randomValues(tf.util.sizeFromShape(shape), seed + i), shape)]),
  );
  const out = tf.engine().runKernel(kernelName, inputs, attrs) as tf.Tensor;
  const values = out.dataSync() as Float32Array;
  tf.dispose([...Object.values(inputs), out]);
  return values;
}

/** Gradients of `f` on `backend` agree with cpu's to `tolerance` (relative to each gradient's largest value). */
export async function assertMatchesCpu(
  backend: string,
  f: (...inputs: tf.Tensor[]) => tf.Tensor,
  shapes: Shape[],
  seed: number,
  tolerance: number,
): Promise<void> {
  const actual = await gradientsOn(backend, f, shapes, seed);
  const cpu = await gradientsOn('cpu', f, shapes, seed);
  actual.forEach((grad, i) => {
    const error = maxRelativeError(grad, cpu[i]!);
    assert.ok(error <= tolerance, `gradient ${i} (input shape [${shapes[i]}]): relative error ${error.toExponential(2)}`);
  });
}

/** Shapes that cover batch sizes, odd spatial sizes, channel counts, kernels 1/3/5, strides 1/2 and both paddings. */
export function convolutionCases(): {
  batch: number;
  height: number;
  width: number;
  channels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  pad: Pad;
}[] {
  const pick = (values: number[], i: number) => values[i % values.length]!;
  const cases = [];
  let i = 0;
  for (const kernel of [1, 3, 5]) {
    for (const stride of [1, 2]) {
      for (const pad of ['same', 'valid'] as Pad[]) {
        cases.push({
          batch: pick([1, 2, 3, 5], i),
          height: kernel + pick([0, 2, 4, 6], i + 1),
          width: kernel + pick([4, 1, 3, 0, 2], i),
          channels: pick([1, 3, 2, 4], i),
          outChannels: pick([2, 5, 1, 3], i + 2),
          kernel,
          stride,
          pad,
        });
        i++;
      }
    }
  }
  return cases;
}

/** Three SGD steps of a small conv net (conv, depthwise, pointwise, max pool, dense) on `backend`: its weights after. */
export async function trainSmallConvNet(backend: string): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const weights = [
    [3, 3, 1, 4],
    [3, 3, 4, 1],
    [1, 1, 4, 3],
    [27, 2],
  ].map((shape, i) => tf.variable(tf.tensor(randomValues(tf.util.sizeFromShape(shape), 90 + i), shape)));
  const [conv, depthwise, pointwise, dense] = weights as [tf.Variable<tf.Rank.R4>, tf.Variable<tf.Rank.R4>, tf.Variable<tf.Rank.R4>, tf.Variable<tf.Rank.R2>];
  const images = tf.tensor4d(randomValues(4 * 8 * 8, 99), [4, 8, 8, 1]);
  const labels = tf.oneHot(tf.tensor1d([0, 1, 1, 0], 'int32'), 2);
  const optimizer = tf.train.sgd(0.1);
  for (let i = 0; i < 3; i++) {
    optimizer.minimize(() => {
      let h = tf.relu6(tf.conv2d(images, conv, 1, 'same'));
      h = tf.relu(tf.depthwiseConv2d(h, depthwise, 2, 'same'));
      h = tf.maxPool(tf.conv2d(h, pointwise, 1, 'valid'), 2, 1, 'valid');
      return tf.losses.softmaxCrossEntropy(labels, tf.matMul(tf.reshape(h, [4, 27]), dense));
    });
  }
  const values = weights.map((w) => w.dataSync() as Float32Array);
  tf.dispose([...weights, images, labels]);
  optimizer.dispose();
  return values;
}
