import { status } from '@grpc/grpc-js';
import type { RefusalReason } from './failure.js';

/**
 * A call to the coordinator that did not succeed, as the worker sees it, whatever carried the call (gRPC,
 * or a direct call in the same process): the gRPC status code, and the coordinator's reason when it
 * refused the call. The worker decides what to do from `code` and `reason`, never from the message.
 */
export class CoordinatorCallError extends Error {
  constructor(
    readonly code: status,
    /** The coordinator's reason for a refusal; undefined when it did not answer (or failed inside). */
    readonly reason: RefusalReason | undefined,
    readonly method: string,
    address: string,
    details: string,
  ) {
    super(`coordinator ${address} refused ${method}: ${details} (${status[code]})`);
    this.name = 'CoordinatorCallError';
  }
}
