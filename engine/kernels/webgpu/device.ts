/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';

/**
 * The webgpu backend's device, made as the package makes it (the same limits) but also with
 * 'shader-f16' where the adapter has it, which autoprune's kernels can use. Asking for a feature
 * costs nothing; whether a kernel uses it is the switch below.
 */
const OPTIONAL_FEATURES: readonly GPUFeatureName[] = ['timestamp-query', 'shader-f16'];

/**
 * tfjs flag: the kernels with a half-precision variant (Conv2DBackpropFilter's workgroup tiles)
 * use it where the device has 'shader-f16'. Off by default: fp16 tiles round the operands to 11
 * significant bits (accumulation stays fp32). Set by the backend options (AUTOPRUNE_WEBGPU_F16=1).
 */
export const WEBGPU_F16_FLAG = 'AUTOPRUNE_WEBGPU_F16';

async function createBackend(): Promise<tf.KernelBackend> {
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (adapter === null) throw new Error('no WebGPU adapter found');
  const limits = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: OPTIONAL_FEATURES.filter((feature) => adapter.features.has(feature)),
    requiredLimits: {
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
    },
  });
  return new WebGPUBackend(device, adapter.info);
}

/**
 * Registers the factory above for 'webgpu' in place of the package's, if any (once: a backend made
 * by it is kept), with the package's priority, and the fp16 flag.
 */
export function registerWebGpuDevice(): void {
  if (!isRegisteredFlag(WEBGPU_F16_FLAG)) tf.env().registerFlag(WEBGPU_F16_FLAG, () => false);
  const current = tf.findBackendFactory('webgpu');
  if (current === createBackend) return;
  // The package registers its own only if navigator.gpu was there when it was first imported.
  if (current !== null) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', createBackend, 3);
}

function isRegisteredFlag(name: string): boolean {
  return (tf.env() as unknown as { flagRegistry: Record<string, unknown> }).flagRegistry[name] !== undefined;
}
