import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../engine/backend.js';
import { webgpuOnLavapipe } from '../helpers/webgpu.js';

/** The test setup itself: lavapipe is fetched, Dawn accepts it once allowed, and it computes. */
describe('webgpu on lavapipe', () => {
  before(async function () {
    await webgpuOnLavapipe(this);
  });
  after(async () => {
    await initBackend('cpu', () => {});
  });

  it('computes a matrix product that matches the cpu backend', async () => {
    const a = tf.tensor2d(
      Float32Array.from({ length: 37 * 19 }, (_, i) => Math.sin(i)),
      [37, 19],
    );
    const b = tf.tensor2d(
      Float32Array.from({ length: 19 * 23 }, (_, i) => Math.cos(i)),
      [19, 23],
    );
    const onGpu = await tf.matMul(a, b).data();
    const [aValues, bValues] = [await a.data(), await b.data()];
    await initBackend('cpu', () => {});
    const onCpu = tf.matMul(tf.tensor2d(aValues, [37, 19]), tf.tensor2d(bValues, [19, 23])).dataSync();
    for (let i = 0; i < onCpu.length; i++) assert.ok(Math.abs(onGpu[i]! - onCpu[i]!) <= 1e-4 * (1 + Math.abs(onCpu[i]!)), `element ${i}`);
  });
});
