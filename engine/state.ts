import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { Checkpoint, CheckpointPosition, StoredOptimizer } from '../shared/checkpoint.js';
import { InputError } from '../shared/errors.js';
import type { NamedTensor } from '../shared/safetensors.js';
import type { Parameter } from './layers.js';
import type { OptimizerState } from './optimizers.js';

/**
 * Conversions between live tensors and the named float32 tensors that files and messages carry. Reads
 * are asynchronous: a GPU backend has no synchronous read in Node (tfjs-backend-webgpu's needs
 * OffscreenCanvas), and one await for many tensors lets the device finish its queue once.
 */

/** The tensors' values, read in one go, as named float32 tensors in the same order. */
export async function readNamedTensors(tensors: readonly tf.Tensor[]): Promise<NamedTensor[]> {
  const values = await Promise.all(tensors.map((t) => t.data()));
  return tensors.map((t, i) => ({ dtype: 'F32', shape: [...t.shape], data: values[i] as Float32Array }));
}

/** A map of live tensors as named tensors (same keys). */
export async function readTensorMap(tensors: ReadonlyMap<string, tf.Tensor>): Promise<Map<string, NamedTensor>> {
  const read = await readNamedTensors([...tensors.values()]);
  return new Map([...tensors.keys()].map((key, i) => [key, read[i]!]));
}

export function parameterTensors(parameters: readonly Parameter[]): Promise<Map<string, NamedTensor>> {
  return readTensorMap(new Map(parameters.map((p) => [p.name, p.variable])));
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
export async function optimizerTensors(state: OptimizerState): Promise<StoredOptimizer> {
  return { tensors: await readTensorMap(state.slots), step: state.step };
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
export async function captureCheckpoint(
  parameters: readonly Parameter[],
  optimizers: ReadonlyMap<string, OptimizerState>,
  position: CheckpointPosition,
): Promise<Checkpoint> {
  const stored = new Map<string, StoredOptimizer>();
  for (const [role, state] of optimizers) stored.set(role, await optimizerTensors(state));
  return { position, parameters: await parameterTensors(parameters), optimizers: stored };
}

/**
 * sha256 over every parameter's name and float32 bytes (W, M, batch-norm statistics): replicas that
 * applied the same updates agree bit for bit, so any difference means they diverged.
 */
export async function parametersDigest(parameters: readonly Parameter[]): Promise<string> {
  const hash = createHash('sha256');
  const read = await readNamedTensors(parameters.map((p) => p.variable));
  for (const [i, p] of parameters.entries()) {
    const values = read[i]!.data as Float32Array;
    hash.update(p.name).update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex');
}
