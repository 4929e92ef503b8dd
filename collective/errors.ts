import type { RingMember } from './group.js';

/**
 * Failures of a collective that a peer caused or suffered: they name the peer, so that the operator
 * (and the coordinator's logs) know which worker to look at. After one, the AllReducer is unusable.
 */
export class CollectiveError extends Error {
  readonly peer: RingMember | undefined;

  constructor(message: string, peer?: RingMember, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CollectiveError';
    this.peer = peer;
  }
}

/** A peer did not send (or accept) what the collective waited for within its timeout. */
export class CollectiveTimeoutError extends CollectiveError {
  declare readonly peer: RingMember;

  constructor(message: string, peer: RingMember) {
    super(message, peer);
    this.name = 'CollectiveTimeoutError';
  }
}

/** Why an inbound connection, stream or chunk was refused; transports map it to their own codes. */
export type RefusalReason =
  | 'unauthenticated' // wrong session key
  | 'stale-generation' // the sender is behind this worker
  | 'future-generation' // this worker has not reached the sender's generation yet: the sender may retry
  | 'not-predecessor' // a gRPC sender that is not this worker's predecessor in the ring
  | 'not-successor' // a bulk-channel receiver that is not this worker's successor in the ring
  | 'too-large' // a chunk over the size limit
  | 'protocol'; // a chunk that does not fit the all-reduce in progress

export class RefusalError extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.name = 'RefusalError';
  }

  /** Whether the sender should try again shortly (the receiver is still setting up the generation). */
  get retryable(): boolean {
    return this.reason === 'future-generation';
  }
}
