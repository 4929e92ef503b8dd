import * as tf from '@tensorflow/tfjs';

/**
 * One optimizer update of many parameters as one kernel, where a backend has it (webgpu:
 * engine/kernels/webgpu/fused-optimizer-step.ts gathers the parameters, gradients, slots and masks
 * into flat buffers and updates them all in a single dispatch).
 *
 * Inputs, for parameters i = 0 … count−1: `param{i}`, `grad{i}`, `slot{j}_{i}` for each of the
 * optimizer's slots j (Adam: m, v; SGD: its momentum buffer) and, where the update is masked,
 * `mask{i}`; and `scalars`, this step's values: Adam [stepSize, ε̂], SGD [learning rate].
 * Outputs: the updated parameters, then the updated slots, slot-major: [p′₀ … p′ₙ₋₁, s′₀,₀ … s′₀,ₙ₋₁, s′₁,₀ …].
 * The arithmetic is optimizers.ts's, element by element.
 */
export const FUSED_OPTIMIZER_STEP = 'AutoPruneFusedOptimizerStep';

/** The update rule and its constants (optimizers.ts's OptimizerSpec, which imports this module). */
export type StepRule =
  | { readonly type: 'adam'; readonly beta1: number; readonly beta2: number; readonly epsilon: number }
  | { readonly type: 'sgd'; readonly momentum: number; readonly nesterov: boolean };

export interface FusedOptimizerStepAttrs {
  readonly spec: StepRule;
  readonly count: number;
  /** For each parameter, whether `mask{i}` is given. */
  readonly masked: readonly boolean[];
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
  readonly mask?: tf.Tensor;
}

/** Runs the fused update: the new parameters and, per parameter, its new slots. */
export function fusedOptimizerStep(
  spec: StepRule,
  updates: readonly FusedUpdate[],
  scalars: readonly number[],
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
    if (update.mask !== undefined) inputs[`mask${i}`] = update.mask;
  });
  const attrs: FusedOptimizerStepAttrs = { spec, count: updates.length, masked: updates.map((u) => u.mask !== undefined) };
  const outputs = tf.engine().runKernel(FUSED_OPTIMIZER_STEP, inputs, attrs as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[];
  scalarTensor.dispose();
  const n = updates.length;
  return {
    parameters: outputs.slice(0, n),
    slots: updates.map((_, i) => Array.from({ length: slots }, (_, j) => outputs[n + j * n + i]!)),
  };
}
