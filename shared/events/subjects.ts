import { InputError, describeValue } from '../errors.js';
import type { RunEventName } from './types.js';

/**
 * NATS subjects of run events: `autoprune.<runId>.<event>`. Event names hold dots themselves
 * (`autoprune.r1.run.started`), so a run's events are everything under `autoprune.<runId>.>`.
 */

const PREFIX = 'autoprune';

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

export function eventSubject(runId: string, event: RunEventName): string {
  return `${PREFIX}.${checkRunId(runId)}.${event}`;
}

/** The wildcard subject that matches every event of one run. */
export function runEventsSubject(runId: string): string {
  return `${PREFIX}.${checkRunId(runId)}.>`;
}

/** The event name a subject of this run carries (not checked against the known events), or undefined. */
export function eventNameOfSubject(runId: string, subject: string): string | undefined {
  const prefix = `${PREFIX}.${runId}.`;
  return subject.startsWith(prefix) && subject.length > prefix.length ? subject.slice(prefix.length) : undefined;
}
