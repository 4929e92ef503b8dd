import type { Logger } from 'pino';
import { InputError } from '../shared/errors.js';
import { secretsEqual } from '../shared/rpc/security.js';
import { SuccessorDock } from './dock.js';
import { RefusalError } from './errors.js';
import { predecessorOf, type RingGroup, successorOf, validateGroup } from './group.js';
import { ChunkInbox } from './inbox.js';

/**
 * The inbound side of the collectives, one per worker process for its whole life. Peers present their
 * worker id, generation and session key here: gRPC senders (the predecessor, whose chunks go to the
 * generation's inbox) and bulk-channel receivers (the successor, whose connections wait in the
 * generation's dock until the all-reducer sends on them). A new generation (setGroup) closes the
 * previous one's inbox and dock: its chunks and connections are refused from then on.
 */

/** What a peer presents when it opens a stream or connection. */
export interface PeerClaim {
  readonly workerId: string;
  readonly generation: number;
  readonly sessionKey: Uint8Array;
}

interface Generation {
  readonly group: RingGroup;
  readonly inbox: ChunkInbox;
  readonly dock: SuccessorDock;
}

export class CollectiveEndpoint {
  readonly workerId: string;
  readonly logger: Logger | undefined;
  private current: Generation | undefined;
  private bulkFrameLimit: number | undefined;

  constructor(options: { workerId: string; logger?: Logger }) {
    this.workerId = options.workerId;
    this.logger = options.logger;
  }

  /** Records the bulk listener's frame limit, which this worker's inbound bulk connections enforce. */
  limitBulkFrames(maxFrameBytes: number): void {
    this.bulkFrameLimit = maxFrameBytes;
  }

  /** The largest inbound bulk frame accepted: the listener's limit, and at most `limit`. */
  maxBulkFrameBytes(limit: number): number {
    return Math.min(limit, this.bulkFrameLimit ?? limit);
  }

  /** Starts a new generation: from now on only its members, with its session key, are admitted. */
  setGroup(group: RingGroup): void {
    validateGroup(group, this.workerId);
    const previous = this.current;
    if (previous !== undefined && group.generation <= previous.group.generation) {
      throw new InputError(`ring of generation ${group.generation}`, 'generations must grow', { expected: `more than ${previous.group.generation}` });
    }
    previous?.inbox.close(`superseded by generation ${group.generation}`);
    previous?.dock.close(`superseded by generation ${group.generation}`);
    this.current = { group, inbox: new ChunkInbox(group, predecessorOf(group)), dock: new SuccessorDock() };
  }

  /** The inbox of `group`, which must be the current generation (setGroup first). */
  inboxFor(group: RingGroup): ChunkInbox {
    return this.generationOf(group).inbox;
  }

  /** The dock where `group`'s successor connections wait. */
  dockFor(group: RingGroup): SuccessorDock {
    return this.generationOf(group).dock;
  }

  /** Admits a gRPC sender, which must be this worker's predecessor; returns where its chunks go. Throws RefusalError. */
  admitPredecessor(claim: PeerClaim): ChunkInbox {
    const generation = this.admit(claim);
    const expected = predecessorOf(generation.group).workerId;
    if (claim.workerId !== expected || generation.group.world === 1) {
      throw new RefusalError(
        'not-predecessor',
        `worker ${claim.workerId} is not the predecessor of worker ${this.workerId} in generation ${claim.generation} (expected ${expected})`,
      );
    }
    return generation.inbox;
  }

  /** Admits a bulk-channel receiver, which must be this worker's successor; returns where its connection waits. Throws RefusalError. */
  admitSuccessor(claim: PeerClaim): SuccessorDock {
    const generation = this.admit(claim);
    const expected = successorOf(generation.group).workerId;
    if (claim.workerId !== expected || generation.group.world === 1) {
      throw new RefusalError(
        'not-successor',
        `worker ${claim.workerId} is not the successor of worker ${this.workerId} in generation ${claim.generation} (expected ${expected})`,
      );
    }
    return generation.dock;
  }

  private admit(claim: PeerClaim): Generation {
    const current = this.current;
    if (current === undefined || claim.generation > current.group.generation) {
      throw new RefusalError(
        'future-generation',
        `worker ${claim.workerId} presented generation ${claim.generation} but worker ${this.workerId} is at generation ${current?.group.generation ?? 'none'} (not there yet)`,
      );
    }
    if (claim.generation < current.group.generation) {
      throw new RefusalError(
        'stale-generation',
        `worker ${claim.workerId} presented generation ${claim.generation} but worker ${this.workerId} is at generation ${current.group.generation}; older generations are refused`,
      );
    }
    if (!secretsEqual(claim.sessionKey, current.group.sessionKey)) {
      throw new RefusalError('unauthenticated', `worker ${claim.workerId} did not present generation ${claim.generation}'s session key`);
    }
    return current;
  }

  private generationOf(group: RingGroup): Generation {
    const current = this.current;
    if (current === undefined || current.group.generation !== group.generation) {
      throw new InputError(`ring of generation ${group.generation}`, "not this endpoint's current generation (setGroup first)", {
        found: String(current?.group.generation ?? 'none'),
      });
    }
    return current;
  }
}
