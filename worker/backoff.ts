/**
 * Delays between attempts to reach the coordinator: exponential backoff with full jitter (each delay drawn
 * uniformly below a ceiling that doubles per attempt, up to a cap), so that the workers of a cluster that
 * lost their coordinator together do not all knock again at the same instants.
 */

export interface BackoffPolicy {
  /** The ceiling of the first delay. */
  readonly baseMs: number;
  /** The largest ceiling. */
  readonly capMs: number;
}

/** 0.1 s, 0.2 s, 0.4 s ... up to 2 s between registration attempts. */
export const REGISTRATION_BACKOFF: BackoffPolicy = { baseMs: 100, capMs: 2000 };

/**
 * The delay before retry number `attempt` (0 for the first retry): `random()` × min(cap, base × 2^attempt).
 * `random` returns a number in [0, 1), as Math.random does.
 */
export function backoffDelay(attempt: number, random: () => number, policy: BackoffPolicy = REGISTRATION_BACKOFF): number {
  if (!Number.isInteger(attempt) || attempt < 0) throw new RangeError(`backoff attempt must be a whole number from 0, not ${attempt}`);
  if (!(policy.baseMs > 0 && policy.capMs >= policy.baseMs)) {
    throw new RangeError(`backoff needs 0 < baseMs <= capMs, not baseMs ${policy.baseMs}, capMs ${policy.capMs}`);
  }
  const draw = random();
  if (!(draw >= 0 && draw < 1)) throw new RangeError(`the random source must give a number in [0, 1), not ${draw}`);
  // 2 ** attempt overflows to Infinity for large attempts, which the cap absorbs.
  return draw * Math.min(policy.capMs, policy.baseMs * 2 ** attempt);
}
