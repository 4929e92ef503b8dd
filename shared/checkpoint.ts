import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describeValue, InputError } from './errors.js';
import { decodeSafetensors, encodeSafetensors, type NamedTensor, readSafetensorsFile, writeSafetensorsFile } from './safetensors.js';

/**
 * One checkpoint: the network's parameters (W, M, batch-norm statistics) and each optimizer's state in
 * safetensors files, with the position in the run in the metadata. checkpoint-store.ts keeps a run's
 * checkpoints (manifests with checksums, atomic publication, retention).
 */

export const CHECKPOINT_FORMAT = 'autoprune-checkpoint/1';
const MODEL_FILE = 'model.safetensors';
const optimizerFile = (role: string) => `optimizer.${role}.safetensors`;

export interface CheckpointPosition {
  /** Name and index of the phase the run was in. */
  readonly phase: string;
  readonly phaseIndex: number;
  /** Steps completed in that phase. */
  readonly step: number;
  /** Epoch of the phase's weight-data stream. */
  readonly epoch: number;
  readonly configHash: string;
  readonly model: string;
}

export interface StoredOptimizer {
  readonly step: number;
  readonly tensors: Map<string, NamedTensor>;
}

export interface Checkpoint {
  readonly position: CheckpointPosition;
  readonly parameters: Map<string, NamedTensor>;
  /** By role: `weights` (W's optimizer), `aux` (M's). */
  readonly optimizers: Map<string, StoredOptimizer>;
}

/**
 * Writes a checkpoint's files into `dir` (which must exist), each flushed to disk; returns the names
 * written. The CheckpointStore stages, checks and publishes whole directories around this.
 */
export async function writeCheckpointFiles(dir: string, checkpoint: Checkpoint): Promise<string[]> {
  const metadata = positionMetadata(checkpoint.position);
  await writeSafetensorsFile(join(dir, MODEL_FILE), checkpoint.parameters, metadata);
  const names = [MODEL_FILE];
  for (const [role, optimizer] of checkpoint.optimizers) {
    await writeSafetensorsFile(join(dir, optimizerFile(role)), optimizer.tensors, { ...metadata, optimizerStep: String(optimizer.step) });
    names.push(optimizerFile(role));
  }
  return names;
}

function positionMetadata(p: CheckpointPosition): Record<string, string> {
  return {
    format: CHECKPOINT_FORMAT,
    phase: p.phase,
    phaseIndex: String(p.phaseIndex),
    step: String(p.step),
    epoch: String(p.epoch),
    configHash: p.configHash,
    model: p.model,
  };
}

const PARAMETER_PREFIX = 'parameter/';
const optimizerPrefix = (role: string) => `optimizer.${role}/`;

/**
 * A checkpoint as one safetensors byte buffer, for sending between processes (a worker's state to the
 * coordinator, the initial state to workers): parameters under `parameter/`, optimizer slots under
 * `optimizer.<role>/`, the position and optimizer steps in the metadata.
 */
export function encodeCheckpointSnapshot(checkpoint: Checkpoint): Buffer {
  const tensors = new Map<string, NamedTensor>();
  for (const [name, t] of checkpoint.parameters) tensors.set(PARAMETER_PREFIX + name, t);
  const metadata = positionMetadata(checkpoint.position);
  for (const [role, optimizer] of checkpoint.optimizers) {
    for (const [slot, t] of optimizer.tensors) tensors.set(optimizerPrefix(role) + slot, t);
    metadata[`optimizerStep.${role}`] = String(optimizer.step);
  }
  return encodeSafetensors(tensors, metadata);
}

export function decodeCheckpointSnapshot(bytes: Buffer, source: string): Checkpoint {
  const { tensors, metadata } = decodeSafetensors(bytes, source);
  const position = parsePosition(metadata, source);
  const parameters = new Map<string, NamedTensor>();
  const optimizers = new Map<string, StoredOptimizer>();
  for (const key of Object.keys(metadata)) {
    if (!key.startsWith('optimizerStep.')) continue;
    const role = key.slice('optimizerStep.'.length);
    optimizers.set(role, { step: parseCount(metadata, key, source), tensors: new Map() });
  }
  for (const [name, t] of tensors) {
    if (name.startsWith(PARAMETER_PREFIX)) {
      parameters.set(name.slice(PARAMETER_PREFIX.length), t);
      continue;
    }
    const role = [...optimizers.keys()].find((r) => name.startsWith(optimizerPrefix(r)));
    if (role === undefined)
      throw new InputError(`${source}: tensor ${name}`, 'belongs to no parameter or optimizer', {
        expected: `a name under ${PARAMETER_PREFIX} or optimizer.<role>/`,
      });
    optimizers.get(role)!.tensors.set(name.slice(optimizerPrefix(role).length), t);
  }
  return { position, parameters, optimizers };
}

/**
 * Reads a checkpoint directory, but only the files in `verified` (those its manifest lists and that
 * matched their checksums, see checkpoint-store.ts): a checkpoint file that is not among them is refused,
 * never read unchecked.
 */
export async function readCheckpoint(dir: string, verified: ReadonlySet<string>): Promise<Checkpoint> {
  const unlisted = (file: string) =>
    new InputError(join(dir, file), 'is not listed in the manifest, so it cannot be verified', { expected: `an entry for ${file} in manifest.json` });
  if (!verified.has(MODEL_FILE)) throw unlisted(MODEL_FILE);
  const model = await readSafetensorsFile(join(dir, MODEL_FILE));
  const position = parsePosition(model.metadata, join(dir, MODEL_FILE));
  const optimizers = new Map<string, StoredOptimizer>();
  for (const role of ['weights', 'aux']) {
    const file = optimizerFile(role);
    const path = join(dir, file);
    if (!verified.has(file)) {
      if (await exists(path)) throw unlisted(file);
      continue;
    }
    const stored = await readSafetensorsFile(path);
    optimizers.set(role, { step: parseCount(stored.metadata, 'optimizerStep', path), tensors: stored.tensors });
  }
  return { position, parameters: model.tensors, optimizers };
}

function parsePosition(metadata: Record<string, string>, source: string): CheckpointPosition {
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new InputError(source, 'unknown checkpoint format', { expected: CHECKPOINT_FORMAT, found: describeValue(metadata.format) });
  }
  const text = (key: string) => {
    const value = metadata[key];
    if (value === undefined) throw new InputError(source, `metadata key ${key} is missing`);
    return value;
  };
  return {
    phase: text('phase'),
    phaseIndex: parseCount(metadata, 'phaseIndex', source),
    step: parseCount(metadata, 'step', source),
    epoch: parseCount(metadata, 'epoch', source),
    configHash: text('configHash'),
    model: text('model'),
  };
}

function parseCount(metadata: Record<string, string>, key: string, source: string): number {
  const value = Number(metadata[key]);
  if (metadata[key] === undefined || !Number.isSafeInteger(value) || value < 0) {
    throw new InputError(source, `metadata key ${key} is not a count`, { found: describeValue(metadata[key]) });
  }
  return value;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
