import * as tf from '@tensorflow/tfjs';
import { autoPruneGateConfig } from './autoprune-gate.js';
import { autoPruneGateGradConfig } from './autoprune-gate-grad.js';
import { batchNormActivateConfig } from './batch-norm-activate.js';
import { batchNormGradConfig } from './batch-norm-grad.js';
import { conv2DBackpropFilterConfig } from './conv2d-backprop-filter.js';
import { depthwiseConv2dNativeBackpropFilterConfig } from './depthwise-conv2d-native-backprop-filter.js';
import { depthwiseConv2dNativeBackpropInputConfig } from './depthwise-conv2d-native-backprop-input.js';
import { registerWebGpuDevice } from './device.js';
import { fusedOptimizerStepConfig } from './fused-optimizer-step.js';
import { movingMomentsConfig } from './moving-moments.js';
import { addReluConfig, reluGradConfig } from './residual-join.js';

/**
 * autoprune's own WGSL kernels for the webgpu backend (@tensorflow/tfjs-backend-webgpu 4.22): the
 * training kernels the package runs naively or composes from many dispatches, and the fused ops
 * autoprune defines. docs/gpu-notes.md ("Kernels") describes each one's design and saving.
 */
export const WEBGPU_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterConfig,
  depthwiseConv2dNativeBackpropFilterConfig,
  depthwiseConv2dNativeBackpropInputConfig,
  batchNormActivateConfig,
  batchNormGradConfig,
  movingMomentsConfig,
  addReluConfig,
  reluGradConfig,
  autoPruneGateConfig,
  autoPruneGateGradConfig,
  fusedOptimizerStepConfig,
];

export { WEBGPU_F16_FLAG } from './device.js';

/**
 * Registers the device factory (device.ts) and the kernels over the package's (or beside them, for autoprune's own ops), and selects
 * the package's tiled (implicit-GEMM) Conv2DBackpropInput, which it has but leaves off by default
 * in favour of a naive one; test/unit/webgpu-conv-kernels.test.ts checks it against cpu. Safe to
 * call more than once; call it after the package is imported.
 */
export function registerWebGpuKernels(): void {
  registerWebGpuDevice();
  tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', false);
  for (const config of WEBGPU_KERNELS) {
    const current = tf.getKernel(config.kernelName, 'webgpu');
    if (current?.kernelFunc === config.kernelFunc) continue;
    if (current !== undefined) tf.unregisterKernel(config.kernelName, 'webgpu');
    tf.registerKernel(config);
  }
}
