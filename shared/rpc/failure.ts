import { Metadata, status } from '@grpc/grpc-js';

/**
 * Why the coordinator refused a call, as a machine-readable code beside the gRPC status: the worker
 * decides what to do from the code (rejoin, register again, give up), never from the message text.
 */
export type RefusalReason =
  /** No or a wrong join token, or a missing or wrong worker credential. */
  | 'unauthenticated'
  /** The caller speaks another protocol version. */
  | 'protocol-version'
  /** The worker was started with another config than the run's. */
  | 'config-mismatch'
  /** The worker id is not (or no longer) registered: register again. */
  | 'unknown-worker'
  /** The worker id is registered and alive under another registration. */
  | 'already-registered'
  /** The run already has its maximum number of workers. */
  | 'run-full'
  /** The call names an older generation than the run's: go back to the rendezvous. */
  | 'stale-generation'
  /** The caller is registered but not in the current generation. */
  | 'not-a-member'
  /** The rendezvous the caller waited in was called off (the coordinator stops, or the caller waited again). */
  | 'rendezvous-aborted'
  /** The run has completed or failed. */
  | 'run-finished'
  /** The coordinator is stopping (SIGTERM) to be restarted: offer the state, then register again until it answers. */
  | 'coordinator-stopping'
  /** The call is not this caller's to make (a state upload from a rank the plan does not name). */
  | 'not-permitted'
  /** The request is malformed or inconsistent. */
  | 'invalid-argument'
  /** The request is larger than the limits allow. */
  | 'too-large'
  /** What the call asks for does not exist (a phase that starts from no checkpoint). */
  | 'not-found';

/** The trailing-metadata key that carries the refusal reason. */
export const REFUSAL_METADATA_KEY = 'autoprune-refusal';

/**
 * A refusal that a gRPC handler returns as a status with a message for the caller and a reason for its
 * code, e.g. UNAUTHENTICATED / 'unauthenticated' for a wrong join token, FAILED_PRECONDITION /
 * 'stale-generation' for a call from an older generation.
 */
export class RpcFailure extends Error {
  constructor(
    readonly code: status,
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'RpcFailure';
  }
}

export interface ServiceFailure {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;
}

/** The status, message and reason metadata a handler sends for `error`: an RpcFailure as it is, anything else as INTERNAL. */
export function toServiceError(error: unknown): ServiceFailure {
  const metadata = new Metadata();
  if (error instanceof RpcFailure) {
    metadata.set(REFUSAL_METADATA_KEY, error.reason);
    return { code: error.code, details: error.message, metadata };
  }
  return { code: status.INTERNAL, details: error instanceof Error ? error.message : String(error), metadata };
}

const REASONS: ReadonlySet<string> = new Set<RefusalReason>([
  'unauthenticated',
  'protocol-version',
  'config-mismatch',
  'unknown-worker',
  'already-registered',
  'run-full',
  'stale-generation',
  'not-a-member',
  'rendezvous-aborted',
  'run-finished',
  'coordinator-stopping',
  'not-permitted',
  'invalid-argument',
  'too-large',
  'not-found',
]);

/** The refusal reason a failed call's metadata carries, or undefined (not a refusal: the coordinator is unreachable, or crashed). */
export function refusalReasonOf(metadata: Metadata | undefined): RefusalReason | undefined {
  const value = metadata?.get(REFUSAL_METADATA_KEY)[0];
  return typeof value === 'string' && REASONS.has(value) ? (value as RefusalReason) : undefined;
}
