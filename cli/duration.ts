import { InputError } from '../shared/errors.js';

/** Units a duration setting may carry, in milliseconds. */
const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration setting in milliseconds: `600` (a bare number is seconds, as these flags always took),
 * `600s`, `10m`, `1h`, `1500ms`, `1.5m`. Anything else, or a duration that is not positive, is an
 * InputError naming `source` (the flag or variable it came from).
 */
export function parseDuration(text: string, source: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  const ms = match ? Number(match[1]) * UNITS[match[2] ?? 's']! : Number.NaN;
  if (!(ms > 0) || !Number.isFinite(ms))
    throw new InputError(source, 'is not a positive duration', { expected: 'e.g. 600, 600s, 10m, 1h or 1500ms', found: JSON.stringify(text) });
  return Math.round(ms);
}
