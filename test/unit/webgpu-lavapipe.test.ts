import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ALLOW_SOFTWARE_WEBGPU_ENV, initBackend } from '../../engine/backend.js';
import { assertSameStep, type StepNet, trainStep } from '../helpers/train-steps.js';
import { webgpuSuiteOnLavapipe } from '../helpers/webgpu.js';

/**
 * The webgpu backend on lavapipe (a CPU Vulkan driver, fetched by the test setup): the setup itself,
 * and AutoPrune iterations that must match the cpu backend's. Values only; never timings.
 */
describe('webgpu on lavapipe', () => {
  webgpuSuiteOnLavapipe();

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

  // In processes of their own, which find lavapipe through the environment the setup left (VK_ICD_FILENAMES).
  const nets: Array<[StepNet, string]> = [
    ['lenet5', 'LeNet-5'],
    ['small-resnet', 'a small ResNet (stem, bottlenecks with stride 2 and a projection, batch norm)'],
  ];
  for (const [net, what] of nets) {
    it(`${what}: an AutoPrune iteration (W step, M step) on webgpu matches cpu`, async () => {
      const [gpu, cpu] = await Promise.all([trainStep('webgpu', net, { [ALLOW_SOFTWARE_WEBGPU_ENV]: '1' }), trainStep('cpu', net)]);
      assert.equal(gpu.backend, 'webgpu', 'the step ran on webgpu, not on a fallback');
      assertSameStep(gpu, cpu);
    });
  }
});
