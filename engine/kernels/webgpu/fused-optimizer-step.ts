import type * as tf from '@tensorflow/tfjs';
import { FUSED_OPTIMIZER_STEP, type FusedOptimizerStepAttrs, type StepRule, slotCount } from '../../fused-optimizer-step.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { ELEMENTWISE_WORKGROUP, elementwiseGrid } from './elementwise.js';
import { LINEAR_WORKGROUP, type ShaderProgram } from './program.js';

/**
 * AutoPruneFusedOptimizerStep on webgpu (semantics in engine/fused-optimizer-step.ts): the whole
 * step in one dispatch over flat buffers. The parameters, gradients, slots and masks are gathered
 * into one buffer each with buffer-to-buffer copies (commands, not dispatches: a shader can bind only
 * a few buffers, and a network has hundreds of parameters), updated in place by one kernel, and
 * copied out into new tensors. The per-parameter composition takes 5 (SGD with momentum) to 10
 * (Adam) dispatches per parameter: ResNet-50's 161 weight tensors, about 1,600 per Adam step.
 */
function update(spec: StepRule): string {
  if (spec.type === 'adam') {
    return `
  let m = s0[i] * ${f32(spec.beta1)} + g * ${f32(1 - spec.beta1)};
  let v = s1[i] * ${f32(spec.beta2)} + (g * g) * ${f32(1 - spec.beta2)};
  s0[i] = m;
  s1[i] = v;
  let delta = (m * scalars[0]) / (sqrt(v) + scalars[1]);`;
  }
  if (spec.momentum === 0) return '\n  let delta = g * scalars[0];';
  return `
  let buffer = s0[i] * ${f32(spec.momentum)} + g;
  s0[i] = buffer;
  let delta = ${spec.nesterov ? `(g + buffer * ${f32(spec.momentum)})` : 'buffer'} * scalars[0];`;
}

/** A JavaScript number as a WGSL f32 literal that rounds to the same float32 as tfjs's scalars. */
function f32(value: number): string {
  return `f32(${Math.fround(value).toPrecision(9)})`;
}

function program(spec: StepRule, masked: boolean): ShaderProgram {
  const slots = Array.from({ length: slotCount(spec) }, (_, j) => `s${j}`);
  return {
    name: `${FUSED_OPTIMIZER_STEP}(${JSON.stringify(spec)}${masked ? ', masked' : ''})`,
    outputs: ['p', ...slots],
    inputs: ['grads', 'scalars', ...(masked ? ['mask'] : [])],
    uniforms: [['size', 'u32']],
    body: `${LINEAR_WORKGROUP}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroup_index(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (i >= params.size) { return; }
  let g = grads[i];${update(spec)}
  p[i] = p[i] - ${masked ? 'delta * mask[i]' : 'delta'};
}`,
  };
}

function fusedOptimizerStep(args: KernelArgs): tf.TensorInfo[] {
  const inputs = args.inputs as Record<string, tf.TensorInfo>;
  const { spec, count, masked } = args.attrs as unknown as FusedOptimizerStepAttrs;
  const slots = slotCount(spec);
  const dispatcher = dispatcherFor(args.backend);
  const input = (name: string) => {
    const info = inputs[name];
    if (info === undefined) throw new Error(`${FUSED_OPTIMIZER_STEP}: input ${name} is missing`);
    return info;
  };
  const sizes = Array.from({ length: count }, (_, i) => input(`param${i}`).shape.reduce((a, b) => a * b, 1));
  const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  const total = sizes.reduce((a, b) => a + b, 0);
  const anyMasked = masked.some((m) => m);
  const flat = () => dispatcher.allocate([Math.max(total, 1)]);
  const params = flat();
  const grads = flat();
  const slotBuffers = Array.from({ length: slots }, () => flat());
  const mask = anyMasked ? flat() : undefined;
  for (let i = 0; i < count; i++) {
    const [offset, size] = [offsets[i]!, sizes[i]!];
    if (input(`grad${i}`).shape.reduce((a, b) => a * b, 1) !== size) throw new Error(`${FUSED_OPTIMIZER_STEP}: grad${i} does not match param${i}`);
    dispatcher.copy(input(`param${i}`), 0, params, offset, size);
    dispatcher.copy(input(`grad${i}`), 0, grads, offset, size);
    slotBuffers.forEach((buffer, j) => dispatcher.copy(input(`slot${j}_${i}`), 0, buffer, offset, size));
    if (mask !== undefined) dispatcher.copy(masked[i] ? input(`mask${i}`) : 'ones', 0, mask, offset, size);
  }
  if (total > 0) {
    const bound = [grads, input('scalars'), ...(mask === undefined ? [] : [mask])];
    dispatcher.dispatch(program(spec, anyMasked), elementwiseGrid(total), [params, ...slotBuffers], bound, [total]);
  }
  const outputs: tf.TensorInfo[] = [];
  for (const source of [params, ...slotBuffers]) {
    for (let i = 0; i < count; i++) {
      const result = dispatcher.allocate([...input(`param${i}`).shape]);
      dispatcher.copy(source, offsets[i]!, result, 0, sizes[i]!);
      outputs.push(result);
    }
  }
  for (const buffer of [params, grads, ...slotBuffers, ...(mask === undefined ? [] : [mask])]) dispatcher.release(buffer);
  return outputs;
}

export const fusedOptimizerStepConfig: tf.KernelConfig = { kernelName: FUSED_OPTIMIZER_STEP, backendName: 'webgpu', kernelFunc: fusedOptimizerStep };
