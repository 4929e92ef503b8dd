import * as tf from '@tensorflow/tfjs';
import { InputError } from '../shared/errors.js';
import { type FoldedActivation, fusedBatchNorm, hasFusedBatchNorm } from './fused-batch-norm.js';
import {
  type AuxGradientRule,
  type FrozenGateGradient,
  frozenGatedWeight,
  type GatePenalty,
  type Granularity,
  gate,
  gatedWeight,
  type Surrogate,
  stepGate,
} from './gates.js';
import { movingMoments } from './moving-moments.js';
import { deriveSeed } from './random.js';

/**
 * Masked layers: every prunable weight tensor W (dense, conv and depthwise kernels) carries auxiliary
 * parameters M. The forward pass uses W ⊙ h(M) (weight granularity) or gates each output unit with
 * h(M) (neuron granularity). Layers hold explicit configs and compute their output shapes when built,
 * so parameter and FLOP counts need no forward pass.
 */

/** `weight`: trained by W's optimizer. `aux`: M, trained by its own. `state`: not trained (BN statistics). */
export type ParameterRole = 'weight' | 'aux' | 'state';

export interface Parameter {
  /** Stable name used in checkpoints and exports, e.g. `conv1.weight`. */
  readonly name: string;
  readonly role: ParameterRole;
  readonly variable: tf.Variable;
  /** Whether L1/L2 weight decay applies (kernels only, not biases or batch-norm parameters). */
  readonly decayed: boolean;
}

/** How gates take part in a forward pass. */
export type GateMode =
  | 'off' // dense training: plain W
  | 'train' // pruning: W ⊙ h(M) with gradients flowing to M
  | 'frozen'; // fine-tuning and evaluation after pruning: constant masks

export interface BatchStatistic {
  readonly layer: BatchNorm;
  readonly mean: tf.Tensor1D;
  readonly variance: tf.Tensor1D;
}

/** Per-pass settings and side outputs; one is created for every forward pass. */
export class ForwardContext {
  readonly batchStatistics: BatchStatistic[] = [];
  /** Layers whose gate carried its sparsity penalty's gradient in this pass (see `penaltyOf`). */
  readonly penalizedGates = new Set<string>();
  private dropoutCalls = 0;

  constructor(
    readonly training: boolean,
    readonly gates: GateMode,
    readonly surrogate: Surrogate,
    readonly auxGradient: AuxGradientRule,
    /** Seed of this pass's dropout masks (the trainer derives it from the run seed and the step). */
    private readonly dropoutSeed: number,
    /**
     * The sparsity penalty of a layer's gates, for an M step: a weight gate adds its gradient in its own
     * backward (one pass over M) and is recorded in `penalizedGates`; the trainer adds the rest.
     */
    readonly penaltyOf: (layer: string) => GatePenalty | undefined = () => undefined,
    /** What frozen weight gates give W's gradient (gates.ts). */
    readonly frozenGateGradient: FrozenGateGradient = 'masked',
  ) {}

  nextDropoutSeed(): number {
    return deriveSeed(this.dropoutSeed, this.dropoutCalls++);
  }
}

export interface MaskInit {
  readonly mean: number;
  readonly std: number;
}

export type KernelInit = 'glorot-uniform' | 'he-normal';
export type BiasInit = 'zeros' | 'truncated-normal';

/**
 * How a layer is gated: a gate per weight or per output unit, or `none`: no gate and no M at all (the
 * layers a channel rule leaves dense, see models/channel-gates.ts).
 */
export type Gating = Granularity | 'none';

/** What every masked layer needs to create its parameters. */
export interface MaskedLayerOptions {
  readonly name: string;
  readonly seed: number;
  readonly granularity: Gating;
  readonly maskInit: MaskInit;
  readonly kernelInit?: KernelInit;
  readonly biasInit?: BiasInit;
  readonly useBias?: boolean;
}

/** Which sparsity regulariser group a layer belongs to (separate μ for conv and fc). */
export type LayerGroup = 'conv' | 'fc';

/** Spatial shape without batch: [features] for dense, [height, width, channels] for images. */
export type FeatureShape = readonly number[];

export abstract class MaskedLayer {
  readonly name: string;
  readonly granularity: Gating;
  readonly kernel: Parameter;
  readonly bias: Parameter | undefined;
  /** M; absent when the layer is not gated. */
  readonly mask: Parameter | undefined;
  abstract readonly group: LayerGroup;
  abstract readonly inputShape: FeatureShape;
  abstract readonly outputShape: FeatureShape;

  protected constructor(options: MaskedLayerOptions, kernelShape: number[], fanIn: number, fanOut: number) {
    this.name = options.name;
    this.granularity = options.granularity;
    const seed = (what: string) => deriveSeed(options.seed, options.name, what);
    this.kernel = {
      name: `${options.name}.weight`,
      role: 'weight',
      decayed: true,
      variable: ownedVariable(() => initKernel(kernelShape, fanIn, fanOut, options.kernelInit ?? 'glorot-uniform', seed('weight'))),
    };
    const units = kernelShape[kernelShape.length - 1]!;
    this.bias =
      options.useBias === false
        ? undefined
        : {
            name: `${options.name}.bias`,
            role: 'weight',
            decayed: false,
            variable: ownedVariable(() => initBias(units, options.biasInit ?? 'zeros', seed('bias'))),
          };
    const maskShape = options.granularity === 'weight' ? kernelShape : [this.gatedUnits(kernelShape)];
    this.mask =
      options.granularity === 'none'
        ? undefined
        : {
            name: `${options.name}.mask`,
            role: 'aux',
            decayed: false,
            variable: ownedVariable(() => tf.truncatedNormal(maskShape, options.maskInit.mean, options.maskInit.std, 'float32', seed('mask'))),
          };
  }

  /** Number of output units a neuron gate acts on (the kernel's last axis; depthwise overrides). */
  protected gatedUnits(kernelShape: number[]): number {
    return kernelShape[kernelShape.length - 1]!;
  }

  /** Output positions each kernel weight is applied at: MACs = kernel size × positions. */
  abstract get positions(): number;

  /** The layer's linear operation with the given (possibly gated) kernel, before bias. */
  protected abstract linear(x: tf.Tensor, kernel: tf.Tensor): tf.Tensor;

  /**
   * Forward pass. `post` (batch norm, activation) runs before a neuron gate, so that a closed unit
   * outputs exactly zero whatever follows it.
   */
  apply(x: tf.Tensor, ctx: ForwardContext, post: (y: tf.Tensor) => tf.Tensor = (y) => y): tf.Tensor {
    const kernel = this.kernel.variable;
    const weightGate = this.granularity === 'weight' && ctx.gates !== 'off' ? this.mask : undefined;
    const effectiveKernel = !weightGate
      ? kernel
      : ctx.gates === 'train'
        ? this.trainedGate(kernel, weightGate.variable, ctx)
        : frozenGatedWeight(kernel, weightGate.variable, ctx.frozenGateGradient);
    let y = this.linear(x, effectiveKernel);
    if (this.bias) y = tf.add(y, this.bias.variable);
    y = post(y);
    const unitGate = this.unitGate(ctx);
    return unitGate ? tf.mul(y, unitGate) : y;
  }

  private trainedGate(kernel: tf.Tensor, aux: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const penalty = ctx.penaltyOf(this.name);
    if (penalty) ctx.penalizedGates.add(this.name);
    return gatedWeight(kernel, aux, ctx.surrogate, ctx.auxGradient, penalty);
  }

  /**
   * The neuron gates of this pass, one per output unit (undefined when the layer has none or gates are
   * off). A model may apply them to a further tensor that carries the same units (MobileNetV2's depthwise).
   */
  unitGate(ctx: ForwardContext): tf.Tensor | undefined {
    if (this.granularity !== 'neuron' || !this.mask || ctx.gates === 'off') return undefined;
    return ctx.gates === 'train' ? gate(this.mask.variable, ctx.surrogate, 'neuron') : stepGate(this.mask.variable);
  }

  /** 0/1 tensor of the output units: 1 where the unit is open (all ones unless neuron-gated). */
  openUnits(): tf.Tensor1D {
    const units = this.outputShape[this.outputShape.length - 1]!;
    if (this.granularity !== 'neuron' || !this.mask) return tf.ones([units]);
    return stepGate(this.mask.variable) as tf.Tensor1D;
  }

  /** 0/1 tensor of the kernel's shape: 1 where the weight is kept by the current gates. */
  keepMask(): tf.Tensor {
    return tf.tidy(() => {
      const gate = this.gateOverKernel();
      return gate ? stepGate(gate) : tf.onesLike(this.kernel.variable);
    });
  }

  /**
   * M over the kernel's shape (M itself for weight gates, a unit gate broadcast over its kernel), for an
   * update that applies where the gate is open (≥ 0); undefined without gates. M is returned as is:
   * the caller disposes only what it did not get from the layer's parameters.
   */
  gateOverKernel(): tf.Tensor | undefined {
    if (!this.mask) return undefined;
    if (this.granularity === 'weight') return this.mask.variable;
    return tf.broadcastTo(tf.reshape(this.mask.variable, this.neuronGateKernelShape()), this.kernel.variable.shape);
  }

  /** Shape that broadcasts a neuron gate vector over the kernel. */
  protected neuronGateKernelShape(): number[] {
    const shape = this.kernel.variable.shape;
    return [...shape.slice(0, -1).map(() => 1), shape[shape.length - 1]!];
  }

  parameters(): Parameter[] {
    return [this.kernel, ...(this.bias ? [this.bias] : []), ...(this.mask ? [this.mask] : [])];
  }
}

export interface DenseOptions extends MaskedLayerOptions {
  readonly inputFeatures: number;
  readonly units: number;
}

export class MaskedDense extends MaskedLayer {
  readonly group = 'fc';
  readonly inputShape: FeatureShape;
  readonly outputShape: FeatureShape;

  constructor(options: DenseOptions) {
    super(options, [options.inputFeatures, options.units], options.inputFeatures, options.units);
    this.inputShape = [options.inputFeatures];
    this.outputShape = [options.units];
  }

  get positions(): number {
    return 1;
  }

  protected linear(x: tf.Tensor, kernel: tf.Tensor): tf.Tensor {
    return tf.matMul(x as tf.Tensor2D, kernel as tf.Tensor2D);
  }
}

export type Padding = 'same' | 'valid' | number;

/** A window op's input and padding as the active backend takes them (see `windowInput`). */
export interface WindowInput {
  readonly x: tf.Tensor4D;
  readonly padding: 'same' | 'valid' | number;
}

/**
 * Numeric (symmetric, torchvision's) padding as the active backend takes it. tfjs-node's kernels accept only
 * 'same' and 'valid', so on the tensorflow backend the padding is made explicit (`fill`: zeros for a
 * convolution, -Infinity for a max pool, where a padded position never wins) and the window runs 'valid'.
 * Every other backend takes the number itself, so its computation is unchanged.
 */
export function windowInput(x: tf.Tensor4D, padding: Padding, fill = 0): WindowInput {
  if (typeof padding !== 'number' || tf.getBackend() !== 'tensorflow') return { x, padding };
  if (padding === 0) return { x, padding: 'valid' };
  const pads: [number, number][] = [
    [0, 0],
    [padding, padding],
    [padding, padding],
    [0, 0],
  ];
  return { x: tf.pad(x, pads, fill), padding: 'valid' };
}

/** A max pool with any padding on any backend (numeric padding through `windowInput`). */
export function maxPool(x: tf.Tensor4D, window: number, stride: number, padding: Padding): tf.Tensor4D {
  const input = windowInput(x, padding, Number.NEGATIVE_INFINITY);
  return tf.maxPool(input.x, window, stride, input.padding);
}

/**
 * Output length of a convolution or pooling window along one axis (TensorFlow's conventions); `where`
 * names the layer when the input is too small for the window.
 */
export function windowOutputLength(input: number, window: number, stride: number, padding: Padding, where = 'window'): number {
  if (padding === 'same') return Math.ceil(input / stride);
  const pad = padding === 'valid' ? 0 : padding;
  const length = Math.floor((input + 2 * pad - window) / stride) + 1;
  if (length < 1) {
    throw new InputError(where, `a ${window}x${window} window with stride ${stride} does not fit the input`, {
      expected: `at least ${window - 2 * pad} pixels`,
      found: `${input}`,
    });
  }
  return length;
}

/** Options shared by the convolutions. */
interface WindowOptions extends MaskedLayerOptions {
  /** [height, width, channels] of the input. */
  readonly inputShape: FeatureShape;
  readonly kernelSize: number;
  readonly strides?: number;
  readonly padding?: Padding;
}

/** A masked layer sliding a square window over an NHWC feature map. */
abstract class WindowedMaskedLayer extends MaskedLayer {
  readonly group = 'conv';
  readonly inputShape: FeatureShape;
  readonly outputShape: FeatureShape;
  readonly strides: number;
  readonly padding: Padding;
  readonly kernelSize: number;

  protected constructor(options: WindowOptions, kernelShape: number[], fanIn: number, fanOut: number, outputChannels: number) {
    super(options, kernelShape, fanIn, fanOut);
    const [height, width] = options.inputShape as [number, number, number];
    const k = options.kernelSize;
    this.strides = options.strides ?? 1;
    this.padding = options.padding ?? 'same';
    this.kernelSize = k;
    this.inputShape = options.inputShape;
    this.outputShape = [
      windowOutputLength(height, k, this.strides, this.padding, `layer ${options.name}`),
      windowOutputLength(width, k, this.strides, this.padding, `layer ${options.name}`),
      outputChannels,
    ];
  }

  get positions(): number {
    return this.outputShape[0]! * this.outputShape[1]!;
  }
}

export interface ConvOptions extends WindowOptions {
  readonly filters: number;
}

export class MaskedConv2D extends WindowedMaskedLayer {
  constructor(options: ConvOptions) {
    const channels = options.inputShape[2]!;
    const k = options.kernelSize;
    super(options, [k, k, channels, options.filters], k * k * channels, k * k * options.filters, options.filters);
  }

  protected linear(x: tf.Tensor, kernel: tf.Tensor): tf.Tensor {
    const input = windowInput(x as tf.Tensor4D, this.padding);
    return tf.conv2d(input.x, kernel as tf.Tensor4D, this.strides, input.padding);
  }
}

export interface DepthwiseOptions extends WindowOptions {
  readonly depthMultiplier?: number;
}

export class MaskedDepthwiseConv2D extends WindowedMaskedLayer {
  constructor(options: DepthwiseOptions) {
    const channels = options.inputShape[2]!;
    const k = options.kernelSize;
    const multiplier = options.depthMultiplier ?? 1;
    super(options, [k, k, channels, multiplier], k * k, k * k * multiplier, channels * multiplier);
  }

  /** A depthwise layer's units are its output channels: input channels × multiplier. */
  protected override gatedUnits(kernelShape: number[]): number {
    return kernelShape[2]! * kernelShape[3]!;
  }

  protected override neuronGateKernelShape(): number[] {
    const [, , channels, multiplier] = this.kernel.variable.shape as [number, number, number, number];
    return [1, 1, channels, multiplier];
  }

  protected linear(x: tf.Tensor, kernel: tf.Tensor): tf.Tensor {
    const input = windowInput(x as tf.Tensor4D, this.padding);
    return tf.depthwiseConv2d(input.x, kernel as tf.Tensor4D, this.strides, input.padding);
  }
}

export interface BatchNormOptions {
  readonly name: string;
  readonly channels: number;
  /** Weight of the old moving average per update (Keras convention; PyTorch's 0.1 = 1 - 0.9). */
  readonly momentum?: number;
  readonly epsilon?: number;
}

/** Batch normalisation over all axes but the last; its γ and β are trained with W. */
export class BatchNorm {
  readonly name: string;
  readonly gamma: Parameter;
  readonly beta: Parameter;
  readonly movingMean: Parameter;
  readonly movingVariance: Parameter;
  readonly momentum: number;
  readonly epsilon: number;

  constructor(options: BatchNormOptions) {
    this.name = options.name;
    this.momentum = options.momentum ?? 0.9;
    this.epsilon = options.epsilon ?? 1e-5;
    const param = (suffix: string, role: ParameterRole, init: () => tf.Tensor): Parameter => ({
      name: `${options.name}.${suffix}`,
      role,
      decayed: false,
      variable: ownedVariable(init, role !== 'state'),
    });
    this.gamma = param('gamma', 'weight', () => tf.ones([options.channels]));
    this.beta = param('beta', 'weight', () => tf.zeros([options.channels]));
    this.movingMean = param('moving_mean', 'state', () => tf.zeros([options.channels]));
    this.movingVariance = param('moving_variance', 'state', () => tf.ones([options.channels]));
  }

  /**
   * Normalises `x` and applies `activation`. In training, where the backend has the fused kernels
   * (webgpu), statistics, normalisation and activation run as one op with a closed-form gradient
   * (fused-batch-norm.ts); elsewhere as tf.moments, tf.batchNorm and the activation.
   */
  apply(x: tf.Tensor, ctx: ForwardContext, activation: FoldedActivation = 'linear'): tf.Tensor {
    if (!ctx.training) {
      return ACTIVATIONS[activation](
        tf.batchNorm(x, this.movingMean.variable, this.movingVariance.variable, this.beta.variable, this.gamma.variable, this.epsilon),
      );
    }
    if (hasFusedBatchNorm()) {
      const { y, mean, variance } = fusedBatchNorm(x, this.gamma.variable, this.beta.variable, { epsilon: this.epsilon, activation });
      ctx.batchStatistics.push({ layer: this, mean, variance });
      return y;
    }
    const axes = x.shape.slice(0, -1).map((_, i) => i);
    const { mean, variance } = tf.moments(x, axes);
    ctx.batchStatistics.push({ layer: this, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D });
    return ACTIVATIONS[activation](tf.batchNorm(x, mean, variance, this.beta.variable, this.gamma.variable, this.epsilon));
  }

  /** Folds one batch's statistics into the moving averages (after the step, outside the gradient tape). */
  updateMovingStatistics(mean: tf.Tensor1D, variance: tf.Tensor1D): void {
    const moving = { mean: this.movingMean.variable as tf.Tensor1D, variance: this.movingVariance.variable as tf.Tensor1D };
    const [nextMean, nextVariance] = movingMoments(moving, { mean, variance }, this.momentum);
    this.movingMean.variable.assign(nextMean);
    this.movingVariance.variable.assign(nextVariance);
    tf.dispose([nextMean, nextVariance]);
  }

  parameters(): Parameter[] {
    return [this.gamma, this.beta, this.movingMean, this.movingVariance];
  }
}

/** The activations a batch norm can fold in, as separate ops (the unfused path). */
const ACTIVATIONS: Readonly<Record<FoldedActivation, (x: tf.Tensor) => tf.Tensor>> = {
  linear: (x) => x,
  relu: (x) => tf.relu(x),
  relu6: (x) => tf.relu6(x),
};

/** Inverted dropout with the pass's seed; identity outside training. */
export function dropout(x: tf.Tensor, rate: number, ctx: ForwardContext): tf.Tensor {
  if (!ctx.training || rate <= 0) return x;
  return tf.dropout(x, rate, undefined, ctx.nextDropoutSeed());
}

export function flatten(x: tf.Tensor): tf.Tensor2D {
  return tf.reshape(x, [x.shape[0]!, -1]);
}

export function globalAveragePool(x: tf.Tensor): tf.Tensor2D {
  return tf.mean(x, [1, 2]) as tf.Tensor2D;
}

/**
 * PyTorch's AdaptiveAvgPool2d on NHWC: output cell i of `size` averages input rows
 * floor(i·n/size) … ceil((i+1)·n/size) − 1 (and the same for columns), so that any input size gives a
 * size × size map (it repeats cells when the input is smaller). Written as two matrix products.
 */
export function adaptiveAveragePool(x: tf.Tensor4D, size: number): tf.Tensor4D {
  const [batch, height, width, channels] = x.shape;
  if (height === size && width === size) return x;
  return tf.tidy(() => {
    const byColumn = tf.matMul(tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, width]), adaptivePoolMatrix(width, size), false, true);
    const rowsLast = tf.transpose(tf.reshape(byColumn, [-1, height, size]), [0, 2, 1]);
    const pooled = tf.matMul(tf.reshape(rowsLast, [-1, height]), adaptivePoolMatrix(height, size), false, true);
    return tf.transpose(tf.reshape(pooled, [batch, channels, size, size]), [0, 3, 2, 1]);
  });
}

/** [size, n]: row i holds the weights with which output cell i averages the n input cells. */
function adaptivePoolMatrix(n: number, size: number): tf.Tensor2D {
  const weights = new Float32Array(size * n);
  for (let i = 0; i < size; i++) {
    const start = Math.floor((i * n) / size);
    const end = Math.ceil(((i + 1) * n) / size);
    for (let j = start; j < end; j++) weights[i * n + j] = 1 / (end - start);
  }
  return tf.tensor2d(weights, [size, n]);
}

/** A variable holding the only reference to its initial value (tf.variable keeps its own reference). */
function ownedVariable(init: () => tf.Tensor, trainable = true): tf.Variable {
  return tf.tidy(() => tf.variable(init(), trainable));
}

function initKernel(shape: number[], fanIn: number, fanOut: number, init: KernelInit, seed: number): tf.Tensor {
  if (init === 'he-normal') return tf.randomNormal(shape, 0, Math.sqrt(2 / fanIn), 'float32', seed);
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return tf.randomUniform(shape, -limit, limit, 'float32', seed);
}

function initBias(units: number, init: BiasInit, seed: number): tf.Tensor {
  // 'truncated-normal' (σ 0.1, cut at 2σ) is what the first author's LeNet scripts use.
  return init === 'zeros' ? tf.zeros([units]) : tf.truncatedNormal([units], 0, 0.1, 'float32', seed);
}
