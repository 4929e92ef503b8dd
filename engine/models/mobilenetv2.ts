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

/**
 * Inverted residual: 1x1 expand (absent when t = 1) → 3x3 depthwise → 1x1 linear projection, each with
 * BN; the input is added back when stride and channels are unchanged.
 */
class InvertedResidual {
  private readonly expand: NormalizedConv | undefined;
  private readonly depthwise: NormalizedConv;
  private readonly project: NormalizedConv;
  private readonly residual: boolean;
  readonly outputShape: FeatureShape;

  constructor(layers: LayerFactory, name: string, inputShape: FeatureShape, expansion: number, channels: number, strides: number) {
    const hidden = inputShape[2]! * expansion;
    this.expand = expansion === 1 ? undefined : layers.convBn(`${name}.expand`, `${name}.expand.bn`, { inputShape, filters: hidden, kernelSize: 1 }, relu6);
    this.depthwise = layers.depthwiseBn(
      `${name}.depthwise`,
      `${name}.depthwise.bn`,
      { inputShape: this.expand?.outputShape ?? inputShape, kernelSize: 3, strides },
      relu6,
    );
    this.project = layers.convBn(
      `${name}.project`,
      `${name}.project.bn`,
      { inputShape: this.depthwise.outputShape, filters: channels, kernelSize: 1 },
      identity,
    );
    this.outputShape = this.project.outputShape;
    this.residual = strides === 1 && inputShape[2] === channels;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const expanded = this.expand ? this.expand.apply(x, ctx) : x;
    const projected = this.project.apply(this.depthwise.apply(expanded, ctx), ctx);
    return this.residual ? tf.add(x, projected) : projected;
  }

  trace(g: GraphBuilder, x: ValueId): ValueId {
    const expanded = this.expand ? this.expand.trace(g, x) : x;
    const projected = this.project.trace(g, this.depthwise.trace(g, expanded));
    return this.residual ? g.add(x, projected) : projected;
  }
}

/**
 * torchvision's MobileNetV2 (width 1.0) with 'same' padding, which matches torchvision's padding 1 on
 * the 3x3 convs in output size. No conv biases. Layers follow torchvision's `features` indices:
 * features.0.conv (stem), features.{1-17}.expand/.depthwise/.project, features.18.conv (last 1x1),
 * each with a `.bn`, then classifier.
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
      { inputShape: this.inputShape, filters: STEM_CHANNELS, kernelSize: 3, strides: 2 },
      relu6,
    );
    let shape = this.stem.outputShape;
    for (const [expansion, channels, repeats, firstStride] of STAGES) {
      for (let i = 0; i < repeats; i++) {
        const block = new InvertedResidual(this.layers, `features.${this.blocks.length + 1}`, shape, expansion, channels, i === 0 ? firstStride : 1);
        this.blocks.push(block);
        shape = block.outputShape;
      }
    }
    const lastIndex = this.blocks.length + 1;
    this.last = this.layers.convBn(
      `features.${lastIndex}.conv`,
      `features.${lastIndex}.bn`,
      { inputShape: shape, filters: LAST_CHANNELS, kernelSize: 1 },
      relu6,
    );
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
