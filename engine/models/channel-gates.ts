import type { ModelName } from '../../shared/config.js';
import { InputError } from '../../shared/errors.js';
import type { Granularity } from '../gates.js';
import type { Gating } from '../layers.js';
import { invertedResiduals } from './mobilenetv2.js';
import { bottlenecks } from './resnet50.js';

/**
 * Channel pruning as the paper does it: which output channels `granularity: neuron` gates in each model,
 * and where each gated channel goes, so that closing it can be counted (counters.ts) and removed from a
 * thin model. Pure data and functions of the model name; the models build the gates these name.
 *
 * - ResNet-50: one gate per output channel of each bottleneck's conv1 and conv2. Never conv3 or the
 *   downsample conv (their outputs are summed in the residual addition), nor the stem or fc.
 * - MobileNetV2: the expansion (1x1) conv's output channels inside each inverted residual. The depthwise
 *   conv follows them: the same gate closes its matching output (after its BN and ReLU6), so its filter
 *   and BN entries go with the channel. Never the projections (their outputs feed the additions), the
 *   stem, features.18 or the classifier.
 * - AlexNet: weight granularity unless the config says neuron; then conv1…conv5, fc6 and fc7 (never the
 *   logits of fc8).
 * - LeNet-300-100, LeNet-5, the VGG-like net: every layer, as before (their classifier's gates close
 *   logits, which a thin model keeps as zeros).
 *
 * A gate closes a unit after the layer's batch norm and activation, so a closed channel is exactly zero
 * where its consumer reads it: the consumer's input channel (and a depthwise filter) can go too.
 */

/** One gated layer's output channels and everything that goes with each of them. */
export interface ChannelGroup {
  /** The conv or dense layer whose output units the gates close (its `.mask` holds one M per unit). */
  readonly layer: string;
  /** Batch norm over those units, whose entries go with them. */
  readonly batchNorm?: string;
  /** A depthwise conv carrying the same units, closed by the same gates: its filters and BN entries go with them. */
  readonly depthwise?: { readonly layer: string; readonly batchNorm: string };
  /**
   * The layer that reads the units: its input channel c goes with unit c. For a dense consumer after a
   * flatten of an H×W×C map, that is inputs p·C + c for every position p (NHWC flatten order).
   */
  readonly consumer: string;
}

export interface ChannelRule {
  /** Layers that `granularity: neuron` gates, one gate per output unit; every other layer stays ungated. */
  readonly neuronLayers: readonly string[];
  /** Where the units of the gated layers go (a gated layer without a group feeds the logits). */
  readonly groups: readonly ChannelGroup[];
  /** Layers whose output feeds a residual addition, with the addition: never neuron-gated. */
  readonly feedsAddition: ReadonlyMap<string, string>;
}

/** A chain of layers each read by the next; `batchNorm` names a layer's BN, if it has one. */
function sequential(layers: readonly string[], batchNorm: (layer: string) => string | undefined = () => undefined): ChannelRule {
  const groups = layers.slice(0, -1).map((layer, i): ChannelGroup => {
    const bn = batchNorm(layer);
    return { layer, ...(bn ? { batchNorm: bn } : {}), consumer: layers[i + 1]! };
  });
  return { neuronLayers: layers, groups, feedsAddition: new Map() };
}

const numbered = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i + 1}`);

function resnet50Rule(): ChannelRule {
  const groups: ChannelGroup[] = [];
  const feedsAddition = new Map<string, string>();
  for (const { name, projection } of bottlenecks()) {
    groups.push({ layer: `${name}.conv1`, batchNorm: `${name}.bn1`, consumer: `${name}.conv2` });
    groups.push({ layer: `${name}.conv2`, batchNorm: `${name}.bn2`, consumer: `${name}.conv3` });
    feedsAddition.set(`${name}.conv3`, `${name}'s residual addition`);
    if (projection) feedsAddition.set(`${name}.downsample.0`, `${name}'s residual addition (the shortcut)`);
  }
  return { neuronLayers: groups.map((g) => g.layer), groups, feedsAddition };
}

function mobilenetv2Rule(): ChannelRule {
  const blocks = invertedResiduals();
  const groups: ChannelGroup[] = [];
  const feedsAddition = new Map<string, string>();
  blocks.forEach((block, i) => {
    const { name } = block;
    if (block.expands) {
      groups.push({
        layer: `${name}.expand`,
        batchNorm: `${name}.expand.bn`,
        depthwise: { layer: `${name}.depthwise`, batchNorm: `${name}.depthwise.bn` },
        consumer: `${name}.project`,
      });
    }
    const next = blocks[i + 1];
    if (block.residual) feedsAddition.set(`${name}.project`, `${name}'s residual addition`);
    else if (next?.residual) feedsAddition.set(`${name}.project`, `${next.name}'s residual addition (the shortcut)`);
  });
  return { neuronLayers: groups.map((g) => g.layer), groups, feedsAddition };
}

function alexnetRule(): ChannelRule {
  const chain = sequential([...numbered('conv', 5), 'fc6', 'fc7', 'fc8']);
  return { ...chain, neuronLayers: chain.neuronLayers.filter((layer) => layer !== 'fc8') };
}

const RULES: Readonly<Record<ModelName, () => ChannelRule>> = {
  lenet300: () => sequential(numbered('fc', 3)),
  lenet5: () => sequential(['conv1', 'conv2', 'fc1', 'fc2']),
  'vgg-cifar': () => sequential([...numbered('conv', 13), 'fc1', 'fc2'], (layer) => (layer === 'fc2' ? undefined : `${layer}.bn`)),
  alexnet: alexnetRule,
  resnet50: resnet50Rule,
  mobilenetv2: mobilenetv2Rule,
};

export function channelRule(model: ModelName): ChannelRule {
  return RULES[model]();
}

/**
 * How each layer of `model` is gated under the config's `model.granularity` and `model.layers`:
 * `neuron` puts gates where the rule does and leaves the other layers ungated; `weight` gates every
 * weight. A layer named `neuron` in `model.layers` that the rule does not gate is refused, naming it
 * (and the addition it feeds, if it does).
 */
export function layerGating(model: ModelName, granularity: Granularity, overrides: Readonly<Record<string, Granularity>>): (layer: string) => Gating {
  const rule = channelRule(model);
  const neuronLayers = new Set(rule.neuronLayers);
  for (const [layer, asked] of Object.entries(overrides)) {
    if (asked !== 'neuron' || neuronLayers.has(layer)) continue;
    const addition = rule.feedsAddition.get(layer);
    throw new InputError(
      `model.layers.${layer}`,
      addition
        ? `cannot be neuron-gated: its output channels feed ${addition}, where a closed channel would not be removed`
        : `cannot be neuron-gated: ${model}'s channel rule gates no output channel of it`,
      { expected: `weight, or neuron on one of ${rule.neuronLayers.slice(0, 6).join(', ')}${rule.neuronLayers.length > 6 ? ', ...' : ''}` },
    );
  }
  return (layer) => {
    const asked = overrides[layer] ?? granularity;
    if (asked === 'weight') return 'weight';
    return neuronLayers.has(layer) ? 'neuron' : 'none';
  };
}
