import type * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { AUTOPRUNE_GATE } from '../../gates.js';
import type { KernelArgs } from './kernel-args.js';
import { pointer, simdKernels } from './simd-module.js';

/** Throws unless every tensor has the first one's shape. */
export function sameShape(kernel: string, infos: Readonly<Record<string, tf.TensorInfo>>): number[] {
  const [first, ...rest] = Object.entries(infos);
  for (const [name, info] of rest) {
    if (info.shape.join(',') !== first![1].shape.join(','))
      throw new Error(`${kernel}: ${name} [${info.shape}] does not match ${first![0]} [${first![1].shape}]`);
  }
  return [...first![1].shape];
}

/**
 * AutoPruneGate (contract in engine/gates.ts) on wasm: W · 1[M ≥ 0] in one SIMD pass over the backend's
 * memory (simd/kernels.c), bit-identical to the composition's comparison, cast and product.
 */
function autoPruneGate(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { weights, aux } = args.inputs as { weights: tf.TensorInfo; aux: tf.TensorInfo };
  const shape = sameShape(AUTOPRUNE_GATE, { weights, aux });
  const out = backend.makeOutput(shape, 'float32');
  const size = shape.reduce((a, b) => a * b, 1);
  simdKernels(backend).gate_forward(pointer(backend, weights), pointer(backend, aux), pointer(backend, out), size);
  return out;
}

export const autoPruneGateConfig: tf.KernelConfig = { kernelName: AUTOPRUNE_GATE, backendName: 'wasm', kernelFunc: autoPruneGate };
