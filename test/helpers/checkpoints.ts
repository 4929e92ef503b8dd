import { join } from 'node:path';
import { CheckpointStore, type StoredCheckpoint } from '../../shared/checkpoint-store.js';

/** The newest valid checkpoint of a run directory. */
export async function newestCheckpoint(runDir: string): Promise<StoredCheckpoint> {
  const stored = await new CheckpointStore(join(runDir, 'checkpoints'), 1).latest();
  if (!stored) throw new Error(`${runDir} holds no valid checkpoint`);
  return stored;
}

/** Over all parameters, the largest difference relative to the tensor's largest magnitude. */
export function largestRelativeDifference(a: StoredCheckpoint, b: StoredCheckpoint): number {
  let worst = 0;
  for (const [name, tensor] of a.checkpoint.parameters) {
    const x = tensor.data as Float32Array;
    const y = b.checkpoint.parameters.get(name)!.data as Float32Array;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < x.length; i++) {
      scale = Math.max(scale, Math.abs(x[i]!));
      diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    }
    worst = Math.max(worst, scale === 0 ? diff : diff / scale);
  }
  return worst;
}
