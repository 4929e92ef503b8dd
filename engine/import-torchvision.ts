import type { CheckpointPosition } from '../shared/checkpoint.js';
import { describeValue, InputError } from '../shared/errors.js';
import { float16BitsToFloat32, type NamedTensor } from '../shared/safetensors.js';
import { buildNetwork } from './models/index.js';
import { CLASSIFIER_WEIGHT, isIgnoredKey, type TorchvisionModel, toEngineLayout, torchvisionShape, torchvisionSource } from './models/torchvision.js';
import { disposeNetwork } from './network.js';

/** A torchvision state dict turned into this engine's parameters (W, biases, batch-norm γ, β and statistics; no M). */
export interface ImportedWeights {
  readonly parameters: Map<string, NamedTensor>;
  readonly numClasses: number;
}

/**
 * Maps a torchvision state dict (`tensors`, by key, as a safetensors or .pth file holds it) onto `model`'s
 * parameters: every key must be used once (BN's num_batches_tracked aside) and every parameter found,
 * with torchvision's shape; `source` names the file in errors, which name the key.
 */
export function importTorchvision(model: TorchvisionModel, tensors: ReadonlyMap<string, NamedTensor>, source: string): ImportedWeights {
  const classifier = tensors.get(CLASSIFIER_WEIGHT[model]);
  if (!classifier) throw new InputError(`${source}: tensor ${CLASSIFIER_WEIGHT[model]}`, 'is missing', { expected: `a torchvision ${model} state dict` });
  const numClasses = classifier.shape[0]!;
  if (classifier.shape.length !== 2 || !(numClasses >= 1))
    throw new InputError(`${source}: tensor ${CLASSIFIER_WEIGHT[model]}`, 'is not a classifier weight', { found: `shape [${classifier.shape}]` });
  // Built only for its parameter names and shapes; no layer is gated, so no M is made.
  const network = buildNetwork(model, { seed: 0, numClasses, granularityOf: () => 'none', maskInit: { mean: 0.5, std: 0 } });
  const parameters = new Map<string, NamedTensor>();
  const used = new Set<string>();
  try {
    for (const p of network.parameters) {
      const shape = p.variable.shape;
      const { key, layout } = torchvisionSource(model, p.name, shape.length);
      const where = `${source}: tensor ${key}`;
      const tensor = tensors.get(key);
      if (!tensor) throw new InputError(where, 'is missing', { expected: `a torchvision ${model} state dict (it holds ${p.name})` });
      const expected = torchvisionShape(layout, shape);
      if (tensor.shape.join('x') !== expected.join('x'))
        throw new InputError(where, 'has the wrong shape', { expected: `[${expected}]`, found: `[${tensor.shape}]` });
      parameters.set(p.name, { dtype: 'F32', shape: [...shape], data: toEngineLayout(asFloat32(tensor, where), layout, shape, where) });
      used.add(key);
    }
  } finally {
    disposeNetwork(network);
  }
  for (const key of tensors.keys()) {
    if (!used.has(key) && !isIgnoredKey(key))
      throw new InputError(`${source}: tensor ${key}`, `is not part of torchvision's ${model}`, { expected: 'a state dict of that architecture alone' });
  }
  return { parameters, numClasses };
}

/** A floating-point tensor's values as float32 (F16 and BF16 widen exactly; F64 rounds). */
function asFloat32(tensor: NamedTensor, where: string): Float32Array {
  switch (tensor.dtype) {
    case 'F32':
      return tensor.data as Float32Array;
    case 'F64':
      return Float32Array.from(tensor.data as Float64Array);
    case 'F16':
      return float16BitsToFloat32(tensor.data as Uint16Array);
    case 'BF16':
      return new Float32Array(Uint32Array.from(tensor.data as Uint16Array, (bits) => bits << 16).buffer);
    default:
      throw new InputError(where, 'is not a floating-point tensor', { expected: 'F32, F16, BF16 or F64', found: describeValue(tensor.dtype) });
  }
}

/** Where an imported checkpoint stands: before any phase of a run, stamped with the source file's digest. */
export function importPosition(model: TorchvisionModel, sha256: string): CheckpointPosition {
  return { phase: 'import', phaseIndex: 0, step: 0, epoch: 0, configHash: `import:${sha256}`, model };
}
