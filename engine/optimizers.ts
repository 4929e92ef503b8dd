import * as tf from '@tensorflow/tfjs';
import { InputError } from '../shared/errors.js';
import type { Parameter } from './layers.js';

/**
 * Optimizers for W and M. Written here rather than taken from tf.train because their state must be
 * addressable by parameter name: it goes into checkpoints, is restored into a freshly built network,
 * and must be bit-identical across the replicas of a distributed run.
 */

export type OptimizerSpec =
  | { readonly type: 'adam'; readonly beta1: number; readonly beta2: number; readonly epsilon: number }
  | { readonly type: 'sgd'; readonly momentum: number; readonly nesterov: boolean };

/** Named state tensors, e.g. `fc1.weight/m`, plus the step count. */
export interface OptimizerState {
  readonly step: number;
  readonly slots: Map<string, tf.Tensor>;
}

export interface Optimizer {
  readonly spec: OptimizerSpec;
  /**
   * One update of `parameters` with `gradients` (by parameter name). Where `updateMasks` has an entry,
   * the update is multiplied by it: weights behind closed gates keep their values.
   */
  apply(parameters: readonly Parameter[], gradients: ReadonlyMap<string, tf.Tensor>, learningRate: number, updateMasks?: ReadonlyMap<string, tf.Tensor>): void;
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

  /** Applies the whole update (slots, mask, parameter) with one kernel where the backend has one; false: it has none. */
  protected fusedUpdate(_parameter: tf.Variable, _gradient: tf.Tensor, _slots: tf.Variable[], _learningRate: number, _mask: tf.Tensor | undefined): boolean {
    return false;
  }

  apply(parameters: readonly Parameter[], gradients: ReadonlyMap<string, tf.Tensor>, learningRate: number, updateMasks?: ReadonlyMap<string, tf.Tensor>): void {
    this.step += 1;
    for (const parameter of parameters) {
      const gradient = gradients.get(parameter.name);
      if (!gradient) continue;
      const slots = this.slotNames.map((slot) => this.slot(parameter, slot));
      const mask = updateMasks?.get(parameter.name);
      if (this.fusedUpdate(parameter.variable, gradient, slots, learningRate, mask)) continue;
      tf.tidy(() => {
        let delta = this.update(gradient, slots, learningRate);
        if (mask) delta = tf.mul(delta, mask);
        parameter.variable.assign(tf.sub(parameter.variable, delta));
      });
    }
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

  private attrs(learningRate: number): AdamAttrs {
    const { beta1, beta2, epsilon } = this.spec;
    return {
      beta1,
      beta2,
      stepSize: (learningRate * Math.sqrt(1 - beta2 ** this.step)) / (1 - beta1 ** this.step),
      epsilonHat: epsilon * Math.sqrt(1 - beta2 ** this.step),
    };
  }

  protected override fusedUpdate(
    parameter: tf.Variable,
    gradient: tf.Tensor,
    [m, v]: tf.Variable[],
    learningRate: number,
    mask: tf.Tensor | undefined,
  ): boolean {
    if (tf.getKernel(ADAM_UPDATE, tf.getBackend()) === undefined) return false;
    const inputs = { parameter, gradient, m: m!, v: v!, ...(mask ? { mask } : {}) };
    const [p, m1, v1] = tf.engine().runKernel(ADAM_UPDATE, inputs, this.attrs(learningRate) as unknown as tf.NamedAttrMap) as tf.Tensor[];
    parameter.assign(p!);
    m!.assign(m1!);
    v!.assign(v1!);
    tf.dispose([p!, m1!, v1!]);
    return true;
  }

  protected update(gradient: tf.Tensor, [m, v]: tf.Variable[], learningRate: number): tf.Tensor {
    const { beta1, beta2, stepSize, epsilonHat } = this.attrs(learningRate);
    m!.assign(tf.add(tf.mul(m!, beta1), tf.mul(gradient, 1 - beta1)));
    v!.assign(tf.add(tf.mul(v!, beta2), tf.mul(tf.square(gradient), 1 - beta2)));
    return tf.div(tf.mul(m!, stepSize), tf.add(tf.sqrt(v!), epsilonHat));
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
}
