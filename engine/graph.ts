import type { BatchNorm, FeatureShape, MaskedLayer, Padding } from './layers.js';
import { MaskedConv2D, MaskedDense, MaskedDepthwiseConv2D } from './layers.js';

/**
 * A network's inference computation as data (evaluation mode: dropout is the identity, batch norm uses
 * its moving statistics): which operation reads which values. Each model describes itself with a
 * `GraphBuilder` beside its `apply`; the thin exporter reads this description to find which channels a
 * closed gate removes downstream, so that thinning needs nothing written per network.
 */

/** Index of a value (a tensor without its batch axis) in `NetworkGraph.shapes`. */
export type ValueId = number;

export type ActivationKind = 'relu' | 'relu6' | 'identity';

export type GraphOp =
  | { readonly kind: 'conv'; readonly layer: MaskedConv2D; readonly input: ValueId; readonly output: ValueId }
  | { readonly kind: 'depthwise'; readonly layer: MaskedDepthwiseConv2D; readonly input: ValueId; readonly output: ValueId }
  | { readonly kind: 'dense'; readonly layer: MaskedDense; readonly input: ValueId; readonly output: ValueId }
  /** A neuron gate: output unit j is the input's unit j times the step of M[j]. */
  | { readonly kind: 'gate'; readonly layer: MaskedLayer; readonly input: ValueId; readonly output: ValueId }
  | { readonly kind: 'batchNorm'; readonly bn: BatchNorm; readonly input: ValueId; readonly output: ValueId }
  | { readonly kind: 'relu' | 'relu6'; readonly input: ValueId; readonly output: ValueId }
  | {
      readonly kind: 'maxPool';
      readonly window: number;
      readonly stride: number;
      /** Padded positions never win (TensorFlow's and ONNX's max pool ignore them). */
      readonly padding: Padding;
      readonly input: ValueId;
      readonly output: ValueId;
    }
  /** [h, w, c] → [c]. */
  | { readonly kind: 'globalAveragePool'; readonly input: ValueId; readonly output: ValueId }
  /** [h, w, c] → [h·w·c] in NHWC order: feature (y·w + x)·c + channel. */
  | { readonly kind: 'flatten'; readonly input: ValueId; readonly output: ValueId }
  | { readonly kind: 'add'; readonly inputs: readonly [ValueId, ValueId]; readonly output: ValueId };

export interface NetworkGraph {
  /** Shape of every value without the batch axis; value 0 is the input image. */
  readonly shapes: readonly FeatureShape[];
  /** In an order where every value is written before it is read. */
  readonly ops: readonly GraphOp[];
  readonly input: ValueId;
  /** The logits. */
  readonly output: ValueId;
}

/** The values an operation reads. */
export function opInputs(op: GraphOp): readonly ValueId[] {
  return op.kind === 'add' ? op.inputs : [op.input];
}

/** Records a network's operations in forward order, mirroring its `apply`. */
export class GraphBuilder {
  private readonly shapes: FeatureShape[] = [];
  private readonly ops: GraphOp[] = [];
  readonly input: ValueId;

  constructor(inputShape: FeatureShape) {
    this.input = this.value(inputShape);
  }

  private value(shape: FeatureShape): ValueId {
    this.shapes.push(shape);
    return this.shapes.length - 1;
  }

  shapeOf(value: ValueId): FeatureShape {
    return this.shapes[value]!;
  }

  /** A masked layer as `MaskedLayer.apply` runs it: the linear operation, then `post`, then its neuron gate. */
  masked(layer: MaskedLayer, input: ValueId, post: (y: ValueId) => ValueId = (y) => y): ValueId {
    const linear = this.value(layer.outputShape);
    if (layer instanceof MaskedConv2D) this.ops.push({ kind: 'conv', layer, input, output: linear });
    else if (layer instanceof MaskedDepthwiseConv2D) this.ops.push({ kind: 'depthwise', layer, input, output: linear });
    else if (layer instanceof MaskedDense) this.ops.push({ kind: 'dense', layer, input, output: linear });
    else throw new Error(`layer ${layer.name}: no graph operation for ${layer.constructor.name}`);
    const y = post(linear);
    return layer.granularity === 'neuron' ? this.gate(layer, y) : y;
  }

  /** `layer`'s neuron gates applied to `input` (after the layer itself, or to a tensor that carries the same units). */
  gate(layer: MaskedLayer, input: ValueId): ValueId {
    const output = this.value(this.shapeOf(input));
    this.ops.push({ kind: 'gate', layer, input, output });
    return output;
  }

  batchNorm(bn: BatchNorm, input: ValueId): ValueId {
    const output = this.value(this.shapeOf(input));
    this.ops.push({ kind: 'batchNorm', bn, input, output });
    return output;
  }

  activation(kind: ActivationKind, input: ValueId): ValueId {
    if (kind === 'identity') return input;
    const output = this.value(this.shapeOf(input));
    this.ops.push({ kind, input, output });
    return output;
  }

  maxPool(input: ValueId, window: number, stride: number, padding: Padding, shape: FeatureShape): ValueId {
    const output = this.value(shape);
    this.ops.push({ kind: 'maxPool', window, stride, padding, input, output });
    return output;
  }

  globalAveragePool(input: ValueId): ValueId {
    const output = this.value([this.shapeOf(input)[2]!]);
    this.ops.push({ kind: 'globalAveragePool', input, output });
    return output;
  }

  flatten(input: ValueId): ValueId {
    const output = this.value([this.shapeOf(input).reduce((a, b) => a * b, 1)]);
    this.ops.push({ kind: 'flatten', input, output });
    return output;
  }

  add(a: ValueId, b: ValueId): ValueId {
    const output = this.value(this.shapeOf(a));
    this.ops.push({ kind: 'add', inputs: [a, b], output });
    return output;
  }

  finish(output: ValueId): NetworkGraph {
    return { shapes: [...this.shapes], ops: [...this.ops], input: this.input, output };
  }
}
