import { join } from 'node:path';
import { CheckpointStore, type StoredCheckpoint } from '../../shared/checkpoint-store.js';
import type { NamedTensor } from '../../shared/safetensors.js';

/** The newest valid checkpoint of a run directory. */
export async function newestCheckpoint(runDir: string): Promise<StoredCheckpoint> {
  const stored = await new CheckpointStore(join(runDir, 'checkpoints'), 1).latest();
  if (!stored) throw new Error(`${runDir} holds no valid checkpoint`);
  return stored;
}

/** The largest difference between two tensors, relative to the first one's largest magnitude. */
export function tensorRelativeDifference(a: NamedTensor, b: NamedTensor): number {
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  if (x.length !== y.length) throw new Error(`tensors of ${x.length} and ${y.length} elements`);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < x.length; i++) {
    scale = Math.max(scale, Math.abs(x[i]!));
    diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Over all parameters, the largest difference relative to the tensor's largest magnitude. */
export function largestRelativeDifference(a: StoredCheckpoint, b: StoredCheckpoint): number {
  let worst = 0;
  for (const [name, tensor] of a.checkpoint.parameters) worst = Math.max(worst, tensorRelativeDifference(tensor, b.checkpoint.parameters.get(name)!));
  return worst;
}
