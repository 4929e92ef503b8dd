import type * as tf from '@tensorflow/tfjs';
import { FUSED_OPTIMIZER_STEP, type FusedOptimizerStepAttrs, type StepRule, slotCount, type WeightDecay } from '../../fused-optimizer-step.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { elementwiseGrid, elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/**
 * AutoPruneFusedOptimizerStep on webgpu (semantics in engine/fused-optimizer-step.ts): the whole
 * step in one dispatch over flat buffers. The parameters, gradients, slots and gates are gathered
 * into one buffer each with buffer-to-buffer copies (commands, not dispatches: a shader can bind only
 * a few buffers, and a network has hundreds of parameters), updated in place by one kernel, and
 * copied out into new tensors. The per-parameter composition takes 5 (SGD with momentum) to 10
 * (Adam) dispatches per parameter, and a W step's L1/L2 and 0/1 gates 8 more per kernel.
 *
 * The parameters are laid out in four runs, so that which rules apply to an element is two
 * comparisons of its index, with no per-element table: gated and decayed, gated only, decayed only,
 * neither. The gate buffer covers the gated runs only.
 */
function update(spec: StepRule): string {
  if (spec.type === 'adam') {
    return `
  let m = s0[i] * ${f32(spec.beta1)} + g * ${f32(1 - spec.beta1)};
  let v = s1[i] * ${f32(spec.beta2)} + (g * g) * ${f32(1 - spec.beta2)};
  s0[i] = m;
  s1[i] = v;
  var delta = (m * scalars[0]) / (sqrt(v) + scalars[1]);`;
  }
  if (spec.momentum === 0) return '\n  var delta = g * scalars[0];';
  return `
  let buffer = s0[i] * ${f32(spec.momentum)} + g;
  s0[i] = buffer;
  var delta = ${spec.nesterov ? `(g + buffer * ${f32(spec.momentum)})` : 'buffer'} * scalars[0];`;
}

/** A JavaScript number as a WGSL f32 literal that rounds to the same float32 as tfjs's scalars. */
function f32(value: number): string {
  return `f32(${Math.fround(value).toPrecision(9)})`;
}

/** `decay` undefined: no parameter is decayed, or both coefficients are 0 (the composition adds nothing then). */
function program(spec: StepRule, gated: boolean, decay: WeightDecay | undefined): ShaderProgram {
  const slots = Array.from({ length: slotCount(spec) }, (_, j) => `s${j}`);
  // As optimizers.ts composes it: g + (sgn(p)·λ1 + p·λ2); sign(0) = 0 in WGSL as in tfjs.
  const decayed = decay
    ? `
  if (i < params.gatedDecayedEnd || (i >= params.gatedEnd && i < params.decayedEnd)) {
    g = g + (sign(p0) * ${f32(decay.l1)} + p0 * ${f32(decay.l2)});
  }`
    : '';
  // The composition multiplies gradient and step by the 0/1 mask (not a select): Δ·0 and g·0 here too.
  const open = gated ? '\n  var open = 1.0;\n  if (i < params.gatedEnd) { open = select(0.0, 1.0, gate[i] >= 0.0); }' : '';
  const maskedGradient = gated ? ' * open' : '';
  const maskedStep = gated ? '\n  delta = delta * open;' : '';
  return {
    name: `${FUSED_OPTIMIZER_STEP}(${JSON.stringify(spec)}${gated ? ', gated' : ''}${decay ? `, decay ${JSON.stringify(decay)}` : ''})`,
    outputs: ['p', ...slots],
    inputs: ['grads', 'scalars', ...(gated ? ['gate'] : [])],
    uniforms: [
      ['size', 'u32'],
      ['gatedDecayedEnd', 'u32'],
      ['gatedEnd', 'u32'],
      ['decayedEnd', 'u32'],
    ],
    body: elementwiseShader(`  let p0 = p[i];${open}
  var g = grads[i]${maskedGradient};${decayed}${update(spec)}${maskedStep}
  p[i] = p0 - delta;`),
  };
}

/** The four runs' order: gated and decayed, gated, decayed, neither (stable within a run). */
function layoutOrder(gated: readonly boolean[], decayed: readonly boolean[]): number[] {
  const run = (i: number) => (gated[i] ? 0 : 2) + (decayed[i] ? 0 : 1);
  return gated.map((_, i) => i).sort((a, b) => run(a) - run(b) || a - b);
}

function fusedOptimizerStep(args: KernelArgs): tf.TensorInfo[] {
  const inputs = args.inputs as Record<string, tf.TensorInfo>;
  const { spec, count, gated, decayed, decay } = args.attrs as unknown as FusedOptimizerStepAttrs;
  const slots = slotCount(spec);
  const dispatcher = dispatcherFor(args.backend);
  const input = (name: string) => {
    const info = inputs[name];
    if (info === undefined) throw new Error(`${FUSED_OPTIMIZER_STEP}: input ${name} is missing`);
    return info;
  };
  const sizeOf = (info: tf.TensorInfo) => info.shape.reduce((a, b) => a * b, 1);
  const sizes = Array.from({ length: count }, (_, i) => sizeOf(input(`param${i}`)));
  const offsets: number[] = new Array(count);
  let total = 0;
  let gatedDecayedEnd = 0;
  let gatedEnd = 0;
  let decayedEnd = 0;
  for (const i of layoutOrder(gated, decayed)) {
    offsets[i] = total;
    total += sizes[i]!;
    if (gated[i] && decayed[i]) gatedDecayedEnd = total;
    if (gated[i]) gatedEnd = total;
    if (decayed[i]) decayedEnd = total;
  }
  const decays = decayed.some((d) => d) && (decay.l1 !== 0 || decay.l2 !== 0);
  const flat = (elements: number) => dispatcher.allocate([Math.max(elements, 1)]);
  const params = flat(total);
  const grads = flat(total);
  const slotBuffers = Array.from({ length: slots }, () => flat(total));
  const gate = gatedEnd > 0 ? flat(gatedEnd) : undefined;
  for (let i = 0; i < count; i++) {
    const [offset, size] = [offsets[i]!, sizes[i]!];
    for (const name of [`grad${i}`, ...(gated[i] ? [`gate${i}`] : [])]) {
      if (sizeOf(input(name)) !== size) throw new Error(`${FUSED_OPTIMIZER_STEP}: ${name} does not match param${i}`);
    }
    dispatcher.copy(input(`param${i}`), 0, params, offset, size);
    dispatcher.copy(input(`grad${i}`), 0, grads, offset, size);
    slotBuffers.forEach((buffer, j) => dispatcher.copy(input(`slot${j}_${i}`), 0, buffer, offset, size));
    if (gated[i]) dispatcher.copy(input(`gate${i}`), 0, gate!, offset, size);
  }
  if (total > 0) {
    const bound = [grads, input('scalars'), ...(gate === undefined ? [] : [gate])];
    const uniforms = [total, gatedDecayedEnd, gatedEnd, decayedEnd];
    dispatcher.dispatch(program(spec, gate !== undefined, decays ? decay : undefined), elementwiseGrid(total), [params, ...slotBuffers], bound, uniforms);
  }
  const outputs: tf.TensorInfo[] = [];
  for (const source of [params, ...slotBuffers]) {
    for (let i = 0; i < count; i++) {
      const result = dispatcher.allocate([...input(`param${i}`).shape]);
      dispatcher.copy(source, offsets[i]!, result, 0, sizes[i]!);
      outputs.push(result);
    }
  }
  for (const buffer of [params, grads, ...slotBuffers, ...(gate === undefined ? [] : [gate])]) dispatcher.release(buffer);
  return outputs;
}

export const fusedOptimizerStepConfig: tf.KernelConfig = { kernelName: FUSED_OPTIMIZER_STEP, backendName: 'webgpu', kernelFunc: fusedOptimizerStep };
