/**
 * An error caused by what the user gave us (a config key, a data file, a checkpoint, a message),
 * as opposed to a bug. The CLI prints these as one clear message, never with a stack trace.
 *
 * `where` names the file, config key or peer at fault; `expected` and `found` say what was wrong.
 */
export class InputError extends Error {
  readonly where: string;
  readonly expected: string | undefined;
  readonly found: string | undefined;

  constructor(where: string, problem: string, details: { expected?: string; found?: string } = {}) {
    const parts = [`${where}: ${problem}`];
    if (details.expected !== undefined) parts.push(`expected ${details.expected}`);
    if (details.found !== undefined) parts.push(`found ${details.found}`);
    super(parts.join('; '));
    this.name = 'InputError';
    this.where = where;
    this.expected = details.expected;
    this.found = details.found;
  }
}

/** Describes a value briefly for an error message (long values are cut). */
export function describeValue(value: unknown): string {
  // JSON has no Infinity or NaN (it writes null), so numbers are written as JavaScript writes them.
  const text = typeof value === 'string' ? JSON.stringify(value) : typeof value === 'number' ? String(value) : String(JSON.stringify(value) ?? value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
