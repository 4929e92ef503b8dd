import * as tf from '@tensorflow/tfjs';
import { GraphBuilder, type NetworkGraph, type ValueId } from '../graph.js';
import { dropout, type FeatureShape, type ForwardContext, globalAveragePool, type MaskedDense } from '../layers.js';
import type { Network, NetworkOptions } from '../network.js';
import { identity, type LayerFactory, MaskedNetwork, type ModelDefaults, type NormalizedConv, relu6 } from './common.js';

export const MOBILENETV2_DEFAULTS: ModelDefaults = { inputShape: [224, 224, 3], numClasses: 1000 };

/** (expansion t, output channels c, repeats n, first stride s) of each stage, width multiplier 1.0. */
const STAGES: ReadonlyArray<readonly [number, number, number, number]> = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];
const STEM_CHANNELS = 32;
const LAST_CHANNELS = 1280;

/** One inverted residual as torchvision builds it (`features.<index>`). */
export interface InvertedResidualSpec {
  readonly name: string;
  readonly inputChannels: number;
  /** Channels of the expansion (= inputChannels when t = 1, which has no expansion conv). */
  readonly hiddenChannels: number;
  readonly outputChannels: number;
  readonly expands: boolean;
  readonly strides: number;
  /** The block's input is added to its output. */
  readonly residual: boolean;
}

/** MobileNetV2's 17 inverted residuals, features.1 … features.17; the model and the channel rule both read it. */
export function invertedResiduals(): InvertedResidualSpec[] {
  const specs: InvertedResidualSpec[] = [];
  let inputChannels = STEM_CHANNELS;
  for (const [expansion, outputChannels, repeats, firstStride] of STAGES) {
    for (let i = 0; i < repeats; i++) {
      const strides = i === 0 ? firstStride : 1;
      specs.push({
        name: `features.${specs.length + 1}`,
        inputChannels,
        hiddenChannels: inputChannels * expansion,
        outputChannels,
        expands: expansion !== 1,
        strides,
        residual: strides === 1 && inputChannels === outputChannels,
      });
      inputChannels = outputChannels;
    }
  }
  return specs;
}

/** Name of the 1x1 conv after the last inverted residual (torchvision's features.18). */
export const LAST_CONV = `features.${STAGES.reduce((n, stage) => n + stage[2], 0) + 1}`;

/**
 * Inverted residual: 1x1 expand (absent when t = 1) → 3x3 depthwise → 1x1 linear projection, each with
 * BN; the input is added back when stride and channels are unchanged. When the expansion is neuron-gated,
 * its gates also close the depthwise conv's matching outputs (after its BN and ReLU6): a closed hidden
 * channel is then exactly zero all the way to the projection, so removing it changes nothing.
 */
class InvertedResidual {
  private readonly expand: NormalizedConv | undefined;
  private readonly depthwise: NormalizedConv;
  private readonly project: NormalizedConv;
  private readonly residual: boolean;
  readonly outputShape: FeatureShape;

  constructor(layers: LayerFactory, spec: InvertedResidualSpec, inputShape: FeatureShape) {
    const { name } = spec;
    this.expand = spec.expands
      ? layers.convBn(`${name}.expand`, `${name}.expand.bn`, { inputShape, filters: spec.hiddenChannels, kernelSize: 1, padding: 0 }, relu6)
      : undefined;
    this.depthwise = layers.depthwiseBn(
      `${name}.depthwise`,
      `${name}.depthwise.bn`,
      { inputShape: this.expand?.outputShape ?? inputShape, kernelSize: 3, strides: spec.strides, padding: 1 },
      relu6,
    );
    this.project = layers.convBn(
      `${name}.project`,
      `${name}.project.bn`,
      { inputShape: this.depthwise.outputShape, filters: spec.outputChannels, kernelSize: 1, padding: 0 },
      identity,
    );
    this.outputShape = this.project.outputShape;
    this.residual = spec.residual;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const expanded = this.expand ? this.expand.apply(x, ctx) : x;
    let hidden = this.depthwise.apply(expanded, ctx);
    const hiddenGate = this.expand?.conv.unitGate(ctx);
    if (hiddenGate) hidden = tf.mul(hidden, hiddenGate);
    const projected = this.project.apply(hidden, ctx);
    return this.residual ? tf.add(x, projected) : projected;
  }

  trace(g: GraphBuilder, x: ValueId): ValueId {
    const expanded = this.expand ? this.expand.trace(g, x) : x;
    let hidden = this.depthwise.trace(g, expanded);
    // As in apply: the expansion's neuron gates close the depthwise conv's matching outputs too.
    if (this.expand?.conv.granularity === 'neuron') hidden = g.gate(this.expand.conv, hidden);
    const projected = this.project.trace(g, hidden);
    return this.residual ? g.add(x, projected) : projected;
  }
}

/**
 * torchvision's MobileNetV2 (width 1.0) with torchvision's padding (1 on the 3x3 convs), so that imported
 * torchvision weights give torchvision's logits. No conv biases. Layers follow torchvision's `features`
 * indices: features.0.conv (stem), features.{1-17}.expand/.depthwise/.project, features.18.conv (last
 * 1x1), each with a `.bn`, then classifier.
 */
export class MobileNetV2 extends MaskedNetwork {
  readonly name = 'mobilenetv2';
  private readonly stem: NormalizedConv;
  private readonly blocks: InvertedResidual[] = [];
  private readonly last: NormalizedConv;
  private readonly classifier: MaskedDense;
  private readonly dropoutRate: number;

  constructor(options: NetworkOptions) {
    super(options, MOBILENETV2_DEFAULTS, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: false });
    this.dropoutRate = options.dropout ?? 0.2;
    this.stem = this.layers.convBn(
      'features.0.conv',
      'features.0.bn',
      { inputShape: this.inputShape, filters: STEM_CHANNELS, kernelSize: 3, strides: 2, padding: 1 },
      relu6,
    );
    let shape = this.stem.outputShape;
    for (const spec of invertedResiduals()) {
      const block = new InvertedResidual(this.layers, spec, shape);
      this.blocks.push(block);
      shape = block.outputShape;
    }
    this.last = this.layers.convBn(`${LAST_CONV}.conv`, `${LAST_CONV}.bn`, { inputShape: shape, filters: LAST_CHANNELS, kernelSize: 1, padding: 0 }, relu6);
    this.classifier = this.layers.dense('classifier', { inputFeatures: LAST_CHANNELS, units: this.numClasses, useBias: true });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    let x = this.stem.apply(images, ctx);
    for (const block of this.blocks) x = block.apply(x, ctx);
    const pooled = globalAveragePool(this.last.apply(x, ctx));
    return this.classifier.apply(dropout(pooled, this.dropoutRate, ctx), ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    let x = this.stem.trace(g, g.input);
    for (const block of this.blocks) x = block.trace(g, x);
    return g.finish(g.masked(this.classifier, g.globalAveragePool(this.last.trace(g, x))));
  }
}

export function buildMobileNetV2(options: NetworkOptions): Network {
  return new MobileNetV2(options);
}
