import { status } from '@grpc/grpc-js';
import { RpcFailure } from '../shared/rpc/failure.js';
import { CREDENTIAL_METADATA_KEY } from '../shared/rpc/security.js';
import type { Position } from './decisions.js';

/**
 * The refusals the coordinator answers calls with, each with its gRPC status and the machine-readable
 * reason workers act on (shared/rpc/failure.ts). Registration has its own, in admission.ts.
 */
export const refusals = {
  /** The same for every caller without a valid credential, whatever id it names: it learns nothing of which ids exist. */
  unauthenticated: () =>
    new RpcFailure(
      status.UNAUTHENTICATED,
      'unauthenticated',
      `the call needs the credential of a current registration in the ${CREDENTIAL_METADATA_KEY} metadata entry: register first`,
    ),
  unknownWorker: (workerId: string, runId: string) =>
    new RpcFailure(status.NOT_FOUND, 'unknown-worker', `worker ${workerId} is not registered in run ${runId}`),
  staleGeneration: (claimed: number, current: number) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'stale-generation', `stale generation ${claimed}: the run is at generation ${current}`),
  generationAhead: (workerId: string, claimed: number, current: number) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'stale-generation', `worker ${workerId} claims generation ${claimed}; the run is at generation ${current}`),
  notAMember: (workerId: string, current: number) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'not-a-member', `worker ${workerId} is not in generation ${current}`),
  rendezvousAborted: (error: unknown) => new RpcFailure(status.ABORTED, 'rendezvous-aborted', (error as Error).message),
  /** Sent to workers waiting for the run's end when it re-forms instead. */
  reforming: (current: number) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'stale-generation', `generation ${current} is re-forming after a failure: rejoin the rendezvous`),
  /** Every call but a heartbeat and a state offer, while the coordinator stops: UNAVAILABLE, as a coordinator that is gone. */
  stopping: (reason: string) =>
    new RpcFailure(status.UNAVAILABLE, 'coordinator-stopping', `the coordinator is stopping (${reason}): offer the state, then register again`),
  taskOutOfOrder: (workerId: string, finishedTask: number, onTask: number) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'invalid-argument', `worker ${workerId} reports task ${finishedTask} finished, but its last task was ${onTask}`),
  noStartState: (phaseIndex: number) => new RpcFailure(status.NOT_FOUND, 'not-found', `phase ${phaseIndex} does not start from a checkpoint`),
  notRankZero: (workerId: string, rank: number, generation: number) =>
    new RpcFailure(
      status.PERMISSION_DENIED,
      'not-permitted',
      `worker ${workerId} is rank ${rank} of generation ${generation}: only rank 0 sends the run's state outside a recovery`,
    ),
  uploadNotAsked: (workerId: string, position: Position, asked: readonly Position[]) =>
    new RpcFailure(
      status.PERMISSION_DENIED,
      'not-permitted',
      `worker ${workerId} sends the state at ${at(position)}, but no task asked for it there; expected ${asked.length ? asked.map(at).join(' or ') : 'none: no state upload is outstanding'}`,
    ),
  uploadBeyondReached: (workerId: string, position: Position, reached: Position, generation: number) =>
    new RpcFailure(
      status.PERMISSION_DENIED,
      'not-permitted',
      `worker ${workerId} offers the state at ${at(position)}, beyond ${at(reached)}, the furthest generation ${generation} reached`,
    ),
  uploadOutsideRun: (runId: string, runStatus: string) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'invalid-argument', `run ${runId} is ${runStatus}: it takes no state; expected a run under way`),
  uploadMismatch: (workerId: string, announced: Position, contents: Position) =>
    new RpcFailure(
      status.FAILED_PRECONDITION,
      'invalid-argument',
      `worker ${workerId} announced the state at ${at(announced)}, but the state it sent is at ${at(contents)}`,
    ),
  unreadableState: (error: unknown) => new RpcFailure(status.INVALID_ARGUMENT, 'invalid-argument', (error as Error).message),
  stateOfOtherConfig: (workerId: string) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'config-mismatch', `state uploaded by worker ${workerId} belongs to another config`),
} as const;

/** A point of the run, for messages. */
function at(position: Position): string {
  return `phase ${position.phaseIndex} step ${position.step}`;
}
