import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../engine/backend.js';
import { lavapipe, useLavapipe } from './lavapipe.js';
import { skipBecause } from './skip.js';

/**
 * Activates the webgpu backend on lavapipe for the tests of a suite (call from a before-all hook as
 * `await webgpuOnLavapipe(this)`), fetching lavapipe first if need be. Skips the suite, with the reason,
 * only when lavapipe cannot be had on this machine. Timings on it mean nothing: tests compare values.
 */
export async function webgpuOnLavapipe(context: Mocha.Context): Promise<void> {
  context.timeout(10 * 60_000);
  const found = await lavapipe();
  if ('missing' in found) skipBecause(context, `no CPU Vulkan driver for the webgpu tests: ${found.missing}`);
  useLavapipe(found);
  await initBackend('webgpu', () => {}, { allowSoftwareWebGpu: true });
  if (tf.getBackend() !== 'webgpu') throw new Error(`the webgpu backend did not become active (now ${tf.getBackend()})`);
}

/**
 * The hooks of a suite that compares webgpu with cpu: cpu first (with autoprune's cpu kernels registered,
 * the reference), then webgpu on lavapipe for the suite's tests (webgpuOnLavapipe), and cpu again after it.
 * Call it at the top of the suite's `describe`.
 */
export function webgpuSuiteOnLavapipe(): void {
  before(async function () {
    await initBackend('cpu', () => {});
    await webgpuOnLavapipe(this);
  });
  after(async () => {
    await initBackend('cpu', () => {});
  });
}
