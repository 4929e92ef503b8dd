import * as tf from '@tensorflow/tfjs';
// Registers the built-in wasm kernels, which these compose and some of which they replace.
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { autoPruneGateConfig } from './autoprune-gate.js';
import { autoPruneGateGradConfig } from './autoprune-gate-grad.js';
import { batchMatMulConfig } from './batch-mat-mul.js';
import { conv2DBackpropFilterConfig } from './conv2d-backprop-filter.js';
import { conv2DBackpropInputConfig } from './conv2d-backprop-input.js';
import { depthwiseConv2dNativeBackpropFilterConfig } from './depthwise-conv2d-native-backprop-filter.js';
import { depthwiseConv2dNativeBackpropInputConfig } from './depthwise-conv2d-native-backprop-input.js';
import { fusedOptimizerStepConfig } from './fused-optimizer-step.js';
import { maxPoolGradConfig } from './max-pool-grad.js';
import { backendMemory } from './simd-module.js';
import { tileConfig } from './tile.js';

/**
 * Training kernels for the wasm backend (@tensorflow/tfjs-backend-wasm 4.22): the ones it lacks,
 * and replacements for built-in ones that training uses and that are wrong or run as naive loops
 * many times slower than a composition. Each config says why its kernel is here.
 */

/** Kernels the wasm backend lacks. */
export const MISSING_WASM_KERNELS: readonly tf.KernelConfig[] = [
  conv2DBackpropFilterConfig,
  depthwiseConv2dNativeBackpropFilterConfig,
  depthwiseConv2dNativeBackpropInputConfig,
];

/** Replacements for built-in wasm kernels that are wrong or much slower. */
export const REPLACEMENT_WASM_KERNELS: readonly tf.KernelConfig[] = [conv2DBackpropInputConfig, maxPoolGradConfig, batchMatMulConfig, tileConfig];

/**
 * Registers the wasm kernels that training needs and the backend lacks, and replaces the built-in
 * ones that are wrong or much slower. Safe to call more than once, before or after the wasm
 * backend is initialised.
 */
export function registerWasmTrainingKernels(): void {
  for (const config of MISSING_WASM_KERNELS) {
    // A later tfjs-backend-wasm may bring its own; that one is likely faster than a composition.
    if (tf.getKernel(config.kernelName, 'wasm') === undefined) tf.registerKernel(config);
  }
  for (const config of REPLACEMENT_WASM_KERNELS) replaceKernel(config);
}

/**
 * autoprune's own ops on wasm as SIMD kernels on the backend's memory (simd-module.ts): the gate, its
 * gradient and the fused optimizer update. Registered once the backend is up, and only where its memory can
 * be shared; elsewhere (another tfjs-backend-wasm build) the ops are composed from core ops as before.
 */
export const SIMD_WASM_KERNELS: readonly tf.KernelConfig[] = [autoPruneGateConfig, autoPruneGateGradConfig, fusedOptimizerStepConfig];

/** Registers SIMD_WASM_KERNELS for the active wasm backend; whether they could be. */
export function registerWasmSimdKernels(backend: BackendWasm): boolean {
  if (backendMemory(backend) === undefined) return false;
  for (const config of SIMD_WASM_KERNELS) if (tf.getKernel(config.kernelName, 'wasm') === undefined) tf.registerKernel(config);
  return true;
}

function replaceKernel(config: tf.KernelConfig): void {
  const current = tf.getKernel(config.kernelName, 'wasm');
  if (current === undefined) throw new Error(`wasm backend has no '${config.kernelName}' kernel to replace`);
  if (current.kernelFunc === config.kernelFunc) return;
  tf.unregisterKernel(config.kernelName, 'wasm');
  tf.registerKernel(config);
}
