import { checkRunId } from './run-id.js';
import type { RunEventName } from './types.js';

/**
 * NATS subjects of run events: `autoprune.<runId>.<event>`. Event names hold dots themselves
 * (`autoprune.r1.run.started`), so a run's events are everything under `autoprune.<runId>.>`.
 */

const PREFIX = 'autoprune';

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
