import { randomInt } from 'node:crypto';
import seedrandom from 'seedrandom';

/**
 * Random choices for tests that pick at random (which worker to kill, and when), replayable: the seed is
 * AUTOPRUNE_TEST_SEED when set, else a fresh one, and it is printed in the test output either way.
 */

export interface TestRandom {
  readonly seed: number;
  /** An integer in [0, n). */
  below(n: number): number;
}

export function testRandom(): TestRandom {
  const seed = seedFromEnvironment() ?? randomInt(2 ** 31);
  console.log(`      random choices from seed ${seed} (replay with AUTOPRUNE_TEST_SEED=${seed})`);
  const next = seedrandom.alea(String(seed));
  return { seed, below: (n) => Math.floor(next() * n) };
}

function seedFromEnvironment(): number | undefined {
  const text = process.env.AUTOPRUNE_TEST_SEED;
  if (text === undefined || text === '') return undefined;
  const seed = Number(text);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`AUTOPRUNE_TEST_SEED must be a non-negative integer; found "${text}"`);
  return seed;
}
