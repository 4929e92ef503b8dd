import type * as tf from '@tensorflow/tfjs';
import { AUTOPRUNE_GATE_GRAD, type AuxGradientRule, type GateAttrs, type Surrogate } from '../../gates.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { ELEMENTWISE_WORKGROUP, elementwiseGrid } from './elementwise.js';
import { LINEAR_WORKGROUP, type ShaderProgram } from './program.js';

/**
 * AutoPruneGateGrad on webgpu: both gradients of the gated weight W ⊙ h(M) in one pass, where the
 * composition (gates.ts, composedGatedWeight) takes about ten dispatches. The op's inputs, attributes
 * (GateAttrs) and outputs [dW, dM] are engine/gates.ts's contract; its gradient registration there calls
 * this kernel with the forward op's attributes.
 */

const SURROGATES: Readonly<Record<Surrogate, string>> = {
  linear: '1.0',
  relu: 'select(0.0, 1.0, m > 0.0)',
  'leaky-relu': 'select(0.1, 1.0, m <= 0.0)',
  softplus: 'softplus(m)',
};

const WEIGHT_SCALES: Readonly<Record<AuxGradientRule, string>> = {
  sign: 'select(sign(w), 0.0, abs(w) < 1e-15)',
  magnitude: 'w',
};

/** tfjs's softplus (tfjs-backend-cpu Softplus): exact branches where exp over- or underflows. */
const SOFTPLUS = `
const SOFTPLUS_THRESHOLD: f32 = -13.942385152878742; // log(1.1920928955078125e-7) + 2
fn softplus(m: f32) -> f32 {
  if (m < SOFTPLUS_THRESHOLD) { return exp(m); }
  if (m > -SOFTPLUS_THRESHOLD) { return m; }
  return log(1.0 + exp(m));
}`;

function program(surrogate: Surrogate, rule: AuxGradientRule): ShaderProgram {
  return {
    name: `${AUTOPRUNE_GATE_GRAD}(${surrogate}, ${rule})`,
    outputs: ['dw', 'dm'],
    inputs: ['dy', 'weights', 'aux'],
    uniforms: [['size', 'u32']],
    body: `${LINEAR_WORKGROUP}${SOFTPLUS}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroup_index(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (i >= params.size) { return; }
  let g = dy[i];
  let w = weights[i];
  let m = aux[i];
  dw[i] = g * select(0.0, 1.0, m >= 0.0);
  dm[i] = g * ${WEIGHT_SCALES[rule]} * ${SURROGATES[surrogate]};
}`,
  };
}

function autoPruneGateGrad(args: KernelArgs): tf.TensorInfo[] {
  const { dy, weights, aux } = args.inputs as { dy: tf.TensorInfo; weights: tf.TensorInfo; aux: tf.TensorInfo };
  const { surrogate, auxGradient } = args.attrs as unknown as GateAttrs;
  if (!(surrogate in SURROGATES)) throw new Error(`${AUTOPRUNE_GATE_GRAD}: unknown surrogate '${surrogate}'`);
  if (!(auxGradient in WEIGHT_SCALES)) throw new Error(`${AUTOPRUNE_GATE_GRAD}: unknown auxGradient '${auxGradient}'`);
  const shape = weights.shape.join(',');
  if (dy.shape.join(',') !== shape || aux.shape.join(',') !== shape) {
    throw new Error(`${AUTOPRUNE_GATE_GRAD}: dy [${dy.shape}], weights [${weights.shape}] and aux [${aux.shape}] must have one shape`);
  }
  const dispatcher = dispatcherFor(args.backend);
  const size = weights.shape.reduce((a, b) => a * b, 1);
  const dw = dispatcher.allocate([...weights.shape]);
  const dm = dispatcher.allocate([...weights.shape]);
  if (size > 0) dispatcher.dispatch(program(surrogate, auxGradient), elementwiseGrid(size), [dw, dm], [dy, weights, aux], [size]);
  return [dw, dm];
}

export const autoPruneGateGradConfig: tf.KernelConfig = { kernelName: AUTOPRUNE_GATE_GRAD, backendName: 'webgpu', kernelFunc: autoPruneGateGrad };
