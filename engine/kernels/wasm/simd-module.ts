import type * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { KERNELS_WASM_BASE64 } from './simd/kernels-module.js';

/**
 * autoprune's wasm SIMD kernels (simd/kernels.c), instantiated on the wasm backend's own memory so that
 * they read and write its tensors in place. One instance per backend; the pointers are byte offsets of
 * tensors in that memory.
 */
export interface SimdKernels {
  gate_forward(w: number, m: number, out: number, n: number): void;
  gate_backward(
    dy: number,
    w: number,
    m: number,
    dw: number,
    dm: number,
    n: number,
    surrogate: number,
    magnitudeRule: number,
    penalty: number,
    nRatio: number,
  ): void;
  adam_update(
    p: number,
    g: number,
    m: number,
    v: number,
    gate: number,
    pOut: number,
    mOut: number,
    vOut: number,
    n: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    stepSize: number,
    epsilonHat: number,
    decayed: number,
    l1: number,
    l2: number,
  ): void;
  sgd_update(
    p: number,
    g: number,
    buffer: number,
    gate: number,
    pOut: number,
    bufferOut: number,
    n: number,
    momentum: number,
    nesterov: number,
    learningRate: number,
    decayed: number,
    l1: number,
    l2: number,
  ): void;
}

const instances = new WeakMap<object, SimdKernels>();
let compiled: WebAssembly.Module | undefined;

/** The wasm backend's memory, where this tfjs-backend-wasm build exposes it (its emscripten module's exports). */
export function backendMemory(backend: BackendWasm): WebAssembly.Memory | undefined {
  const memory = (backend.wasm as unknown as { asm?: { memory?: unknown } }).asm?.memory;
  // A shared memory (the threaded build) would need the module built for shared memory.
  return memory instanceof WebAssembly.Memory && !(memory.buffer instanceof SharedArrayBuffer) ? memory : undefined;
}

/** The kernels on `backend`'s memory. */
export function simdKernels(backend: BackendWasm): SimdKernels {
  let kernels = instances.get(backend);
  if (kernels === undefined) {
    const memory = backendMemory(backend);
    if (memory === undefined)
      throw new Error("autoprune's wasm SIMD kernels need the wasm backend's memory, which this tfjs-backend-wasm build does not expose");
    compiled ??= new WebAssembly.Module(Buffer.from(KERNELS_WASM_BASE64, 'base64'));
    kernels = new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as SimdKernels;
    instances.set(backend, kernels);
  }
  return kernels;
}

/** The byte offset of a float32 tensor's data in the backend's memory. */
export function pointer(backend: BackendWasm, info: tf.TensorInfo): number {
  if (info.dtype !== 'float32') throw new Error(`autoprune's wasm SIMD kernels take float32 tensors, got ${info.dtype}`);
  return backend.dataIdMap.get(info.dataId)!.memoryOffset;
}
