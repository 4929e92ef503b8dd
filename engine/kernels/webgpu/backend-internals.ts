/// <reference types="@webgpu/types" />
import type * as tf from '@tensorflow/tfjs';

/**
 * The parts of tfjs-backend-webgpu 4.22's WebGPUBackend that autoprune's kernels use. They encode
 * their dispatches into the backend's own command encoder and compute pass, so that they are
 * ordered with the package's kernels without extra submits, and they read the GPU buffers behind
 * its tensors. Most of these members are private in the package's typings (public in its
 * JavaScript); `webGpuInternals` checks that they are there, so that a package upgrade that moves
 * them fails at registration, not in the middle of a step.
 */
export interface WebGpuInternals {
  readonly device: GPUDevice;
  readonly tensorMap: { get(dataId: object): { resource?: unknown; dtype: string; shape: number[] } };
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  /** Data read or written by encoded, not yet submitted commands: their release waits for the submit. */
  readonly commandQueueOwnedIds: WeakSet<object>;
  /** Non-null while tf.time() measures kernels; each dispatch is then submitted on its own. */
  readonly activeTimers: unknown;
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

const REQUIRED_METHODS = ['uploadToGPU', 'ensureCommandEncoderReady', 'endComputePassEncoder', 'submitQueue', 'makeTensorInfo', 'disposeData'] as const;

/** `backend` as the internals above, or an error naming what the installed package lacks. */
export function webGpuInternals(backend: unknown): WebGpuInternals {
  const candidate = backend as Partial<Record<string, unknown>> | null;
  const missing = [
    ...REQUIRED_METHODS.filter((name) => typeof candidate?.[name] !== 'function'),
    ...['device', 'tensorMap', 'commandQueueOwnedIds'].filter((name) => candidate?.[name] == null),
    ...(candidate !== null && 'dispatchCountInPass' in candidate ? [] : ['dispatchCountInPass']),
  ];
  if (missing.length > 0) {
    throw new Error(`the webgpu backend lacks what autoprune's kernels use (${missing.join(', ')}); they are written for @tensorflow/tfjs-backend-webgpu 4.22`);
  }
  return backend as WebGpuInternals;
}

/** The storage buffer behind a tensor, uploaded first if its values are still on the CPU. */
export function bufferOf(internals: WebGpuInternals, info: tf.TensorInfo): GPUBuffer {
  internals.uploadToGPU(info.dataId);
  const resource = internals.tensorMap.get(info.dataId).resource;
  if (!(resource instanceof GPUBuffer)) throw new Error(`tensor [${info.shape}] is not held in a GPU buffer (a texture?)`);
  return resource;
}
