import assert from 'node:assert/strict';
import fc from 'fast-check';
import { backoffDelay, REGISTRATION_BACKOFF } from '../../worker/backoff.js';

/** A random source that plays back `values` in turn. */
function playback(...values: number[]): () => number {
  let next = 0;
  return () => values[next++ % values.length]!;
}

describe('registration backoff', () => {
  it('draws each delay below a ceiling that doubles per attempt from 100 ms up to 2 s', () => {
    const almostOne = 1 - 2 ** -53;
    const ceilings = Array.from({ length: 8 }, (_, attempt) => backoffDelay(attempt, () => almostOne));
    assert.deepEqual(
      ceilings.map((d) => Math.round(d)),
      [100, 200, 400, 800, 1600, 2000, 2000, 2000],
    );
  });

  it('scales the ceiling by the random draw (full jitter)', () => {
    const random = playback(0, 0.5, 0.25);
    assert.deepEqual(
      [0, 1, 2].map((attempt) => backoffDelay(attempt, random)),
      [0, 100, 100],
    );
    assert.equal(
      backoffDelay(3, () => 0.5, { baseMs: 10, capMs: 1000 }),
      40,
    );
  });

  it('stays within [0, cap) for any attempt and draw, however many attempts', () => {
    fc.assert(
      fc.property(fc.nat({ max: 5000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, draw) => {
        const delay = backoffDelay(attempt, () => draw);
        return delay >= 0 && delay < REGISTRATION_BACKOFF.capMs && delay <= REGISTRATION_BACKOFF.baseMs * 2 ** attempt;
      }),
    );
  });

  it('refuses a random source outside [0, 1), a negative or fractional attempt and an inverted policy, saying which', () => {
    assert.throws(() => backoffDelay(0, () => 1), /random source must give a number in \[0, 1\), not 1/);
    assert.throws(() => backoffDelay(0, () => Number.NaN), /not NaN/);
    assert.throws(() => backoffDelay(-1, Math.random), /attempt must be a whole number from 0, not -1/);
    assert.throws(() => backoffDelay(1.5, Math.random), /not 1\.5/);
    assert.throws(() => backoffDelay(0, Math.random, { baseMs: 500, capMs: 100 }), /baseMs 500, capMs 100/);
  });
});
