import seedrandom from 'seedrandom';

/**
 * Deterministic randomness derived from the run seed. Every consumer names what it draws for
 * (a parameter, a data half, an epoch), so results do not depend on the order things are created in,
 * and every process of a distributed run derives the same values without exchanging them.
 */

/** A 31-bit seed for `parts` under `seed` (FNV-1a over the text). */
export function deriveSeed(seed: number, ...parts: Array<string | number>): number {
  let hash = 0x811c9dc5;
  const text = [seed, ...parts].join('\u0000');
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash & 0x7fffffff;
}

/** A uniform [0, 1) generator seeded from `parts` under `seed`. */
export function seededUniform(seed: number, ...parts: Array<string | number>): () => number {
  return seedrandom.alea(String(deriveSeed(seed, ...parts)));
}

/** Fisher-Yates shuffle of a copy of `values` with the given generator. */
export function shuffled(values: ArrayLike<number>, uniform: () => number): Uint32Array {
  const out = Uint32Array.from(values);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    const tmp = out[i]!;
    out[i] = out[j]!;
    out[j] = tmp;
  }
  return out;
}
