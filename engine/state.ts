import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { Checkpoint, CheckpointPosition } from '../shared/checkpoint.js';
import { InputError } from '../shared/errors.js';
import type { NamedTensor } from '../shared/safetensors.js';
import type { Parameter } from './layers.js';
import type { OptimizerState } from './optimizers.js';

/** Conversions between live tensors and the named float32 tensors that files and messages carry. */

export function toNamedTensor(tensor: tf.Tensor): NamedTensor {
  return { dtype: 'F32', shape: [...tensor.shape], data: tensor.dataSync() as Float32Array };
}

export function parameterTensors(parameters: readonly Parameter[]): Map<string, NamedTensor> {
  return new Map(parameters.map((p) => [p.name, toNamedTensor(p.variable)]));
}

/**
 * Assigns stored values to parameters, by name, checking dtype and shape. Parameters whose role is in
 * `optionalRoles` may be absent (e.g. M when starting pruning from a dense checkpoint).
 */
export function assignParameters(
  parameters: readonly Parameter[],
  stored: ReadonlyMap<string, NamedTensor>,
  source: string,
  optionalRoles: ReadonlyArray<Parameter['role']> = [],
): void {
  const known = new Set(parameters.map((p) => p.name));
  for (const name of stored.keys()) {
    if (!known.has(name))
      throw new InputError(`${source}: tensor ${name}`, 'is not a parameter of this network', { expected: 'a checkpoint of the same model' });
  }
  const checked: Array<[Parameter, NamedTensor]> = [];
  for (const p of parameters) {
    const tensor = stored.get(p.name);
    if (!tensor) {
      if (optionalRoles.includes(p.role)) continue;
      throw new InputError(source, `tensor ${p.name} is missing`, { expected: 'a checkpoint of the same model' });
    }
    checkTensor(tensor, p.variable.shape, `${source}: tensor ${p.name}`);
    checked.push([p, tensor]);
  }
  // Only assign once everything has been checked, so a bad file leaves the network as it was.
  for (const [p, tensor] of checked) p.variable.assign(tf.tensor(tensor.data as Float32Array, tensor.shape, 'float32'));
}

function checkTensor(tensor: NamedTensor, shape: readonly number[], where: string): void {
  if (tensor.dtype !== 'F32') throw new InputError(where, 'has the wrong dtype', { expected: 'F32', found: tensor.dtype });
  if (tensor.shape.join('x') !== shape.join('x')) throw new InputError(where, 'has the wrong shape', { expected: `[${shape}]`, found: `[${tensor.shape}]` });
}

/** An optimizer's slots as named tensors, its step count in the returned metadata. */
export function optimizerTensors(state: OptimizerState): { tensors: Map<string, NamedTensor>; step: number } {
  return { tensors: new Map([...state.slots].map(([key, t]) => [key, toNamedTensor(t)])), step: state.step };
}

export function optimizerStateFrom(tensors: ReadonlyMap<string, NamedTensor>, step: number, source: string): OptimizerState {
  const slots = new Map<string, tf.Tensor>();
  for (const [key, t] of tensors) {
    if (t.dtype !== 'F32') throw new InputError(`${source}: tensor ${key}`, 'has the wrong dtype', { expected: 'F32', found: t.dtype });
    slots.set(key, tf.tensor(t.data as Float32Array, t.shape, 'float32'));
  }
  return { step, slots };
}

/** The network's parameters and the optimizers' state at `position`, as a checkpoint. */
export function captureCheckpoint(parameters: readonly Parameter[], optimizers: ReadonlyMap<string, OptimizerState>, position: CheckpointPosition): Checkpoint {
  const stored = new Map([...optimizers].map(([role, state]) => [role, optimizerTensors(state)] as const));
  return { position, parameters: parameterTensors(parameters), optimizers: stored };
}

/**
 * sha256 over every parameter's name and float32 bytes (W, M, batch-norm statistics): replicas that
 * applied the same updates agree bit for bit, so any difference means they diverged.
 */
export function parametersDigest(parameters: readonly Parameter[]): string {
  const hash = createHash('sha256');
  for (const p of parameters) {
    const values = p.variable.dataSync() as Float32Array;
    hash.update(p.name).update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex');
}
