/**
 * The integration tests' short LeNet-300-100 run on real MNIST, as a config object: 10 dense steps, then
 * `pruneSteps` of pruning, SGD for W and M (runs at one world size agree to the last bit), no dropout (replicas
 * see the same network), logging every 5 steps, no evaluation and a checkpoint every 5 steps keeping 3.
 * `overrides` replaces whole top-level keys.
 */
export function smallMnistRun<Overrides extends Record<string, unknown>>(seed: number, pruneSteps: number, overrides: Overrides = {} as Overrides) {
  const sgd = { type: 'sgd', lr: 0.05 };
  const run = {
    seed,
    backend: 'wasm',
    model: { name: 'lenet300', dropout: 0 },
    data: { dataset: 'mnist', trainSubset: 1000, testSubset: 200 },
    batchSize: 60,
    prune: { auxGradient: 'magnitude', mu: { conv: 0.2, fc: 0.4 } },
    phases: [
      { phase: 'dense', steps: 10, weights: sgd },
      { phase: 'prune', steps: pruneSteps, weights: sgd, aux: { type: 'sgd', lr: 1 } },
    ],
    evaluation: { every: 0, batchSize: 200 },
    logging: { every: 5 },
    checkpoint: { every: 5, keep: 3 },
  };
  return { ...run, ...overrides };
}
