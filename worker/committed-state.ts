import * as tf from '@tensorflow/tfjs';
import type { Parameter } from '../engine/layers.js';
import type { PhaseOptimizers } from '../engine/phase-runner.js';
import { readTensorMap } from '../engine/state.js';
import type { Checkpoint, CheckpointPosition, StoredOptimizer } from '../shared/checkpoint.js';

/**
 * The state after the last completed step, held in this worker's memory (copies on the device, made after
 * every step): when a peer fails, the run goes on from the furthest such state among the survivors rather
 * than from the last checkpoint, so at most the interrupted step is redone. It outlives generations.
 */
export class CommittedState {
  private parameters = new Map<string, tf.Tensor>();
  private optimizers = new Map<string, { step: number; slots: Map<string, tf.Tensor> }>();
  private at: CheckpointPosition | undefined;

  get position(): CheckpointPosition | undefined {
    return this.at;
  }

  commit(parameters: readonly Parameter[], optimizers: PhaseOptimizers, position: CheckpointPosition): void {
    this.dispose();
    this.parameters = new Map(parameters.map((p) => [p.name, tf.clone(p.variable)]));
    for (const [role, optimizer] of [
      ['weights', optimizers.weights],
      ['aux', optimizers.aux],
    ] as const) {
      if (!optimizer) continue;
      const state = optimizer.state();
      this.optimizers.set(role, { step: state.step, slots: new Map([...state.slots].map(([key, t]) => [key, tf.clone(t)])) });
    }
    this.at = position;
  }

  /** The committed state as a checkpoint (read back from the device), or undefined before the first step. */
  async snapshot(): Promise<Checkpoint | undefined> {
    const position = this.at;
    if (!position) return undefined;
    const optimizers = new Map<string, StoredOptimizer>();
    for (const [role, o] of this.optimizers) optimizers.set(role, { step: o.step, tensors: await readTensorMap(o.slots) });
    return { position, parameters: await readTensorMap(this.parameters), optimizers };
  }

  dispose(): void {
    for (const t of this.parameters.values()) t.dispose();
    for (const { slots } of this.optimizers.values()) for (const t of slots.values()) t.dispose();
    this.parameters.clear();
    this.optimizers.clear();
    this.at = undefined;
  }
}
