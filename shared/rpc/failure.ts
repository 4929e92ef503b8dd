import { status } from '@grpc/grpc-js';

/**
 * A refusal that a gRPC handler returns as a status with a message for the caller, e.g.
 * UNAUTHENTICATED for a wrong join token or FAILED_PRECONDITION for a stale generation.
 */
export class RpcFailure extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'RpcFailure';
  }
}

/** The status and message a handler sends for `error`: an RpcFailure as it is, anything else as INTERNAL. */
export function toServiceError(error: unknown): { code: status; details: string } {
  if (error instanceof RpcFailure) return { code: error.code, details: error.message };
  return { code: status.INTERNAL, details: error instanceof Error ? error.message : String(error) };
}
