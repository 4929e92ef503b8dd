import { status } from '@grpc/grpc-js';
import { RpcFailure } from '../shared/rpc/failure.js';

/**
 * The refusals the coordinator answers calls with, each with its gRPC status and the machine-readable
 * reason workers act on (shared/rpc/failure.ts). Registration has its own, in admission.ts.
 */
export const refusals = {
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
  taskOutOfOrder: (workerId: string, finishedTask: number, onTask: number) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'invalid-argument', `worker ${workerId} reports task ${finishedTask} finished, but its last task was ${onTask}`),
  noStartState: (phaseIndex: number) => new RpcFailure(status.NOT_FOUND, 'not-found', `phase ${phaseIndex} does not start from a checkpoint`),
  notRankZero: (workerId: string) => new RpcFailure(status.PERMISSION_DENIED, 'not-permitted', `worker ${workerId} is not rank 0`),
  unreadableState: (error: unknown) => new RpcFailure(status.INVALID_ARGUMENT, 'invalid-argument', (error as Error).message),
  stateOfOtherConfig: (workerId: string) =>
    new RpcFailure(status.FAILED_PRECONDITION, 'config-mismatch', `state uploaded by worker ${workerId} belongs to another config`),
} as const;
