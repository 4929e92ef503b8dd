import * as tf from '@tensorflow/tfjs';

/**
 * One optimizer update of many parameters as one kernel, where a backend has it (webgpu:
 * engine/kernels/webgpu/fused-optimizer-step.ts gathers the parameters, gradients, slots and masks
 * into flat buffers and updates them all in a single dispatch).
 *
 * Inputs, for parameters i = 0 … count−1: `param{i}`, `grad{i}`, `slot{j}_{i}` for each of the
 * optimizer's slots j (Adam: m, v; SGD: its momentum buffer) and, where the update is gated,
 * `gate{i}` (float32, the parameter's shape); and `scalars`, this step's values: Adam [stepSize, ε̂],
 * SGD [learning rate].
 * Outputs: the updated parameters, then the updated slots, slot-major: [p′₀ … p′ₙ₋₁, s′₀,₀ … s′₀,ₙ₋₁, s′₁,₀ …].
 * The arithmetic is optimizers.ts's, element by element: where gated, o = 1[gate ≥ 0], else 1;
 * g = grad·o, plus λ1·sgn(p) + λ2·p where `decayed[i]`; the rule's update Δ from g and the slots;
 * p′ = p − Δ·o. Taking the gate's values (AutoPrune's M) rather than a 0/1 mask, and the decay as
 * attributes, is what lets a W step apply L1/L2 and its gates with no elementwise op of its own.
 */
export const FUSED_OPTIMIZER_STEP = 'AutoPruneFusedOptimizerStep';

/** The update rule and its constants (optimizers.ts's OptimizerSpec, which imports this module). */
export type StepRule =
  | { readonly type: 'adam'; readonly beta1: number; readonly beta2: number; readonly epsilon: number }
  | { readonly type: 'sgd'; readonly momentum: number; readonly nesterov: boolean };

/** L1 and L2 weight decay: λ1·sgn(p) + λ2·p added to the gradient of a decayed parameter. */
export interface WeightDecay {
  readonly l1: number;
  readonly l2: number;
}

export interface FusedOptimizerStepAttrs {
  readonly spec: StepRule;
  readonly count: number;
  /** For each parameter, whether `gate{i}` is given. */
  readonly gated: readonly boolean[];
  /** For each parameter, whether `decay` applies to it. */
  readonly decayed: readonly boolean[];
  readonly decay: WeightDecay;
}

/** The number of slots per parameter of an optimizer. */
export function slotCount(spec: StepRule): number {
  return spec.type === 'adam' ? 2 : spec.type === 'sgd' && spec.momentum !== 0 ? 1 : 0;
}

/** Whether the active backend has the fused update. */
export function hasFusedOptimizerStep(): boolean {
  return tf.getKernel(FUSED_OPTIMIZER_STEP, tf.getBackend()) !== undefined;
}

export interface FusedUpdate {
  readonly parameter: tf.Tensor;
  readonly gradient: tf.Tensor;
  readonly slots: readonly tf.Tensor[];
  /** The update applies only where gate ≥ 0. */
  readonly gate?: tf.Tensor;
  /** Whether the step's weight decay applies. */
  readonly decayed: boolean;
}

/** Runs the fused update: the new parameters and, per parameter, its new slots. */
export function fusedOptimizerStep(
  spec: StepRule,
  updates: readonly FusedUpdate[],
  scalars: readonly number[],
  decay: WeightDecay,
): { parameters: tf.Tensor[]; slots: tf.Tensor[][] } {
  const slots = slotCount(spec);
  const inputs: tf.NamedTensorMap = {};
  const scalarTensor = tf.tensor1d([...scalars], 'float32');
  inputs.scalars = scalarTensor;
  updates.forEach((update, i) => {
    inputs[`param${i}`] = update.parameter;
    inputs[`grad${i}`] = update.gradient;
    update.slots.forEach((slot, j) => {
      inputs[`slot${j}_${i}`] = slot;
    });
    if (update.gate !== undefined) inputs[`gate${i}`] = update.gate;
  });
  const attrs: FusedOptimizerStepAttrs = {
    spec,
    count: updates.length,
    gated: updates.map((u) => u.gate !== undefined),
    decayed: updates.map((u) => u.decayed),
    decay,
  };
  const outputs = tf.engine().runKernel(FUSED_OPTIMIZER_STEP, inputs, attrs as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[];
  scalarTensor.dispose();
  const n = updates.length;
  return {
    parameters: outputs.slice(0, n),
    slots: updates.map((_, i) => Array.from({ length: slots }, (_, j) => outputs[n + j * n + i]!)),
  };
}
