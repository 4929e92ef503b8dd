import * as tf from '@tensorflow/tfjs';
import { InputError } from '../shared/errors.js';
import { fusedOptimizerStep, hasFusedOptimizerStep, type StepRule, slotCount, type WeightDecay } from './fused-optimizer-step.js';
import { stepGate } from './gates.js';
import type { Parameter } from './layers.js';

/**
 * Optimizers for W and M. Written here rather than taken from tf.train because their state must be
 * addressable by parameter name: it goes into checkpoints, is restored into a freshly built network,
 * and must be bit-identical across the replicas of a distributed run.
 */

export type OptimizerSpec = StepRule;

/** Named state tensors, e.g. `fc1.weight/m`, plus the step count. */
export interface OptimizerState {
  readonly step: number;
  readonly slots: Map<string, tf.Tensor>;
}

/** What an update does besides the optimizer's rule. */
export interface UpdateOptions {
  /**
   * Gate values by parameter name, each of its parameter's shape (AutoPrune's M, broadcast for unit
   * gates): the gradient and the update apply only where the gate is ≥ 0, so weights behind closed gates
   * keep their values, and their slots see no gradient (the decay still applies to it).
   */
  readonly gates?: ReadonlyMap<string, tf.Tensor>;
  /** L1/L2 added to the gradient of every parameter marked `decayed`, after the replicas' gradients are combined. */
  readonly decay?: WeightDecay;
}

export interface Optimizer {
  readonly spec: OptimizerSpec;
  /** One update of `parameters` with `gradients` (by parameter name). */
  apply(parameters: readonly Parameter[], gradients: ReadonlyMap<string, tf.Tensor>, learningRate: number, options?: UpdateOptions): void;
  /** The live state: read it before the next update and do not dispose it. */
  state(): OptimizerState;
  /** Replaces the state; every slot must match a parameter's shape. */
  load(state: OptimizerState, parameters: readonly Parameter[]): void;
  dispose(): void;
}

export function createOptimizer(spec: OptimizerSpec): Optimizer {
  return spec.type === 'adam' ? new Adam(spec) : new MomentumSgd(spec);
}

abstract class SlotOptimizer implements Optimizer {
  protected step = 0;
  protected readonly slots = new Map<string, tf.Variable>();
  abstract readonly spec: OptimizerSpec;
  protected abstract readonly slotNames: readonly string[];

  /** Returns the update to subtract from the parameter, given its gradient and slots (already advanced). */
  protected abstract update(gradient: tf.Tensor, slots: tf.Variable[], learningRate: number): tf.Tensor;

  /** This step's scalars of the fused update (fused-optimizer-step.ts), from the same formulas as `update`. */
  protected abstract stepScalars(learningRate: number): number[];

  /** Applies one parameter's whole update (slots, mask, parameter) with one kernel where the backend has one; false: it has none. */
  protected fusedUpdate(_parameter: tf.Variable, _gradient: tf.Tensor, _slots: tf.Variable[], _learningRate: number, _mask: tf.Tensor | undefined): boolean {
    return false;
  }

  /**
   * The fastest form the backend has: every parameter in one kernel (webgpu: fused-optimizer-step.ts), else
   * one kernel per parameter (Adam on cpu: AutoPruneAdam), else the composition of core ops (wasm's SIMD ops).
   */
  apply(parameters: readonly Parameter[], gradients: ReadonlyMap<string, tf.Tensor>, learningRate: number, options: UpdateOptions = {}): void {
    this.step += 1;
    const updated = parameters.filter((parameter) => gradients.has(parameter.name));
    const slots = updated.map((parameter) => this.slotNames.map((slot) => this.slot(parameter, slot)));
    const decay = options.decay ?? { l1: 0, l2: 0 };
    if (updated.length > 0 && hasFusedOptimizerStep()) {
      this.applyFused(updated, slots, gradients, learningRate, options.gates, decay);
      return;
    }
    const decays = decay.l1 !== 0 || decay.l2 !== 0;
    updated.forEach((parameter, i) => {
      const gate = options.gates?.get(parameter.name);
      tf.tidy(() => {
        const weights = parameter.variable;
        const mask = gate ? stepGate(gate) : undefined;
        let gradient = gradients.get(parameter.name)!;
        if (mask) gradient = tf.mul(gradient, mask);
        if (parameter.decayed && decays) gradient = tf.add(gradient, tf.add(tf.mul(tf.sign(weights), decay.l1), tf.mul(weights, decay.l2)));
        if (this.fusedUpdate(weights, gradient, slots[i]!, learningRate, mask)) return;
        let delta = this.update(gradient, slots[i]!, learningRate);
        if (mask) delta = tf.mul(delta, mask);
        weights.assign(tf.sub(weights, delta));
      });
    });
  }

  /** Every parameter's update in one kernel, where the backend has it (webgpu). */
  private applyFused(
    parameters: readonly Parameter[],
    slots: readonly tf.Variable[][],
    gradients: ReadonlyMap<string, tf.Tensor>,
    learningRate: number,
    gates: ReadonlyMap<string, tf.Tensor> | undefined,
    decay: WeightDecay,
  ): void {
    const used = slotCount(this.spec);
    const result = fusedOptimizerStep(
      this.spec,
      parameters.map((parameter, i) => ({
        parameter: parameter.variable,
        gradient: gradients.get(parameter.name)!,
        slots: slots[i]!.slice(0, used),
        ...(gates?.has(parameter.name) ? { gate: gates.get(parameter.name)! } : {}),
        decayed: parameter.decayed,
      })),
      this.stepScalars(learningRate),
      decay,
    );
    parameters.forEach((parameter, i) => {
      parameter.variable.assign(result.parameters[i]!);
      result.slots[i]!.forEach((slot, j) => slots[i]![j]!.assign(slot));
    });
    tf.dispose([...result.parameters, ...result.slots.flat()]);
  }

  private slot(parameter: Parameter, slot: string): tf.Variable {
    const key = `${parameter.name}/${slot}`;
    let variable = this.slots.get(key);
    if (!variable) {
      variable = tf.variable(tf.zerosLike(parameter.variable), false);
      this.slots.set(key, variable);
    }
    return variable;
  }

  state(): OptimizerState {
    return { step: this.step, slots: new Map(this.slots) };
  }

  load(state: OptimizerState, parameters: readonly Parameter[]): void {
    const shapes = new Map(parameters.map((p) => [p.name, p.variable.shape]));
    for (const [key, tensor] of state.slots) {
      const cut = key.lastIndexOf('/');
      const name = key.slice(0, cut);
      const slot = key.slice(cut + 1);
      const shape = shapes.get(name);
      if (!shape || !this.slotNames.includes(slot)) {
        throw new InputError(`optimizer state ${key}`, 'does not belong to this network and optimizer', {
          expected: `one of ${this.slotNames.map((s) => `<parameter>/${s}`).join(', ')}`,
        });
      }
      if (shape.join('x') !== tensor.shape.join('x')) {
        throw new InputError(`optimizer state ${key}`, 'has the wrong shape', { expected: `[${shape}]`, found: `[${tensor.shape}]` });
      }
    }
    this.dispose();
    for (const [key, tensor] of state.slots) this.slots.set(key, tf.variable(tensor, false));
    this.step = state.step;
  }

  dispose(): void {
    for (const v of this.slots.values()) v.dispose();
    this.slots.clear();
  }
}

/**
 * One parameter's whole Adam update as a kernel, for backends that register it (cpu and wasm:
 * engine/kernels/host/adam.ts); elsewhere Adam composes it from core ops. The contract:
 * `AutoPruneAdam`: inputs { parameter, gradient, m, v, mask? } (float32, one shape); attrs AdamAttrs;
 *   outputs [parameter', m', v']:
 *     m' = β1·m + (1−β1)·g      v' = β2·v + (1−β2)·g²
 *     Δ = stepSize·m' / (√v' + ε̂), times mask where given      parameter' = parameter − Δ
 */
export const ADAM_UPDATE = 'AutoPruneAdam';

export interface AdamAttrs {
  readonly beta1: number;
  readonly beta2: number;
  /** lr·√(1−β2^t)/(1−β1^t): the bias corrections folded into the step. */
  readonly stepSize: number;
  /** ε·√(1−β2^t). */
  readonly epsilonHat: number;
}

/** Adam (Kingma & Ba) with bias correction, ε outside the square root, as PyTorch and TensorFlow. */
class Adam extends SlotOptimizer {
  protected readonly slotNames = ['m', 'v'] as const;
  constructor(readonly spec: Extract<OptimizerSpec, { type: 'adam' }>) {
    super();
  }

  protected override fusedUpdate(
    parameter: tf.Variable,
    gradient: tf.Tensor,
    [m, v]: tf.Variable[],
    learningRate: number,
    mask: tf.Tensor | undefined,
  ): boolean {
    if (tf.getKernel(ADAM_UPDATE, tf.getBackend()) === undefined) return false;
    const { beta1, beta2 } = this.spec;
    const [stepSize, epsilonHat] = this.stepScalars(learningRate) as [number, number];
    const attrs: AdamAttrs = { beta1, beta2, stepSize, epsilonHat };
    const inputs = { parameter, gradient, m: m!, v: v!, ...(mask ? { mask } : {}) };
    const [p, m1, v1] = tf.engine().runKernel(ADAM_UPDATE, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    parameter.assign(p!);
    m!.assign(m1!);
    v!.assign(v1!);
    tf.dispose([p!, m1!, v1!]);
    return true;
  }

  protected update(gradient: tf.Tensor, [m, v]: tf.Variable[], learningRate: number): tf.Tensor {
    const { beta1, beta2 } = this.spec;
    m!.assign(tf.add(tf.mul(m!, beta1), tf.mul(gradient, 1 - beta1)));
    v!.assign(tf.add(tf.mul(v!, beta2), tf.mul(tf.square(gradient), 1 - beta2)));
    const [stepSize, epsilonHat] = this.stepScalars(learningRate) as [number, number];
    return tf.div(tf.mul(m!, stepSize), tf.add(tf.sqrt(v!), epsilonHat));
  }

  /** The bias-corrected step size and ε̂ of this step (AdamAttrs' stepSize and epsilonHat). */
  protected stepScalars(learningRate: number): number[] {
    const { beta1, beta2, epsilon } = this.spec;
    return [(learningRate * Math.sqrt(1 - beta2 ** this.step)) / (1 - beta1 ** this.step), epsilon * Math.sqrt(1 - beta2 ** this.step)];
  }
}

/** SGD with heavy-ball or Nesterov momentum (PyTorch's formulation: buf = μ·buf + g). */
class MomentumSgd extends SlotOptimizer {
  protected readonly slotNames = ['momentum'] as const;
  constructor(readonly spec: Extract<OptimizerSpec, { type: 'sgd' }>) {
    super();
  }

  protected update(gradient: tf.Tensor, [buffer]: tf.Variable[], learningRate: number): tf.Tensor {
    const { momentum, nesterov } = this.spec;
    if (momentum === 0) return tf.mul(gradient, learningRate);
    buffer!.assign(tf.add(tf.mul(buffer!, momentum), gradient));
    const direction = nesterov ? tf.add(gradient, tf.mul(buffer!, momentum)) : buffer!;
    return tf.mul(direction, learningRate);
  }

  protected stepScalars(learningRate: number): number[] {
    return [learningRate];
  }
}
