import { type GateAttrs, type Surrogate, ZERO_THRESHOLD } from '../../gates.js';

/**
 * The AutoPrune gate's arithmetic as loops over float32 arrays, for the cpu backend: one pass instead of
 * the six to eight elementwise ops the composition takes.
 * Each value is rounded to float32 where the composition's ops round it (Math.fround), and the surrogates
 * are computed as tfjs's cpu kernels compute them, so that on cpu the bits are the composition's.
 */

// tfjs's softplus: exp(x) below `threshold`, x above -threshold (float32 machine epsilon), else log(1+e^x).
const SOFTPLUS_THRESHOLD = Math.log(1.1920928955078125e-7) + 2.0;

function softplus(x: number): number {
  if (x < SOFTPLUS_THRESHOLD) return Math.exp(x);
  if (x > -SOFTPLUS_THRESHOLD) return x;
  return Math.log(1.0 + Math.exp(x));
}

/** The surrogate derivative of h at m (gates.ts, surrogateDerivative), as float32. */
export function surrogateAt(m: number, surrogate: Surrogate): number {
  switch (surrogate) {
    case 'linear':
      return 1;
    case 'relu':
      return m > 0 ? 1 : 0;
    case 'leaky-relu':
      return m <= 0 ? 1 : Math.fround(0.1);
    case 'softplus':
      return Math.fround(softplus(m));
  }
}

/** out = W · 1[M ≥ 0]. */
export function gateForward(weights: Float32Array, aux: Float32Array, out: Float32Array): void {
  // A product, as the composition's: a closed gate's negative weight gives -0.
  for (let i = 0; i < out.length; i++) out[i] = weights[i]! * (aux[i]! >= 0 ? 1 : 0);
}

/**
 * dW = dy · 1[M ≥ 0]; dM = dy · s(W) · surrogate'(M), s(W) = sgn(W) (0 where |W| < 1e-15) for `sign`,
 * W for `magnitude`; plus penalty.weight · (surrogate'(M) − n_ratio · surrogate'(−M)) where the weight is not 0.
 */
export function gateBackward(dy: Float32Array, weights: Float32Array, aux: Float32Array, attrs: GateAttrs, dWeights: Float32Array, dAux: Float32Array): void {
  const { surrogate, auxGradient: rule } = attrs;
  const f = Math.fround;
  const [penaltyWeight, nRatio] = [f(attrs.penaltyWeight), f(attrs.nRatio)];
  for (let i = 0; i < dy.length; i++) {
    const g = dy[i]!;
    const w = weights[i]!;
    const m = aux[i]!;
    dWeights[i] = g * (m >= 0 ? 1 : 0);
    const scale = rule === 'sign' ? (Math.abs(w) < ZERO_THRESHOLD ? 0 : Math.sign(w)) : w;
    const open = surrogateAt(m, surrogate);
    const fromLoss = f(f(g * scale) * open);
    dAux[i] = penaltyWeight === 0 ? fromLoss : f(fromLoss + f(f(open - f(surrogateAt(-m, surrogate) * nRatio)) * penaltyWeight));
  }
}
