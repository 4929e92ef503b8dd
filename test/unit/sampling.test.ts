import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EpochSampler, splitTrainingSet } from '../../engine/sampling.js';
import { learningRateAt } from '../../engine/schedules.js';

describe('training split and sampling', () => {
  it('splits 1:1 into disjoint halves that cover the set', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5000 }), fc.integer({ min: 0, max: 1e6 }), (count, seed) => {
        const { weight, aux } = splitTrainingSet(seed, count);
        assert.equal(weight.length, Math.ceil(count / 2));
        assert.equal(aux.length, Math.floor(count / 2));
        const seen = new Uint8Array(count);
        for (const i of weight) seen[i]! += 1;
        for (const i of aux) seen[i]! += 1;
        assert.ok(
          seen.every((v) => v === 1),
          'every sample in exactly one half',
        );
      }),
      { numRuns: 50 },
    );
  });

  it('is stable under the seed and differs between seeds', () => {
    assert.deepEqual(splitTrainingSet(42, 1000), splitTrainingSet(42, 1000));
    assert.notDeepEqual(splitTrainingSet(42, 1000).weight, splitTrainingSet(43, 1000).weight);
  });

  it('hands out every member exactly once per epoch, batches crossing epoch ends', () => {
    const members = splitTrainingSet(3, 101).aux;
    const sampler = new EpochSampler(3, 'aux', members);
    const drawn: number[] = [];
    while (drawn.length < members.length * 3) drawn.push(...sampler.next(17));
    for (let epoch = 0; epoch < 3; epoch++) {
      const slice = drawn.slice(epoch * members.length, (epoch + 1) * members.length).sort((a, b) => a - b);
      assert.deepEqual(slice, Array.from(members));
    }
    assert.notDeepEqual(drawn.slice(0, 50), drawn.slice(members.length, members.length + 50), 'each epoch has its own order');
  });

  it('resumes from its cursor with the same samples', () => {
    const members = splitTrainingSet(5, 300).weight;
    const a = new EpochSampler(5, 'w', members);
    a.next(70);
    a.next(70);
    const resumed = new EpochSampler(5, 'w', members, a.cursor);
    assert.deepEqual(resumed.next(90), a.next(90));
  });
});

describe('learning-rate schedules', () => {
  it('constant, step and cosine are pure functions of the step', () => {
    assert.equal(learningRateAt({ type: 'constant', value: 0.1 }, 500, 1000), 0.1);
    const step = { type: 'step', value: 1, gamma: 0.1, every: 100 } as const;
    assert.equal(learningRateAt(step, 99, 1000), 1);
    assert.ok(Math.abs(learningRateAt(step, 250, 1000) - 0.01) < 1e-12);
    const cosine = { type: 'cosine', value: 1, min: 0, warmup: 10 } as const;
    assert.equal(learningRateAt(cosine, 0, 111), 0.1);
    assert.equal(learningRateAt(cosine, 10, 111), 1);
    assert.ok(Math.abs(learningRateAt(cosine, 60, 111) - 0.5) < 1e-12);
    assert.ok(Math.abs(learningRateAt(cosine, 110, 111)) < 1e-12);
  });
});
