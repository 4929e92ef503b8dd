import * as tf from '@tensorflow/tfjs';
import { autoPruneGateConfig } from './autoprune-gate.js';
import { autoPruneGateGradConfig } from './autoprune-gate-grad.js';

/**
 * autoprune's own WGSL kernels for the webgpu backend (@tensorflow/tfjs-backend-webgpu 4.22): the
 * training kernels the package runs naively or composes from many dispatches, and the fused ops
 * autoprune defines. docs/gpu-notes.md ("Kernels") describes each one's design and saving.
 */
export const WEBGPU_KERNELS: readonly tf.KernelConfig[] = [autoPruneGateConfig, autoPruneGateGradConfig];

/**
 * Registers the kernels over the package's (or beside them, for autoprune's own ops). Safe to call
 * more than once; call it after the package is imported, before or after the backend initialises.
 */
export function registerWebGpuKernels(): void {
  for (const config of WEBGPU_KERNELS) {
    const current = tf.getKernel(config.kernelName, 'webgpu');
    if (current?.kernelFunc === config.kernelFunc) continue;
    if (current !== undefined) tf.unregisterKernel(config.kernelName, 'webgpu');
    tf.registerKernel(config);
  }
}
