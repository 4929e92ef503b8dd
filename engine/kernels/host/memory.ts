import type * as tf from '@tensorflow/tfjs';

/**
 * Float32 views of tensors in host memory, for kernels written as loops (gate-math.ts): the cpu backend
 * keeps a typed array per tensor; the wasm backend keeps them in its heap. `alloc` makes every output
 * before any view is taken, since a wasm allocation may grow (and so move) the heap.
 */
export interface HostMemory {
  alloc(shapes: readonly (readonly number[])[]): tf.TensorInfo[];
  view(info: tf.TensorInfo): Float32Array;
}

interface CpuBackendLike {
  data: { get(dataId: object): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: 'float32', values?: Float32Array): tf.TensorInfo;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

export function cpuMemory(backend: object): HostMemory {
  const cpu = backend as CpuBackendLike;
  return {
    alloc: (shapes) => shapes.map((shape) => cpu.makeTensorInfo([...shape], 'float32', new Float32Array(shape.reduce((a, b) => a * b, 1)))),
    view: (info) => cpu.data.get(info.dataId).values as Float32Array,
  };
}

export function wasmMemory(backend: object): HostMemory {
  const wasm = backend as WasmBackendLike;
  return {
    alloc: (shapes) => shapes.map((shape) => wasm.makeOutput([...shape], 'float32')),
    view: (info) => wasm.typedArrayFromHeap(info),
  };
}
