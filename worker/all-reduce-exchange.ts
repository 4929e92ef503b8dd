import * as tf from '@tensorflow/tfjs';
import type { AllReducer } from '../collective/index.js';
import type { GradientExchange } from '../engine/phase-runner.js';

/**
 * The distributed GradientExchange: each replica scales its gradients by its share of the global batch,
 * and the ring all-reduce sums them, so every replica ends with the global batch's gradients (identical
 * bytes on every rank, hence identical updates).
 *
 * The gradients cross to the host as one flat buffer, read with one await (a GPU backend has no
 * synchronous read in Node, and one read waits for the device once), and come back as one upload. The
 * all-reduce sees each gradient as its own view of that buffer, so its bucket plan is that of separate arrays.
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
    if (entries.length === 0) return tensors;
    const flat = tf.tidy(() => tf.concat(entries.map(([, tensor]) => tf.reshape(tf.mul(tensor, share), [-1]))));
    for (const [, tensor] of entries) tensor.dispose();
    let values: Float32Array;
    try {
      values = (await flat.data()) as Float32Array;
    } finally {
      flat.dispose();
    }
    const arrays: Float32Array[] = [];
    let offset = 0;
    for (const [, tensor] of entries) {
      arrays.push(values.subarray(offset, offset + tensor.size));
      offset += tensor.size;
    }
    const started = performance.now();
    await this.reducer.allReduce(arrays, tag);
    this.observe?.((performance.now() - started) / 1000, values.byteLength, this.reducer.group.world);
    const reduced = tf.tidy(() =>
      tf
        .split(
          tf.tensor1d(values, 'float32'),
          arrays.map((a) => a.length),
        )
        .map((piece, i) => tf.reshape(piece, entries[i]![1].shape)),
    );
    return new Map(entries.map(([name], i) => [name, reduced[i]!]));
  }
}
