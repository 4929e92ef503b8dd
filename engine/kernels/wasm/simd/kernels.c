/*
 * autoprune's fused kernels for the wasm backend, in wasm SIMD (128-bit, four float32 lanes). They run on
 * tfjs-backend-wasm's own memory (imported), on the pointers of its tensors, so they must never touch
 * memory of their own: no static data and no shadow stack (the module is linked with a zero-size stack,
 * so any use of it traps instead of writing into the backend's heap).
 *
 * The arithmetic is the composition's (engine/gates.ts, engine/optimizers.ts), operation by operation and
 * rounded to float32 at each (built with -ffp-contract=off: no fused multiply-add), so that the gate's
 * forward and the optimizer updates are bit-identical to it; only softplus (exp and log1p by polynomials
 * here, by the C library in tfjs-backend-wasm, and softplus(−m) from softplus(m)) differs in the last bits.
 */
#include <wasm_simd128.h>

typedef v128_t f4;

static inline f4 splat(float x) { return wasm_f32x4_splat(x); }
static inline f4 ones_where(f4 condition) { return wasm_v128_and(condition, splat(1.0f)); }

/* Loads and stores of the first `count` lanes (1 to 4), lane by lane for a tail: no memory but the tensors'. */
static inline f4 load(const float *p, int count) {
  if (count >= 4) return wasm_v128_load(p);
  return wasm_f32x4_make(p[0], count > 1 ? p[1] : 0.0f, count > 2 ? p[2] : 0.0f, 0.0f);
}
static inline void store(float *p, f4 v, int count) {
  if (count >= 4) {
    wasm_v128_store(p, v);
    return;
  }
  p[0] = wasm_f32x4_extract_lane(v, 0);
  if (count > 1) p[1] = wasm_f32x4_extract_lane(v, 1);
  if (count > 2) p[2] = wasm_f32x4_extract_lane(v, 2);
}

/* 2^k for integer lanes k in [-126, 127], from the exponent bits. */
static inline f4 pow2(v128_t k) { return wasm_i32x4_shl(wasm_i32x4_add(k, wasm_i32x4_splat(127)), 23); }

/* e^x (Cephes expf: x = n·ln2 + r, a degree-7 polynomial in r, then 2^n in two factors so that results down to the subnormals come out). */
static f4 exp4(f4 x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, splat(-103.972f)), splat(88.3762626647949f));
  f4 n = wasm_f32x4_floor(wasm_f32x4_add(wasm_f32x4_mul(x, splat(1.44269504088896341f)), splat(0.5f)));
  f4 r = wasm_f32x4_sub(wasm_f32x4_sub(x, wasm_f32x4_mul(n, splat(0.693359375f))), wasm_f32x4_mul(n, splat(-2.12194440e-4f)));
  f4 p = splat(1.9875691500e-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), splat(1.3981999507e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), splat(8.3334519073e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), splat(4.1665795894e-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), splat(1.6666665459e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), splat(5.0000001201e-1f));
  p = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(p, r), r), r), splat(1.0f));
  v128_t k = wasm_i32x4_trunc_sat_f32x4(n);
  v128_t half = wasm_i32x4_shr(k, 1);
  return wasm_f32x4_mul(wasm_f32x4_mul(p, pow2(half)), pow2(wasm_i32x4_sub(k, half)));
}

/*
 * log(1 + t) for t in [0, 1]: t·P(t), P the degree-8 Chebyshev fit of log1p(t)/t on [0, 1] (float32 Horner:
 * within 2e-7 relative of the exact value over the interval, small t included; no division).
 */
static f4 log1p_unit4(f4 t) {
  /* Written out rather than a table: a table would be static data in the backend's memory. */
  f4 p = splat(0.005253457929939032f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(-0.02958850748836994f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(0.07836166769266129f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(-0.13674770295619965f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(0.19111430644989014f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(-0.24844369292259216f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(0.33319270610809326f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(-0.49999502301216125f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), splat(1.0f));
  return wasm_f32x4_mul(p, t);
}

/*
 * tfjs's softplus: e^x below log(2^-23) + 2, x above its negation, log(1 + e^x) between, computed as
 * max(x, 0) + log(1 + e^−|x|) so that one exponential in (0, 1] serves every branch.
 */
static f4 softplus4(f4 x) {
  const float threshold = -13.942385152878742f;
  f4 t = exp4(wasm_f32x4_neg(wasm_f32x4_abs(x)));
  f4 middle = wasm_f32x4_add(wasm_f32x4_max(x, splat(0.0f)), log1p_unit4(t));
  f4 value = wasm_v128_bitselect(t, middle, wasm_f32x4_lt(x, splat(threshold)));
  return wasm_v128_bitselect(x, value, wasm_f32x4_gt(x, splat(-threshold)));
}

/* Surrogates of h'(m), numbered as engine/kernels/wasm/simd-module.ts passes them. */
enum { LINEAR = 0, RELU = 1, LEAKY_RELU = 2, SOFTPLUS = 3 };

static inline f4 surrogate4(f4 m, int surrogate) {
  switch (surrogate) {
    case RELU:
      return ones_where(wasm_f32x4_gt(m, splat(0.0f)));
    case LEAKY_RELU:
      return wasm_v128_bitselect(splat(1.0f), splat(0.1f), wasm_f32x4_le(m, splat(0.0f)));
    case SOFTPLUS:
      return softplus4(m);
    default:
      return splat(1.0f);
  }
}

/* sgn(x) with sgn(0) = 0. */
static inline f4 sign4(f4 x) {
  return wasm_f32x4_sub(ones_where(wasm_f32x4_gt(x, splat(0.0f))), ones_where(wasm_f32x4_lt(x, splat(0.0f))));
}

/* AutoPruneGate: out = W · 1[M ≥ 0] (a product, as the composition's: a closed negative weight gives -0). */
__attribute__((export_name("gate_forward"))) void gate_forward(const float *w, const float *m, float *out, int n) {
  for (int i = 0; i < n; i += 4) {
    int count = n - i;
    store(out + i, wasm_f32x4_mul(load(w + i, count), ones_where(wasm_f32x4_ge(load(m + i, count), splat(0.0f)))), count);
  }
}

/*
 * AutoPruneGateGrad: dW = dy · 1[M ≥ 0]; dM = (dy · s(W)) · h'(M), plus (h'(M) − h'(−M) · nRatio) · penalty
 * where penalty is not 0; s(W) = sgn(W) (0 where |W| < 1e-15) for rule 0, W for rule 1.
 */
/* The loop of gate_backward for one surrogate, inlined with it as a constant so that each loop is specialised. */
static inline __attribute__((always_inline)) void gate_backward_for(const float *dy, const float *w, const float *m, float *dw, float *dm, int n,
                                                                     const int surrogate, int magnitude_rule, float penalty, float n_ratio) {
  for (int i = 0; i < n; i += 4) {
    int count = n - i;
    f4 g = load(dy + i, count);
    f4 wv = load(w + i, count);
    f4 mv = load(m + i, count);
    store(dw + i, wasm_f32x4_mul(g, ones_where(wasm_f32x4_ge(mv, splat(0.0f)))), count);
    f4 scale = magnitude_rule ? wv : wasm_v128_andnot(sign4(wv), wasm_f32x4_lt(wasm_f32x4_abs(wv), splat(1e-15f)));
    f4 open = surrogate4(mv, surrogate);
    f4 grad = wasm_f32x4_mul(wasm_f32x4_mul(g, scale), open);
    if (penalty != 0.0f) {
      /* softplus(−m) = softplus(m) − m: one transcendental pass instead of two; where the difference
         cancels (m large) the term is below an ulp of the open one it is subtracted from. */
      f4 closed = surrogate == SOFTPLUS ? wasm_f32x4_sub(open, mv) : surrogate4(wasm_f32x4_neg(mv), surrogate);
      grad = wasm_f32x4_add(grad, wasm_f32x4_mul(wasm_f32x4_sub(open, wasm_f32x4_mul(closed, splat(n_ratio))), splat(penalty)));
    }
    store(dm + i, grad, count);
  }
}

__attribute__((export_name("gate_backward"))) void gate_backward(const float *dy, const float *w, const float *m, float *dw, float *dm, int n,
                                                                  int surrogate, int magnitude_rule, float penalty, float n_ratio) {
  switch (surrogate) {
    case RELU:
      gate_backward_for(dy, w, m, dw, dm, n, RELU, magnitude_rule, penalty, n_ratio);
      break;
    case LEAKY_RELU:
      gate_backward_for(dy, w, m, dw, dm, n, LEAKY_RELU, magnitude_rule, penalty, n_ratio);
      break;
    case SOFTPLUS:
      gate_backward_for(dy, w, m, dw, dm, n, SOFTPLUS, magnitude_rule, penalty, n_ratio);
      break;
    default:
      gate_backward_for(dy, w, m, dw, dm, n, LINEAR, magnitude_rule, penalty, n_ratio);
  }
}

/* The gradient an update uses: g · 1[gate ≥ 0] where gated, plus sgn(p)·λ1 + p·λ2 where decayed. */
static inline f4 update_gradient(f4 g, f4 p, f4 open, int decayed, float l1, float l2) {
  g = wasm_f32x4_mul(g, open);
  if (decayed) g = wasm_f32x4_add(g, wasm_f32x4_add(wasm_f32x4_mul(sign4(p), splat(l1)), wasm_f32x4_mul(p, splat(l2))));
  return g;
}

static inline f4 gate_at(const float *gate, int i, int count) {
  return gate ? ones_where(wasm_f32x4_ge(load(gate + i, count), splat(0.0f))) : splat(1.0f);
}

/*
 * One parameter's Adam update (AutoPruneFusedOptimizerStep's arithmetic): m' = m·β1 + g·(1 − β1),
 * v' = v·β2 + g²·(1 − β2), Δ = (m'·stepSize) / (√v' + ε̂), p' = p − Δ·1[gate ≥ 0]. `gate` may be null.
 */
__attribute__((export_name("adam_update"))) void adam_update(const float *p, const float *g, const float *m, const float *v, const float *gate, float *p_out,
                                                              float *m_out, float *v_out, int n, float beta1, float one_minus_beta1, float beta2,
                                                              float one_minus_beta2, float step_size, float epsilon_hat, int decayed, float l1, float l2) {
  for (int i = 0; i < n; i += 4) {
    int count = n - i;
    f4 pv = load(p + i, count);
    f4 open = gate_at(gate, i, count);
    f4 gv = update_gradient(load(g + i, count), pv, open, decayed, l1, l2);
    f4 mv = wasm_f32x4_add(wasm_f32x4_mul(load(m + i, count), splat(beta1)), wasm_f32x4_mul(gv, splat(one_minus_beta1)));
    f4 vv = wasm_f32x4_add(wasm_f32x4_mul(load(v + i, count), splat(beta2)), wasm_f32x4_mul(wasm_f32x4_mul(gv, gv), splat(one_minus_beta2)));
    f4 delta = wasm_f32x4_div(wasm_f32x4_mul(mv, splat(step_size)), wasm_f32x4_add(wasm_f32x4_sqrt(vv), splat(epsilon_hat)));
    store(m_out + i, mv, count);
    store(v_out + i, vv, count);
    store(p_out + i, wasm_f32x4_sub(pv, wasm_f32x4_mul(delta, open)), count);
  }
}

/*
 * One parameter's SGD update: without momentum Δ = g·lr; with it, buffer' = buffer·μ + g and Δ = lr·buffer'
 * (heavy ball) or lr·(g + buffer'·μ) (Nesterov); p' = p − Δ·1[gate ≥ 0]. `buffer` and `buffer_out` unused without momentum.
 */
__attribute__((export_name("sgd_update"))) void sgd_update(const float *p, const float *g, const float *buffer, const float *gate, float *p_out, float *buffer_out,
                                                            int n, float momentum, int nesterov, float learning_rate, int decayed, float l1, float l2) {
  for (int i = 0; i < n; i += 4) {
    int count = n - i;
    f4 pv = load(p + i, count);
    f4 open = gate_at(gate, i, count);
    f4 gv = update_gradient(load(g + i, count), pv, open, decayed, l1, l2);
    f4 direction = gv;
    if (momentum != 0.0f) {
      f4 next = wasm_f32x4_add(wasm_f32x4_mul(load(buffer + i, count), splat(momentum)), gv);
      store(buffer_out + i, next, count);
      direction = nesterov ? wasm_f32x4_add(gv, wasm_f32x4_mul(next, splat(momentum))) : next;
    }
    store(p_out + i, wasm_f32x4_sub(pv, wasm_f32x4_mul(wasm_f32x4_mul(direction, splat(learning_rate)), open)), count);
  }
}
