import * as tf from '@tensorflow/tfjs';
import { assertClose, randomInputs, randomValues, valuesOn } from './backend-compare.js';

/**
 * Declares, in the calling `describe`, the checks that `backend`'s depthwise gradient kernels with a 3x3
 * filter at dilation 2 give what cpu gives on the equivalent zero-inserted 5x5 filter at dilation 1.
 */
export function dilatedDepthwiseGradientTests(backend: string): void {
  const [batch, height, width, channels, multiplier] = [2, 11, 9, 3, 2];
  const inputShape = [batch, height, width, channels];
  const dyShape = [batch, height, width, channels * multiplier];
  /** Index of tap (row, column) of a 3x3 filter inside the dilated 5x5 one, per channel slot. */
  const dilatedIndex = (index: number) => {
    const slot = index % (channels * multiplier);
    const tap = Math.floor(index / (channels * multiplier));
    return (Math.floor(tap / 3) * 2 * 5 + (tap % 3) * 2) * channels * multiplier + slot;
  };
  const attrs = (filterSize: number, dilation: number) => ({
    strides: 1,
    dilations: dilation,
    pad: 'same',
    filterShape: [filterSize, filterSize, channels, multiplier],
    inputShape,
  });

  it('DepthwiseConv2dNativeBackpropFilter', async () => {
    const inputs = randomInputs({ x: inputShape, dy: dyShape }, 70);
    const run = (size: number, dilation: number) => (t: Record<string, tf.Tensor>) =>
      tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropFilter, { x: t.x!, dy: t.dy! }, attrs(size, dilation)) as tf.Tensor;
    const [dilated] = await valuesOn(backend, inputs, run(3, 2));
    const [cpu5x5] = await valuesOn('cpu', inputs, run(5, 1));
    assertClose([dilated!], [dilated!.map((_, i) => cpu5x5![dilatedIndex(i)]!)], 1e-4, 'dilated filter gradient');
  });

  it('DepthwiseConv2dNativeBackpropInput', async () => {
    const filter = randomValues(3 * 3 * channels * multiplier, 71);
    const dilatedFilter = new Float32Array(5 * 5 * channels * multiplier);
    filter.forEach((value, i) => {
      dilatedFilter[dilatedIndex(i)] = value;
    });
    const dy = randomValues(
      dyShape.reduce((a, b) => a * b),
      72,
    );
    const run = (size: number, dilation: number) => (t: Record<string, tf.Tensor>) =>
      tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropInput, { dy: t.dy!, filter: t.filter! }, attrs(size, dilation)) as tf.Tensor;
    const dx = await valuesOn(backend, { dy: { shape: dyShape, values: dy }, filter: { shape: [3, 3, channels, multiplier], values: filter } }, run(3, 2));
    const cpu = await valuesOn(
      'cpu',
      { dy: { shape: dyShape, values: dy }, filter: { shape: [5, 5, channels, multiplier], values: dilatedFilter } },
      run(5, 1),
    );
    assertClose(dx, cpu, 1e-4, 'dilated input gradient');
  });
}
