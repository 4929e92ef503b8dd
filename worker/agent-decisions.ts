import { CoordinatorCallError } from '../shared/rpc/call-error.js';

/**
 * Decisions of the worker agent beyond its interrupts (interrupts.ts), pure and decided from refusal
 * reasons, never from message text: when a refused rendezvous calls for asking the coordinator whether it
 * still knows this worker, and when a refused re-registration means the run goes on without it.
 */

/**
 * The coordinator calls off a waiting rendezvous when it drops the worker for silence (or when it stops):
 * only a heartbeat tells which, so the agent asks before it gives up.
 */
export function asksWhetherStillKnown(error: unknown): boolean {
  return error instanceof CoordinatorCallError && error.reason === 'rendezvous-aborted';
}

/**
 * A worker that was in the run and is refused when it registers again, because its place was taken (the
 * run is full) or its generation is past: the run goes on without it. Not a failure of the run, and not
 * of the worker; a first registration refused so is an ordinary refusal.
 */
export function fencedOutBy(error: unknown, registeredBefore: boolean): error is CoordinatorCallError {
  return registeredBefore && error instanceof CoordinatorCallError && (error.reason === 'run-full' || error.reason === 'stale-generation');
}

/** What a fenced-out worker says as it exits. */
export function fencedOutMessage(runId: string, why: string): string {
  return `fenced out of run ${runId}: the run goes on without this worker (${why})`;
}
