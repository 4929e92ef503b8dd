import * as tf from '@tensorflow/tfjs';

/**
 * AutoPrune's gate h and the gradient rules of its auxiliary parameters M
 * (Xiao, Wang, Rajasekaran, NeurIPS 2019, sections 3.1-3.3).
 */

/** Surrogate used in place of h'(m), which is zero almost everywhere. */
export type Surrogate = 'linear' | 'relu' | 'leaky-relu' | 'softplus';

/** `weight`: one gate per weight (M has W's shape). `neuron`: one gate per output unit / filter / channel. */
export type Granularity = 'weight' | 'neuron';

/**
 * How the weight enters the gradient of a weight-granularity gate.
 * `sign`: ∂L/∂(W⊙h) · sgn(W) · surrogate(M) — the paper's rule, W's magnitude divided out so that a gate
 *   moves at a speed independent of its weight's size.
 * `magnitude`: the plain chain rule ∂L/∂(W⊙h) · W · surrogate(M), as the first author's LeNet script does.
 */
export type AuxGradientRule = 'sign' | 'magnitude';

/** Below this, a value counts as zero in the gradient rules (the first author's threshold). */
export const ZERO_THRESHOLD = 1e-15;

/**
 * The fused gate as two kernels, so that each backend can run W ⊙ h(M) and its surrogate backward as one
 * pass each (cpu and wasm: engine/kernels/host/; webgpu: a WGSL kernel registered under the same names).
 * The contract every implementation meets:
 *
 * `AutoPruneGate`: inputs { weights: W, aux: M } (float32, the same shape); attrs GateAttrs;
 *   output W · 1[M ≥ 0] (W's shape). The attrs do not change the forward value; they are there because
 *   its gradient (registered below) receives the forward op's attrs.
 * `AutoPruneGateGrad`: inputs { dy, weights: W, aux: M } (float32, W's shape); attrs GateAttrs;
 *   outputs [dW, dM]:
 *     dW = dy · 1[M ≥ 0]
 *     dM = dy · s(W) · surrogate'(M)   (+ the penalty's gradient, below)
 *   s(W) = sgn(W), and 0 where |W| < 1e-15 (auxGradient 'sign'), or W ('magnitude');
 *   surrogate'(m): 'linear' 1; 'relu' 1[m > 0]; 'leaky-relu' 1 where m ≤ 0 else 0.1;
 *   'softplus' log(1 + e^m) (exp(m) below log(2^-23) + 2, m above its negation, as tfjs computes it).
 *   With a penalty weight w ≠ 0, dM also carries the gradient of the layer's sparsity penalty
 *   (sparsityGradient below): dM = (dy · s(W) · surrogate'(M)) + w · (surrogate'(M) − n_ratio · surrogate'(−M)),
 *   each product and difference rounded to float32 as the composition rounds it. The penalty's value is
 *   not an output: it enters the loss only when someone reads the loss (AutoPruneTrainer), while its
 *   gradient is needed every M step, in the same pass over M.
 *
 * Where the active backend has no such kernels (tensorflow; webgpu before its kernels are registered),
 * gatedWeight composes the same arithmetic from core ops.
 */
export const AUTOPRUNE_GATE = 'AutoPruneGate';
export const AUTOPRUNE_GATE_GRAD = 'AutoPruneGateGrad';

export interface GateAttrs {
  readonly surrogate: Surrogate;
  readonly auxGradient: AuxGradientRule;
  /** The layer's sparsity penalty weight (μ_g / |group g|); 0: no penalty gradient in dM. */
  readonly penaltyWeight: number;
  /** The weight of R⁻ relative to R⁺ (used with a penalty weight). */
  readonly nRatio: number;
}

/** The sparsity penalty whose gradient a gate's backward adds to dM (AutoPruneTrainer decides which layers). */
export interface GatePenalty {
  readonly weight: number;
  readonly nRatio: number;
}

const NO_PENALTY: GatePenalty = { weight: 0, nRatio: 0 };

tf.registerGradient({
  kernelName: AUTOPRUNE_GATE,
  inputsToSave: ['weights', 'aux'],
  gradFunc: (dy, saved, attrs) => {
    const [weights, aux] = saved as [tf.Tensor, tf.Tensor];
    // One kernel gives both gradients; the one nobody asks for is disposed with the backward pass's scope.
    const [dWeights, dAux] = tf.engine().runKernel(AUTOPRUNE_GATE_GRAD, { dy: dy as tf.Tensor, weights, aux }, attrs as tf.NamedAttrMap) as tf.Tensor[];
    return { weights: () => dWeights!, aux: () => dAux! };
  },
});

/** Whether the active backend has both gate kernels. */
function hasGateKernels(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(AUTOPRUNE_GATE, backend) !== undefined && tf.getKernel(AUTOPRUNE_GATE_GRAD, backend) !== undefined;
}

/** h(m) = 1 if m ≥ 0 else 0, as float32. */
export function stepGate(m: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.cast(tf.greaterEqual(m, 0), 'float32'));
}

/** The surrogate derivative of h at m. */
export function surrogateDerivative(m: tf.Tensor, surrogate: Surrogate): tf.Tensor {
  return tf.tidy(() => {
    switch (surrogate) {
      case 'linear':
        return tf.onesLike(m);
      case 'relu':
        return tf.cast(tf.greater(m, 0), 'float32');
      case 'leaky-relu':
        // Full slope on the pruned side so closed gates recover quickly; 0.1 on the open side.
        return tf.where(tf.lessEqual(m, 0), tf.onesLike(m), tf.fill(m.shape, 0.1));
      case 'softplus':
        return tf.softplus(m);
    }
  });
}

/**
 * The neuron-granularity factor |m|^(-3/2) (0 where |m| < 1e-15): a neuron gate aggregates the gradient of
 * a whole unit, so its steps are damped more the further it is from the threshold.
 */
function neuronScale(m: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const magnitude = tf.abs(m);
    const safe = tf.maximum(magnitude, ZERO_THRESHOLD);
    const scale = tf.pow(safe, -1.5);
    return tf.where(tf.less(magnitude, ZERO_THRESHOLD), tf.zerosLike(m), scale);
  });
}

/** d h / d m as the backward pass uses it for a gate of the given granularity. */
export function gateDerivative(m: tf.Tensor, surrogate: Surrogate, granularity: Granularity): tf.Tensor {
  return tf.tidy(() => {
    const base = surrogateDerivative(m, surrogate);
    return granularity === 'neuron' ? tf.mul(base, neuronScale(m)) : base;
  });
}

/**
 * h(m) with the surrogate backward: forward 1[m ≥ 0], backward dy · surrogate(m) (· |m|^(-3/2) for neuron
 * gates). Used for neuron gates on a unit's output and for the sparsity regularisers R⁺ and R⁻.
 */
export function gate(m: tf.Tensor, surrogate: Surrogate, granularity: Granularity): tf.Tensor {
  const fn = customGradient((input: tf.Tensor, save: tf.GradSaveFunc) => {
    save([input]);
    return {
      value: stepGate(input),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => tf.mul(dy as tf.Tensor, gateDerivative(saved[0]!, surrogate, granularity)),
    };
  });
  return fn(m);
}

/**
 * W ⊙ h(M) for weight-granularity gates. Backward:
 *   ∂L/∂W = ∂L/∂(W⊙h) · h(M)                       (a closed gate's weight receives no gradient)
 *   ∂L/∂M = ∂L/∂(W⊙h) · s(W) · surrogate(M)         s = sgn (paper) or identity (chain rule)
 * plus, with `penalty`, the gradient of weight · (R⁺ + n_ratio · R⁻) of this M (sparsityGradient).
 */
export function gatedWeight(w: tf.Tensor, m: tf.Tensor, surrogate: Surrogate, rule: AuxGradientRule, penalty: GatePenalty = NO_PENALTY): tf.Tensor {
  if (hasGateKernels()) {
    const attrs: GateAttrs = { surrogate, auxGradient: rule, penaltyWeight: penalty.weight, nRatio: penalty.nRatio };
    return tf.engine().runKernel(AUTOPRUNE_GATE, { weights: w, aux: m }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  }
  return composedGatedWeight(w, m, surrogate, rule, penalty);
}

/**
 * How a frozen gate passes W's gradient: `masked`, dy · 1[M ≥ 0]; `passed`, dy itself, for a W step whose
 * update masks gradient and step by the same gates (the optimizers' UpdateOptions.gates): the same update,
 * with a pass over W fewer.
 */
export type FrozenGateGradient = 'masked' | 'passed';

/**
 * W · 1[M ≥ 0] with M held fixed (a W step's gates, an evaluation's): the gate kernel's one pass where the
 * backend has it, else the product.
 */
export function frozenGatedWeight(w: tf.Tensor, m: tf.Tensor, gradient: FrozenGateGradient = 'masked'): tf.Tensor {
  const forward = (weights: tf.Tensor) => (hasGateKernels() ? gatedWeight(weights, m, 'linear', 'sign') : tf.mul(weights, stepGate(m)));
  if (gradient === 'masked') return forward(w);
  // A clone shares dy's data: no pass over it.
  const passed = customGradient((weights: tf.Tensor, _save: tf.GradSaveFunc) => ({ value: forward(weights), gradFunc: (dy) => tf.clone(dy as tf.Tensor) }));
  return passed(w);
}

/** gatedWeight from core ops, for backends without the gate kernels; the reference the kernels are tested against. */
export function composedGatedWeight(w: tf.Tensor, m: tf.Tensor, surrogate: Surrogate, rule: AuxGradientRule, penalty: GatePenalty = NO_PENALTY): tf.Tensor {
  const fn = customGradient((weight: tf.Tensor, aux: tf.Tensor, save: tf.GradSaveFunc) => {
    // The forward's 0/1 gates are saved for dW: a comparison pass fewer (a slow kernel on wasm).
    const gates = stepGate(aux);
    save([weight, aux, gates]);
    return {
      value: tf.mul(weight, gates),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [savedWeight, savedAux, savedGates] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const upstream = dy as tf.Tensor;
        const weightScale =
          rule === 'sign' ? tf.where(tf.less(tf.abs(savedWeight), ZERO_THRESHOLD), tf.zerosLike(savedWeight), tf.sign(savedWeight)) : savedWeight;
        const open = surrogateDerivative(savedAux, surrogate);
        const auxGradient = tf.mul(tf.mul(upstream, weightScale), open);
        return [
          tf.mul(upstream, savedGates),
          penalty.weight === 0 ? auxGradient : tf.add(auxGradient, sparsityGradient(savedAux, surrogate, 'weight', penalty.weight, penalty.nRatio, open)),
        ];
      },
    };
  });
  return fn(w, m);
}

/** tf.customGrad with the argument list typed as its callers use it (tfjs types inputs and save together). */
function customGradient<Args extends tf.Tensor[]>(
  f: (...args: [...Args, tf.GradSaveFunc]) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[] },
): (...args: Args) => tf.Tensor {
  return tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (...args: Args) => tf.Tensor;
}

/**
 * AutoPrune's sparsity regularisers of one layer's gates, weighted: weight · (R⁺ + n_ratio · R⁻), with
 * R⁺ = Σ h(M) the open gates and R⁻ = Σ h(−M) the closed ones (a gate at exactly 0 counts in both).
 */
export function sparsityPenalty(m: tf.Tensor, weight: number, nRatio: number): tf.Scalar {
  return tf.tidy(() => {
    const open = tf.sum(stepGate(m));
    const closed = tf.sum(stepGate(tf.neg(m)));
    return tf.mul(tf.add(open, tf.mul(closed, nRatio)), weight) as tf.Scalar;
  });
}

/**
 * ∂/∂M of sparsityPenalty through the gate's surrogate backward (the paper's rule: R⁺ pushes every gate
 * down, R⁻ lets closed ones reopen): weight · (h'(M) − n_ratio · h'(−M)), h' as gateDerivative.
 * `open`, h'(M), where the caller has it already (a transcendental pass fewer: softplus is slow on wasm).
 */
export function sparsityGradient(
  m: tf.Tensor,
  surrogate: Surrogate,
  granularity: Granularity,
  weight: number,
  nRatio: number,
  open: tf.Tensor = gateDerivative(m, surrogate, granularity),
): tf.Tensor {
  return tf.tidy(() => {
    const closed = gateDerivative(tf.neg(m), surrogate, granularity);
    return tf.mul(tf.sub(open, tf.mul(closed, nRatio)), weight);
  });
}
