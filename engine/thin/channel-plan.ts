import type { GraphOp, NetworkGraph, ValueId } from '../graph.js';
import type { MaskedConv2D, MaskedDepthwiseConv2D } from '../layers.js';
import { padsAreZero, windowPads } from './pads.js';
import type { NetworkWeights } from './weights.js';

/**
 * Which channels of every value the thin model keeps, derived from the network's graph and weights alone.
 *
 * Operations that carry channels through (batch norm, activations, pooling, gates, additions, flatten,
 * a depthwise conv from its input channel to its outputs) tie the channels they connect into one
 * physical channel: it is kept everywhere or nowhere. Convs and dense layers separate them: they may read
 * any subset of their inputs and compute any subset of their outputs. A tied channel goes when every conv
 * or dense layer that reads it can do without it: its weights there are all 0, or it holds the same
 * constant at every position of the masked network (0 behind a closed gate, what batch norm and
 * activations make of that, a depthwise filter over it) and the reader folds the constant into its bias,
 * which is exact for dense layers and for windows without padding. The logits always stay. A closed gate
 * whose channel stays (an addition or the logits read it) keeps it with zero weights.
 *
 * A value whose every channel would go (a layer whose gates are all closed) keeps its first channel, so
 * that no tensor of the thin model has zero channels: the model stays one that every runtime loads, and
 * computes the same function.
 */

export interface ChannelPlan {
  /** For every value, the channels the thin model keeps, in order. */
  readonly kept: readonly (readonly number[])[];
  /** For every value, channel → the constant it holds at every position of the masked network (where it does). */
  readonly constants: readonly ReadonlyMap<number, number>[];
  /** By the value a gate reads: its closed channels that stay; their weights are zeroed back to the layer computing them. */
  readonly zeroed: ReadonlyMap<ValueId, ReadonlySet<number>>;
  /** Neuron-gated layers whose gates close every unit. */
  readonly allClosed: readonly string[];
}

/** Channels of a value: its last axis. */
export function channelCount(shape: readonly number[]): number {
  return shape[shape.length - 1]!;
}

/** Plans `graph` under `weights`; with `thin` false every channel stays (closed units are zeroed). */
export function planChannels(graph: NetworkGraph, weights: NetworkWeights, thin: boolean): ChannelPlan {
  const channels = new TiedChannels(graph);
  const constants = constantChannels(graph, weights);
  const needed = new Uint8Array(channels.size).fill(thin ? 0 : 1);
  const need = (value: ValueId, channel: number) => {
    needed[channels.find(value, channel)] = 1;
  };
  for (let j = 0; j < channelCount(graph.shapes[graph.output]!); j++) need(graph.output, j);
  for (const op of graph.ops) {
    if (op.kind !== 'conv' && op.kind !== 'dense') continue;
    const w = layerWeights(weights, op.layer.name);
    const inputs = w.kernelShape[w.kernelShape.length - 2]!;
    const reads = inputsWithWeights(w.kernel, inputs, w.kernelShape[w.kernelShape.length - 1]!);
    const foldable = op.kind === 'dense' || padsAreZero(windowPadsOf(op.layer, graph.shapes[op.input]!));
    for (let i = 0; i < inputs; i++) {
      const constant = constants[op.input]!.get(i);
      if (reads[i] === 1 && !(constant !== undefined && (constant === 0 || foldable))) need(op.input, i);
    }
  }
  const keptOf = (value: ValueId) => range(channelCount(graph.shapes[value]!)).filter((j) => needed[channels.find(value, j)] === 1);
  graph.shapes.forEach((_, value) => {
    if (keptOf(value).length === 0) need(value, 0);
  });
  const kept = graph.shapes.map((_, value) => keptOf(value));
  const zeroed = new Map<ValueId, Set<number>>();
  const allClosed = new Set<string>();
  for (const op of graph.ops) {
    if (op.kind !== 'gate') continue;
    const open = layerWeights(weights, op.layer.name).open;
    if (!open) continue;
    if (open.every((unit) => unit === 0)) allClosed.add(op.layer.name);
    const closedKept = kept[op.output]!.filter((j) => open[j] === 0);
    if (closedKept.length > 0) zeroed.set(op.input, new Set(closedKept));
  }
  return { kept, constants, zeroed, allClosed: [...allClosed] };
}

/** Union-find over (value, channel): the physical channels that ops carrying channels through tie together. */
class TiedChannels {
  private readonly offsets: number[] = [];
  private readonly parent: Int32Array;

  constructor(graph: NetworkGraph) {
    let size = 0;
    for (const shape of graph.shapes) {
      this.offsets.push(size);
      size += channelCount(shape);
    }
    this.parent = Int32Array.from({ length: size }, (_, i) => i);
    for (const op of graph.ops) this.tie(op, graph);
  }

  get size(): number {
    return this.parent.length;
  }

  find(value: ValueId, channel: number): number {
    let i = this.offsets[value]! + channel;
    while (this.parent[i] !== i) {
      this.parent[i] = this.parent[this.parent[i]!]!;
      i = this.parent[i]!;
    }
    return i;
  }

  private union(a: ValueId, i: number, b: ValueId, j: number): void {
    this.parent[this.find(a, i)] = this.find(b, j);
  }

  private tie(op: GraphOp, graph: NetworkGraph): void {
    const count = (value: ValueId) => channelCount(graph.shapes[value]!);
    switch (op.kind) {
      case 'conv':
      case 'dense':
        return;
      case 'depthwise': {
        const multiplier = count(op.output) / count(op.input);
        for (let o = 0; o < count(op.output); o++) this.union(op.output, o, op.input, Math.floor(o / multiplier));
        return;
      }
      case 'flatten':
        for (let f = 0; f < count(op.output); f++) this.union(op.output, f, op.input, f % count(op.input));
        return;
      case 'add':
        for (let j = 0; j < count(op.output); j++) {
          this.union(op.output, j, op.inputs[0], j);
          this.union(op.output, j, op.inputs[1], j);
        }
        return;
      default:
        for (let j = 0; j < count(op.output); j++) this.union(op.output, j, op.input, j);
    }
  }
}

/**
 * For every value, the channels that hold one constant at every position of the masked network: behind
 * a closed gate (0), a filter whose weights are all pruned (its bias), a depthwise filter over a constant
 * where padding cannot spoil it, and what elementwise operations, pooling and additions make of those.
 */
function constantChannels(graph: NetworkGraph, weights: NetworkWeights): Map<number, number>[] {
  const constants = graph.shapes.map(() => new Map<number, number>());
  const map = (op: { input: ValueId; output: ValueId }, f: (x: number, j: number) => number) => {
    for (const [j, x] of constants[op.input]!) constants[op.output]!.set(j, f(x, j));
  };
  for (const op of graph.ops) {
    switch (op.kind) {
      case 'conv':
      case 'dense': {
        const w = layerWeights(weights, op.layer.name);
        const outputs = w.kernelShape[w.kernelShape.length - 1]!;
        const used = outputsWithWeights(w.kernel, outputs);
        for (let o = 0; o < outputs; o++) if (used[o] === 0) constants[op.output]!.set(o, w.bias?.[o] ?? 0);
        break;
      }
      case 'depthwise': {
        const w = layerWeights(weights, op.layer.name);
        const [height, width, channels, multiplier] = w.kernelShape as [number, number, number, number];
        const foldable = padsAreZero(windowPadsOf(op.layer, graph.shapes[op.input]!));
        for (let o = 0; o < channels * multiplier; o++) {
          const c = Math.floor(o / multiplier);
          let sum = 0;
          let zero = true;
          for (let p = 0; p < height * width; p++) {
            const weight = w.kernel[p * channels * multiplier + o]!;
            sum += weight;
            zero &&= weight === 0;
          }
          const x = constants[op.input]!.get(c);
          const bias = w.bias?.[o] ?? 0;
          if (zero || x === 0) constants[op.output]!.set(o, bias);
          else if (x !== undefined && foldable) constants[op.output]!.set(o, x * sum + bias);
        }
        break;
      }
      case 'gate': {
        const open = layerWeights(weights, op.layer.name).open;
        map(op, (x) => x);
        open?.forEach((unit, j) => {
          if (unit === 0) constants[op.output]!.set(j, 0);
        });
        break;
      }
      case 'batchNorm': {
        const bn = weights.batchNorms.get(op.bn.name);
        if (!bn) throw new Error(`no weights for batch norm ${op.bn.name}`);
        map(op, (x, j) => ((x - bn.mean[j]!) / Math.sqrt(bn.variance[j]! + bn.epsilon)) * bn.gamma[j]! + bn.beta[j]!);
        break;
      }
      case 'relu':
        map(op, (x) => Math.max(x, 0));
        break;
      case 'relu6':
        map(op, (x) => Math.min(Math.max(x, 0), 6));
        break;
      // A constant channel pools to the same constant (TensorFlow's max pool ignores its padding).
      case 'maxPool':
      case 'globalAveragePool':
        map(op, (x) => x);
        break;
      case 'flatten': {
        const channels = channelCount(graph.shapes[op.input]!);
        for (let f = 0; f < channelCount(graph.shapes[op.output]!); f++) {
          const x = constants[op.input]!.get(f % channels);
          if (x !== undefined) constants[op.output]!.set(f, x);
        }
        break;
      }
      case 'add':
        for (const [j, x] of constants[op.inputs[0]]!) {
          const y = constants[op.inputs[1]]!.get(j);
          if (y !== undefined) constants[op.output]!.set(j, x + y);
        }
        break;
    }
  }
  return constants;
}

function layerWeights(weights: NetworkWeights, name: string) {
  const w = weights.layers.get(name);
  if (!w) throw new Error(`no weights for layer ${name}`);
  return w;
}

function windowPadsOf(layer: MaskedConv2D | MaskedDepthwiseConv2D, inputShape: readonly number[]) {
  return windowPads(inputShape, layer.kernelSize, layer.strides, layer.padding);
}

/** 1 for each input (the kernel's second-to-last axis) that has a nonzero weight. */
function inputsWithWeights(kernel: Float32Array, inputs: number, outputs: number): Uint8Array {
  const used = new Uint8Array(inputs);
  for (let index = 0; index < kernel.length; index++) if (kernel[index] !== 0) used[Math.floor(index / outputs) % inputs] = 1;
  return used;
}

/** 1 for each output (the kernel's last axis) that has a nonzero weight. */
function outputsWithWeights(kernel: Float32Array, outputs: number): Uint8Array {
  const used = new Uint8Array(outputs);
  for (let index = 0; index < kernel.length; index++) if (kernel[index] !== 0) used[index % outputs] = 1;
  return used;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
