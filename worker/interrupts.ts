import { status } from '@grpc/grpc-js';
import { CollectiveError } from '../collective/index.js';
import { CoordinatorCallError } from '../shared/rpc/call-error.js';

/**
 * What may break off a worker's generation without ending the worker, decided from typed errors and the
 * coordinator's refusal reasons (never from message text), and what the worker does about each. Pure:
 * the agent (agent.ts) acts on these decisions.
 */

export type Interrupt =
  /** The coordinator moved on to a newer generation: the run re-forms, and this worker goes back to the rendezvous. */
  | { readonly kind: 'GenerationEnded'; readonly reason: string }
  /** The coordinator is gone (or restarted and no longer knows this worker or its credential): register again. */
  | { readonly kind: 'CoordinatorLost'; readonly reason: string }
  /** A peer stopped answering in a collective: report it, offer the committed state, rejoin. */
  | { readonly kind: 'CollectiveFailed'; readonly reason: string }
  /** The coordinator stops to be restarted (SIGTERM): offer the committed state, then register again until it is back. */
  | { readonly kind: 'CoordinatorStopping'; readonly reason: string }
  /** This worker was told to stop (SIGTERM, SIGINT): offer the committed state, then leave. */
  | { readonly kind: 'Stopped'; readonly reason: string };

/** What a heartbeat reply tells a worker beyond "go on". */
export type HeartbeatNews = { readonly kind: 'RunFailed'; readonly reason: string } | Extract<Interrupt, { kind: 'GenerationEnded' | 'CoordinatorStopping' }>;

/** Thrown at a step's end, or into a long wait, once the worker is told to stop: the agent turns it into a Stopped interrupt. */
export class StopRequested extends Error {
  constructor(readonly reason: string) {
    super(`told to stop (${reason})`);
    this.name = 'StopRequested';
  }
}

/** Reads a heartbeat reply received while in `generation` (0: not in one yet). */
export function readHeartbeat(
  reply: { readonly generation: number; readonly state: string; readonly reason: string },
  generation: number,
): HeartbeatNews | undefined {
  if (reply.state === 'RUN_STATE_FAILED') return { kind: 'RunFailed', reason: reply.reason };
  if (reply.state === 'RUN_STATE_STOPPING') return { kind: 'CoordinatorStopping', reason: 'the coordinator is stopping' };
  if (generation > 0 && reply.generation > generation) return { kind: 'GenerationEnded', reason: `the run moves on to generation ${reply.generation}` };
  return undefined;
}

/**
 * The interrupt that `error` means for a worker waiting at the rendezvous or training, given the news its
 * heartbeats brought; undefined when the error ends the worker.
 */
export function interruptOf(error: unknown, during: 'rendezvous' | 'training', news: HeartbeatNews | undefined): Interrupt | undefined {
  const reason = error instanceof Error ? error.message : String(error);
  if (error instanceof StopRequested) return { kind: 'Stopped', reason: error.reason };
  if (coordinatorStopping(error)) return { kind: 'CoordinatorStopping', reason };
  if (error instanceof CoordinatorCallError && coordinatorGone(error)) return { kind: 'CoordinatorLost', reason };
  // A failed run, or a refusal at the rendezvous, leaves nothing to rejoin.
  if (news?.kind === 'RunFailed' || during === 'rendezvous') return undefined;
  if (news?.kind === 'GenerationEnded' || news?.kind === 'CoordinatorStopping') return news;
  if (error instanceof CollectiveError) return { kind: 'CollectiveFailed', reason };
  if (error instanceof CoordinatorCallError && (error.reason === 'stale-generation' || error.reason === 'not-a-member'))
    return { kind: 'GenerationEnded', reason };
  return undefined;
}

/**
 * The coordinator did not answer at all (it died or restarts), or answered that it does not know this
 * worker or its credential (it restarted, or dropped this worker's registration). A Register refused as
 * unauthenticated is no such thing: the join token is wrong, and registering again will not help.
 */
function coordinatorGone(error: CoordinatorCallError): boolean {
  const forgotten = error.reason === 'unknown-worker' || (error.reason === 'unauthenticated' && error.method !== 'Register');
  return coordinatorUnreachable(error) || forgotten;
}

/** No coordinator answered the call: worth trying again, as opposed to a refusal. */
export function coordinatorUnreachable(error: unknown): boolean {
  return error instanceof CoordinatorCallError && error.code === status.UNAVAILABLE && error.reason === undefined;
}

/** The coordinator refused the call because it is stopping (to be restarted): worth registering again, as after it is gone. */
export function coordinatorStopping(error: unknown): boolean {
  return error instanceof CoordinatorCallError && error.reason === 'coordinator-stopping';
}

/** What the worker does about an interrupt. */
export interface InterruptResponse {
  /** The state the agent goes to: rejoining the rendezvous, registering again, or stopped (it leaves). */
  readonly next: 'rejoining' | 'registering' | 'stopped';
  /** Tell the coordinator that this worker leaves the generation and will rejoin, and where it stood. */
  readonly reportLeaving: boolean;
  /** Offer the state of the last completed step, so that the run redoes as little as possible. */
  readonly offerCommittedState: boolean;
}

export function responseTo(interrupt: Interrupt): InterruptResponse {
  switch (interrupt.kind) {
    case 'CoordinatorLost':
      // A coordinator that comes back resumes from its checkpoint; it has nothing to hear before registration.
      return { next: 'registering', reportLeaving: false, offerCommittedState: false };
    case 'CollectiveFailed':
    case 'GenerationEnded':
      // Either way the run re-forms from the furthest state its survivors hold.
      return { next: 'rejoining', reportLeaving: true, offerCommittedState: true };
    // The coordinator writes the furthest offer as its final checkpoint, and the worker waits for it to be back.
    case 'CoordinatorStopping':
      return { next: 'registering', reportLeaving: true, offerCommittedState: true };
    // The run goes on from this worker's state without it (or, if the coordinator stops too, resumes from it).
    case 'Stopped':
      return { next: 'stopped', reportLeaving: true, offerCommittedState: true };
  }
}
