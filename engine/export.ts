import * as tf from '@tensorflow/tfjs';
import type { NamedTensor } from '../shared/safetensors.js';
import type { Network } from './network.js';
import { readNamedTensors } from './state.js';

/**
 * The pruned model as a plain safetensors file: for each prunable layer `<layer>.weight` already
 * multiplied by its mask (zeros where pruned) and `<layer>.mask` (U8, 1 = kept, W's shape whatever the
 * gate granularity); biases and batch-norm tensors as they are. M itself is not exported: the file must
 * be usable without knowing AutoPrune.
 */
export async function prunedTensors(network: Network, gated: boolean): Promise<Map<string, NamedTensor>> {
  const named: Array<[string, tf.Tensor, 'F32' | 'U8']> = [];
  const made: tf.Tensor[] = [];
  const maskedKernels = new Set<string>();
  for (const layer of network.maskedLayers) {
    maskedKernels.add(layer.kernel.name);
    const keep = gated ? layer.keepMask() : tf.onesLike(layer.kernel.variable);
    // where() rather than a product: pruned entries become +0, not -0 for negative weights.
    const weight = tf.tidy(() => tf.where(tf.cast(keep, 'bool'), layer.kernel.variable, tf.zerosLike(layer.kernel.variable)));
    named.push([layer.kernel.name, weight, 'F32'], [`${layer.name}.mask`, keep, 'U8']);
    made.push(keep, weight);
  }
  for (const p of network.parameters) {
    if (p.role === 'aux' || maskedKernels.has(p.name)) continue;
    named.push([p.name, p.variable, 'F32']);
  }
  try {
    const read = await readNamedTensors(named.map(([, t]) => t));
    return new Map(
      named.map(([name, , dtype], i) => [
        name,
        dtype === 'F32' ? read[i]! : { dtype: 'U8', shape: read[i]!.shape, data: Uint8Array.from(read[i]!.data as Float32Array) },
      ]),
    );
  } finally {
    tf.dispose(made);
  }
}

/** Kept weights according to a pruned file's masks: what `totals.remaining` of the report must equal. */
export function remainingFromMasks(tensors: ReadonlyMap<string, NamedTensor>): { params: number; remaining: number } {
  let params = 0;
  let remaining = 0;
  for (const [name, tensor] of tensors) {
    if (!name.endsWith('.mask')) continue;
    params += tensor.data.length;
    for (const value of tensor.data as Uint8Array) remaining += value;
  }
  return { params, remaining };
}
