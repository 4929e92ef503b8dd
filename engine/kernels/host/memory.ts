import type * as tf from '@tensorflow/tfjs';

/**
 * Float32 views of tensors in the cpu backend's memory (a typed array per tensor), for kernels written as
 * loops (gate-math.ts, adam.ts). `alloc` makes every output before any view is taken.
 */
export interface HostMemory {
  alloc(shapes: readonly (readonly number[])[]): tf.TensorInfo[];
  view(info: tf.TensorInfo): Float32Array;
}

interface CpuBackendLike {
  data: { get(dataId: object): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: 'float32', values?: Float32Array): tf.TensorInfo;
}

export function cpuMemory(backend: object): HostMemory {
  const cpu = backend as CpuBackendLike;
  return {
    alloc: (shapes) => shapes.map((shape) => cpu.makeTensorInfo([...shape], 'float32', new Float32Array(shape.reduce((a, b) => a * b, 1)))),
    view: (info) => cpu.data.get(info.dataId).values as Float32Array,
  };
}
