import { describeValue, InputError } from '../errors.js';

/** A run id becomes one subject token, so it may hold no dots, spaces or wildcards. */
const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

export function isRunId(value: string): boolean {
  return RUN_ID_PATTERN.test(value);
}

/** Returns the run id, or throws an InputError naming `where` (an argument, a config key, a message). */
export function checkRunId(runId: string, where = 'run id'): string {
  if (isRunId(runId)) return runId;
  throw new InputError(where, 'is not a valid run id', {
    expected: '1 to 128 letters, digits, "-" or "_" (it becomes one NATS subject token)',
    found: describeValue(runId),
  });
}
