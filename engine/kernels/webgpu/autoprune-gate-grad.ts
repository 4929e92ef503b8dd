import type * as tf from '@tensorflow/tfjs';
import { AUTOPRUNE_GATE_GRAD, type AuxGradientRule, type GateAttrs, type Surrogate } from '../../gates.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { elementwiseGrid, elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/**
 * AutoPruneGateGrad on webgpu: both gradients of the gated weight W ⊙ h(M) in one pass, where the
 * composition (gates.ts, composedGatedWeight) takes about ten dispatches. The op's inputs, attributes
 * (GateAttrs) and outputs [dW, dM] are engine/gates.ts's contract; its gradient registration there calls
 * this kernel with the forward op's attributes. With a penalty weight, the sparsity penalty's gradient is
 * added in the same pass (it would be about seven dispatches more per layer and M step composed).
 */

/** surrogate'(x) as WGSL, for an expression x. */
const SURROGATES: Readonly<Record<Surrogate, (x: string) => string>> = {
  linear: () => '1.0',
  relu: (x) => `select(0.0, 1.0, ${x} > 0.0)`,
  'leaky-relu': (x) => `select(0.1, 1.0, ${x} <= 0.0)`,
  softplus: (x) => `softplus(${x})`,
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

function program(surrogate: Surrogate, rule: AuxGradientRule, penalized: boolean): ShaderProgram {
  const surrogateOf = SURROGATES[surrogate];
  // As gates.ts composes it: (dy·s(W))·h'(M), then + w·(h'(M) − n_ratio·h'(−M)).
  const auxGradient = penalized
    ? `g * ${WEIGHT_SCALES[rule]} * open + (open - ${surrogateOf('-m')} * params.nRatio) * params.penaltyWeight`
    : `g * ${WEIGHT_SCALES[rule]} * open`;
  return {
    name: `${AUTOPRUNE_GATE_GRAD}(${surrogate}, ${rule}${penalized ? ', penalized' : ''})`,
    outputs: ['dw', 'dm'],
    inputs: ['dy', 'weights', 'aux'],
    uniforms: [
      ['size', 'u32'],
      ['penaltyWeight', 'f32'],
      ['nRatio', 'f32'],
    ],
    body: elementwiseShader(
      `  let g = dy[i];
  let w = weights[i];
  let m = aux[i];
  let open = ${surrogateOf('m')};
  dw[i] = g * select(0.0, 1.0, m >= 0.0);
  dm[i] = ${auxGradient};`,
      SOFTPLUS,
    ),
  };
}

function autoPruneGateGrad(args: KernelArgs): tf.TensorInfo[] {
  const { dy, weights, aux } = args.inputs as { dy: tf.TensorInfo; weights: tf.TensorInfo; aux: tf.TensorInfo };
  const { surrogate, auxGradient, penaltyWeight, nRatio } = args.attrs as unknown as GateAttrs;
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
  if (size > 0) {
    dispatcher.dispatch(
      program(surrogate, auxGradient, penaltyWeight !== 0),
      elementwiseGrid(size),
      [dw, dm],
      [dy, weights, aux],
      [size, penaltyWeight, nRatio],
    );
  }
  return [dw, dm];
}

export const autoPruneGateGradConfig: tf.KernelConfig = { kernelName: AUTOPRUNE_GATE_GRAD, backendName: 'webgpu', kernelFunc: autoPruneGateGrad };
