import type { GraphOp, NetworkGraph, ValueId } from '../graph.js';
import type { FeatureShape, Padding } from '../layers.js';
import type { ChannelPlan } from './channel-plan.js';
import type { NetworkWeights } from './weights.js';

/**
 * The plain dense model a channel plan leaves: the graph without gates, every tensor sliced to the kept
 * channels, the constants of left-out channels folded into the biases (or, for a layer without bias
 * followed by its batch norm, into that norm's mean), closed channels that had to stay zeroed. Pure
 * data in the engine's layouts (NHWC, HWIO kernels, [in, out] dense kernels); the writers translate it.
 */

interface Named {
  /** The engine's layer or batch-norm name. */
  readonly name: string;
  readonly input: ValueId;
  readonly output: ValueId;
}

export type ThinOp =
  | (Named & {
      readonly kind: 'conv' | 'depthwise';
      /** [k, k, in, out] for conv, [k, k, channels, multiplier] for depthwise. */
      readonly kernelShape: readonly [number, number, number, number];
      readonly kernel: Float32Array;
      readonly bias: Float32Array | undefined;
      readonly strides: number;
      readonly padding: Padding;
    })
  | (Named & {
      readonly kind: 'dense';
      readonly kernelShape: readonly [number, number];
      readonly kernel: Float32Array;
      readonly bias: Float32Array | undefined;
    })
  | (Named & {
      readonly kind: 'batchNorm';
      readonly gamma: Float32Array;
      readonly beta: Float32Array;
      readonly mean: Float32Array;
      readonly variance: Float32Array;
      readonly epsilon: number;
    })
  | { readonly kind: 'relu' | 'relu6' | 'globalAveragePool' | 'flatten'; readonly input: ValueId; readonly output: ValueId }
  | {
      readonly kind: 'maxPool';
      readonly window: number;
      readonly stride: number;
      readonly padding: Padding;
      readonly input: ValueId;
      readonly output: ValueId;
    }
  | { readonly kind: 'add'; readonly inputs: readonly [ValueId, ValueId]; readonly output: ValueId };

export interface ThinModel {
  readonly model: string;
  /** Thinned shape of every value (those only a gate wrote are unused). */
  readonly shapes: readonly FeatureShape[];
  readonly ops: readonly ThinOp[];
  readonly input: ValueId;
  readonly output: ValueId;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type LinearOp = Mutable<Extract<ThinOp, { kind: 'conv' | 'depthwise' | 'dense' }>>;

export function thinModel(model: string, graph: NetworkGraph, weights: NetworkWeights, plan: ChannelPlan): ThinModel {
  const { kept } = plan;
  const shapes = graph.shapes.map((shape, value) => [...shape.slice(0, -1), kept[value]!.length]);
  // A gate's output is its input in the thin model.
  const alias = graph.shapes.map((_, value) => value);
  const ops: Array<Mutable<ThinOp>> = [];
  const producer = new Map<ValueId, Mutable<ThinOp>>();
  const readers = new Map<ValueId, Array<Mutable<ThinOp>>>();
  /** Layers without bias given one to carry the constants of their left-out inputs. */
  const biasAdded = new Set<LinearOp>();
  for (const op of graph.ops) {
    if (op.kind === 'gate') {
      alias[op.output] = alias[op.input]!;
      continue;
    }
    const context = { weights, plan, kept, alias };
    const thin = op.kind === 'conv' || op.kind === 'dense' || op.kind === 'depthwise' ? linearOp(op, context, biasAdded) : otherOp(op, context);
    ops.push(thin);
    producer.set(op.output, thin);
    for (const input of thin.kind === 'add' ? thin.inputs : [thin.input]) readers.set(input, [...(readers.get(input) ?? []), thin]);
  }
  // torchvision's convs have no bias: the offset goes into the batch norm that alone reads them.
  for (const op of biasAdded) {
    const [reader, ...others] = readers.get(op.output) ?? [];
    if (others.length > 0 || reader?.kind !== 'batchNorm') continue;
    reader.mean = reader.mean.map((mean, n) => mean - op.bias![n]!);
    op.bias = undefined;
  }
  for (const [value, channels] of plan.zeroed) zeroChannels(value, channels, kept, producer);
  return { model, shapes, ops, input: graph.input, output: alias[graph.output]! };
}

interface BuildContext {
  readonly weights: NetworkWeights;
  readonly plan: ChannelPlan;
  readonly kept: readonly (readonly number[])[];
  readonly alias: readonly ValueId[];
}

function linearOp(op: Extract<GraphOp, { kind: 'conv' | 'dense' | 'depthwise' }>, context: BuildContext, biasAdded: Set<LinearOp>): LinearOp {
  const w = context.weights.layers.get(op.layer.name)!;
  const input = context.alias[op.input]!;
  const ins = context.kept[op.input]!;
  const outs = context.kept[op.output]!;
  if (op.kind === 'depthwise') {
    const [k1, k2, channels, multiplier] = w.kernelShape as [number, number, number, number];
    return {
      kind: 'depthwise',
      name: op.layer.name,
      input,
      output: op.output,
      kernelShape: [k1, k2, ins.length, multiplier],
      kernel: sliceKernel(w.kernel, k1 * k2, channels, multiplier, ins, range(multiplier)),
      bias: w.bias ? pick(w.bias, outs) : undefined,
      strides: op.layer.strides,
      padding: op.layer.padding,
    };
  }
  const inputs = w.kernelShape[w.kernelShape.length - 2]!;
  const outputs = w.kernelShape[w.kernelShape.length - 1]!;
  const positions = w.kernel.length / (inputs * outputs);
  // Left-out inputs hold constants: their contribution is a per-output offset (the plan kept those it cannot fold).
  const offset = new Float64Array(outs.length);
  let offsetUsed = false;
  const keptInputs = new Set(ins);
  for (const [i, x] of context.plan.constants[op.input]!) {
    if (x === 0 || keptInputs.has(i)) continue;
    offsetUsed = true;
    outs.forEach((o, n) => {
      let sum = 0;
      for (let p = 0; p < positions; p++) sum += w.kernel[(p * inputs + i) * outputs + o]!;
      offset[n]! += x * sum;
    });
  }
  const bias = w.bias || offsetUsed ? outs.map((o, n) => (w.bias?.[o] ?? 0) + offset[n]!) : undefined;
  const common = {
    name: op.layer.name,
    input,
    output: op.output,
    kernel: sliceKernel(w.kernel, positions, inputs, outputs, ins, outs),
    bias: bias ? Float32Array.from(bias) : undefined,
  };
  const thin: LinearOp =
    op.kind === 'dense'
      ? { kind: 'dense', ...common, kernelShape: [ins.length, outs.length] }
      : {
          kind: 'conv',
          ...common,
          kernelShape: [op.layer.kernelSize, op.layer.kernelSize, ins.length, outs.length],
          strides: op.layer.strides,
          padding: op.layer.padding,
        };
  if (!w.bias && offsetUsed) biasAdded.add(thin);
  return thin;
}

function otherOp(op: Exclude<GraphOp, { kind: 'conv' | 'dense' | 'depthwise' }>, context: BuildContext): Mutable<ThinOp> {
  const input = (value: ValueId) => context.alias[value]!;
  switch (op.kind) {
    case 'batchNorm': {
      const bn = context.weights.batchNorms.get(op.bn.name)!;
      const channels = context.kept[op.output]!;
      return {
        kind: 'batchNorm',
        name: op.bn.name,
        input: input(op.input),
        output: op.output,
        gamma: pick(bn.gamma, channels),
        beta: pick(bn.beta, channels),
        mean: pick(bn.mean, channels),
        variance: pick(bn.variance, channels),
        epsilon: bn.epsilon,
      };
    }
    case 'add':
      return { kind: 'add', inputs: [input(op.inputs[0]), input(op.inputs[1])], output: op.output };
    case 'maxPool':
      return { kind: 'maxPool', window: op.window, stride: op.stride, padding: op.padding, input: input(op.input), output: op.output };
    case 'relu':
    case 'relu6':
    case 'globalAveragePool':
    case 'flatten':
      return { kind: op.kind, input: input(op.input), output: op.output };
    case 'gate':
      throw new Error(`gate ${op.layer.name} has no thin operation`);
  }
}

/**
 * A closed channel kept for a reader outputs 0 as the gate made it: zero its weights back to the layer
 * that computes it (batch norm γ and β, kernel and bias), through activations that keep 0 at 0.
 */
function zeroChannels(
  gated: ValueId,
  channels: ReadonlySet<number>,
  kept: readonly (readonly number[])[],
  producer: ReadonlyMap<ValueId, Mutable<ThinOp>>,
): void {
  let value = gated;
  for (;;) {
    const op = producer.get(value);
    const positions = [...channels].map((j) => kept[value]!.indexOf(j));
    if (op?.kind === 'relu' || op?.kind === 'relu6') {
      value = op.input;
    } else if (op?.kind === 'batchNorm') {
      for (const n of positions) {
        op.gamma[n] = 0;
        op.beta[n] = 0;
      }
      value = op.input;
    } else if (op?.kind === 'conv' || op?.kind === 'dense' || op?.kind === 'depthwise') {
      // Output channels are the kernel's innermost index: the last axis, or channels × multiplier for depthwise.
      const stride = op.kind === 'depthwise' ? op.kernelShape[2] * op.kernelShape[3] : op.kernelShape[op.kernelShape.length - 1]!;
      for (const n of positions) {
        for (let index = n; index < op.kernel.length; index += stride) op.kernel[index] = 0;
        if (op.bias) op.bias[n] = 0;
      }
      return;
    } else {
      throw new Error(`value ${gated}: cannot zero a gated channel produced by ${op?.kind ?? 'the input'}`);
    }
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function pick(values: Float32Array, indices: readonly number[]): Float32Array {
  return Float32Array.from(indices, (i) => values[i]!);
}

/** Kernel [positions, inputs, outputs] (row-major) restricted to the given inputs and outputs. */
function sliceKernel(kernel: Float32Array, positions: number, inputs: number, outputs: number, ins: readonly number[], outs: readonly number[]): Float32Array {
  const sliced = new Float32Array(positions * ins.length * outs.length);
  let n = 0;
  for (let p = 0; p < positions; p++) {
    for (const i of ins) {
      const row = (p * inputs + i) * outputs;
      for (const o of outs) sliced[n++] = kernel[row + o]!;
    }
  }
  return sliced;
}
