import type { ModelName } from '../../shared/config.js';
import { InputError } from '../../shared/errors.js';
import { ALEXNET_POOLED } from './alexnet.js';
import { invertedResiduals, LAST_CONV } from './mobilenetv2.js';

/**
 * torchvision's state-dict names and layouts for the ImageNet networks: which torchvision tensor each
 * engine parameter comes from, and how its layout changes (PyTorch keeps conv kernels OIHW and linear
 * weights [out, in]; the engine keeps HWIO, depthwise [kh, kw, channels, 1] and [in, out]). Pure: the
 * importer (cli/import.ts) applies it to a file's tensors.
 */

export const TORCHVISION_MODELS = ['resnet50', 'mobilenetv2', 'alexnet'] as const satisfies readonly ModelName[];
export type TorchvisionModel = (typeof TORCHVISION_MODELS)[number];

export function isTorchvisionModel(name: string): name is TorchvisionModel {
  return (TORCHVISION_MODELS as readonly string[]).includes(name);
}

/**
 * How a torchvision tensor becomes an engine one. `conv`: OIHW → HWIO. `depthwise`: [C, 1, kh, kw] →
 * [kh, kw, C, 1]. `linear`: [out, in] → [in, out]. `linear-after-flatten`: the same for a linear layer
 * after a flatten, whose inputs are also reordered from PyTorch's C·H·W order to the engine's H·W·C.
 */
export type Layout = 'copy' | 'conv' | 'depthwise' | 'linear' | 'linear-after-flatten';

export interface TensorSource {
  readonly key: string;
  readonly layout: Layout;
}

/** torchvision keys that carry no engine parameter (BN's update counter). */
export function isIgnoredKey(key: string): boolean {
  return key.endsWith('.num_batches_tracked');
}

/** The key of the classifier's weight, whose first axis gives the number of classes. */
export const CLASSIFIER_WEIGHT: Readonly<Record<TorchvisionModel, string>> = {
  resnet50: 'fc.weight',
  mobilenetv2: 'classifier.1.weight',
  alexnet: 'classifier.6.weight',
};

/** Engine parameter suffixes and torchvision's names for them (batch norm: γ, β and the running statistics). */
const SUFFIXES: Readonly<Record<string, string>> = {
  weight: 'weight',
  bias: 'bias',
  gamma: 'weight',
  beta: 'bias',
  moving_mean: 'running_mean',
  moving_variance: 'running_var',
};

/** The torchvision module an engine layer or batch norm is; the engine's name where they agree. */
export function torchvisionModule(model: TorchvisionModel, engineName: string): string {
  return moduleNames(model).get(engineName) ?? engineName;
}

/** torchvision's module path for each engine layer or batch norm whose name differs. */
function moduleNames(model: TorchvisionModel): ReadonlyMap<string, string> {
  if (model === 'resnet50') return new Map();
  if (model === 'alexnet') {
    const convs = [0, 3, 6, 8, 10].map((index, i) => [`conv${i + 1}`, `features.${index}`] as const);
    return new Map([...convs, ['fc6', 'classifier.1'], ['fc7', 'classifier.4'], ['fc8', 'classifier.6']]);
  }
  const names = new Map<string, string>([
    ['features.0.conv', 'features.0.0'],
    ['features.0.bn', 'features.0.1'],
    [`${LAST_CONV}.conv`, `${LAST_CONV}.0`],
    [`${LAST_CONV}.bn`, `${LAST_CONV}.1`],
    ['classifier', 'classifier.1'],
  ]);
  for (const { name, expands } of invertedResiduals()) {
    // torchvision's `conv` sequence: [expand ConvBNReLU], depthwise ConvBNReLU, project conv, project BN.
    const first = expands ? 1 : 0;
    if (expands) {
      names.set(`${name}.expand`, `${name}.conv.0.0`);
      names.set(`${name}.expand.bn`, `${name}.conv.0.1`);
    }
    names.set(`${name}.depthwise`, `${name}.conv.${first}.0`);
    names.set(`${name}.depthwise.bn`, `${name}.conv.${first}.1`);
    names.set(`${name}.project`, `${name}.conv.${first + 1}`);
    names.set(`${name}.project.bn`, `${name}.conv.${first + 2}`);
  }
  return names;
}

/** The torchvision tensor an engine parameter comes from, given the parameter's name and rank. */
export function torchvisionSource(model: TorchvisionModel, parameter: string, rank: number): TensorSource {
  const dot = parameter.lastIndexOf('.');
  const owner = parameter.slice(0, dot);
  const suffix = SUFFIXES[parameter.slice(dot + 1)];
  if (suffix === undefined) throw new Error(`${model} parameter ${parameter} has no torchvision counterpart`);
  const key = `${torchvisionModule(model, owner)}.${suffix}`;
  if (suffix !== 'weight' || rank === 1) return { key, layout: 'copy' };
  if (rank === 2) return { key, layout: model === 'alexnet' && owner === 'fc6' ? 'linear-after-flatten' : 'linear' };
  return { key, layout: owner.endsWith('.depthwise') ? 'depthwise' : 'conv' };
}

/** The torchvision shape of a tensor whose engine shape is `shape` under `layout`. */
export function torchvisionShape(layout: Layout, shape: readonly number[]): number[] {
  switch (layout) {
    case 'copy':
      return [...shape];
    case 'conv':
      return [shape[3]!, shape[2]!, shape[0]!, shape[1]!];
    case 'depthwise':
      return [shape[2]! * shape[3]!, 1, shape[0]!, shape[1]!];
    case 'linear':
    case 'linear-after-flatten':
      return [shape[1]!, shape[0]!];
  }
}

/**
 * Rearranges a torchvision tensor's values (row-major in its torchvision shape) into the engine's layout;
 * `shape` is the engine shape. `where` names the tensor in errors.
 */
export function toEngineLayout(values: Float32Array, layout: Layout, shape: readonly number[], where: string): Float32Array {
  if (layout === 'copy') return values;
  const out = new Float32Array(values.length);
  if (layout === 'linear' || layout === 'linear-after-flatten') {
    const [inputs, outputs] = shape as [number, number];
    const channels = layout === 'linear' ? inputs : inputs / (ALEXNET_POOLED * ALEXNET_POOLED);
    if (!Number.isInteger(channels)) throw new InputError(where, 'cannot be read as a linear layer after a 6x6 pool', { found: `${inputs} inputs` });
    const positions = inputs / channels;
    for (let o = 0; o < outputs; o++) {
      for (let c = 0; c < channels; c++) {
        for (let p = 0; p < positions; p++) out[(p * channels + c) * outputs + o] = values[o * inputs + c * positions + p]!;
      }
    }
    return out;
  }
  // conv: engine [kh, kw, in, out] from torch [out, in, kh, kw]; depthwise: [kh, kw, C, 1] from [C, 1, kh, kw].
  const [kh, kw, inputs, outputs] = shape as [number, number, number, number];
  for (let o = 0; o < outputs; o++) {
    for (let i = 0; i < inputs; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          // Depthwise: engine channel i (multiplier o = 0) is torch's output channel i with its single input.
          const source = layout === 'conv' ? ((o * inputs + i) * kh + y) * kw + x : ((i * outputs + o) * kh + y) * kw + x;
          out[((y * kw + x) * inputs + i) * outputs + o] = values[source]!;
        }
      }
    }
  }
  return out;
}
