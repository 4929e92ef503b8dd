import * as tf from '@tensorflow/tfjs';
import type { AllReducer } from '../collective/index.js';
import type { GradientExchange } from '../engine/phase-runner.js';

/**
 * The distributed GradientExchange: each replica scales its gradients by its share of the global batch,
 * and the ring all-reduce sums them, so every replica ends with the global batch's gradients (identical
 * bytes on every rank, hence identical updates).
 */
export class AllReduceExchange implements GradientExchange {
  /** `observe`: told of every all-reduce, its seconds and float32 bytes and the ring's size (the worker's metrics). */
  constructor(
    private readonly reducer: AllReducer,
    private readonly observe?: (seconds: number, bytes: number, world: number) => void,
  ) {}

  async reduce(tensors: Map<string, tf.Tensor>, share: number, tag: { readonly step: number }): Promise<Map<string, tf.Tensor>> {
    // Map order is the parameter order, which every replica shares.
    const entries = [...tensors];
    const arrays = entries.map(([, tensor]) => {
      const scaled = tf.mul(tensor, share);
      const values = scaled.dataSync() as Float32Array;
      scaled.dispose();
      tensor.dispose();
      return values;
    });
    const started = performance.now();
    await this.reducer.allReduce(arrays, tag);
    const bytes = arrays.reduce((sum, values) => sum + values.byteLength, 0);
    this.observe?.((performance.now() - started) / 1000, bytes, this.reducer.group.world);
    return new Map(entries.map(([name, tensor], i) => [name, tf.tensor(arrays[i]!, tensor.shape, 'float32')]));
  }
}
