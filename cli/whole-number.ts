import { describeValue, InputError } from '../shared/errors.js';

/** An option's text as a whole number within [min, max], or an InputError naming the option. */
export function wholeNumber(flag: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value) || value < min || value > max) {
    throw new InputError(flag, `must be a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}`, { found: describeValue(text) });
  }
  return value;
}
