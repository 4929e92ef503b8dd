import { type ChunkSink, type ChunkTag, describeTag } from './chunk.js';
import { CollectiveError, RefusalError } from './errors.js';
import { describeMember, type RingGroup, type RingMember } from './group.js';

/**
 * Where one generation's inbound chunks go. The all-reduce in progress (the receiver) takes chunks of
 * its sequence as they arrive; chunks of the next sequence (a predecessor that finished first and went
 * on) are held until that all-reduce starts. Anything else is refused.
 */

export interface ChunkReceiver {
  readonly sequence: number;
  /** Validates a chunk's tag against the all-reduce and returns where its payload lands; throws RefusalError. */
  begin(tag: ChunkTag, payloadBytes: number): ChunkSink;
  /** The predecessor's connection failed or was refused; ignored once nothing more is expected. */
  peerFailed(error: CollectiveError): void;
}

export interface InboundConnectionEvents {
  ended(problem: string): void;
  failed(problem: string): void;
}

interface HeldChunk {
  readonly tag: ChunkTag;
  readonly payload: Buffer;
}

export class ChunkInbox {
  private receiver: ChunkReceiver | undefined;
  /** The sequence of the next receiver to attach: early chunks must carry it. */
  private nextSequence = 0;
  private held: HeldChunk[] = [];
  private failure: CollectiveError | undefined;
  private closedBecause: string | undefined;
  private openConnections = 0;

  constructor(
    readonly group: RingGroup,
    readonly predecessor: RingMember,
  ) {}

  begin(tag: ChunkTag, payloadBytes: number): ChunkSink {
    if (this.closedBecause !== undefined) throw new RefusalError('stale-generation', `generation ${this.group.generation} is over here: ${this.closedBecause}`);
    if (tag.generation !== this.group.generation) {
      throw new RefusalError('protocol', `chunk of generation ${tag.generation} on a connection admitted for generation ${this.group.generation}`);
    }
    const receiver = this.receiver;
    if (receiver !== undefined && tag.sequence === receiver.sequence) {
      try {
        return receiver.begin(tag, payloadBytes);
      } catch (error) {
        if (error instanceof RefusalError) receiver.peerFailed(this.peerError(`sent a chunk that was refused: ${error.message}`));
        throw error;
      }
    }
    if (tag.sequence === this.nextSequence) return this.holdingSink(tag, payloadBytes);
    const expected = receiver === undefined ? `${this.nextSequence}` : `${receiver.sequence} or ${this.nextSequence}`;
    throw new RefusalError('protocol', `chunk of sequence ${tag.sequence} (${describeTag(tag)}) while expecting sequence ${expected}`);
  }

  /** Starts receiving for `receiver`'s all-reduce, delivering chunks that arrived before it. */
  attach(receiver: ChunkReceiver): void {
    if (this.closedBecause !== undefined) throw new CollectiveError(`generation ${this.group.generation} is over: ${this.closedBecause}`);
    if (this.failure !== undefined) throw this.failure;
    if (receiver.sequence !== this.nextSequence) throw new Error(`all-reduce sequence ${receiver.sequence} out of order (expected ${this.nextSequence})`);
    this.receiver = receiver;
    this.nextSequence++;
    const held = this.held;
    this.held = [];
    for (const chunk of held) {
      if (this.receiver !== receiver) return; // it failed while replaying
      this.deliver(receiver, chunk);
    }
  }

  detach(receiver: ChunkReceiver): void {
    if (this.receiver === receiver) this.receiver = undefined;
  }

  /**
   * An inbound connection or stream from the predecessor was admitted. Its end is reported through the
   * result: a failure loses whatever was in flight on it, so the receiver fails at once; an orderly end
   * only when the predecessor has ended all of them (the others may still carry chunks).
   */
  connectionOpened(): InboundConnectionEvents {
    this.openConnections++;
    let over = false;
    return {
      ended: (problem) => {
        if (over) return;
        over = true;
        if (--this.openConnections === 0) this.peerLost(problem);
      },
      failed: (problem) => {
        if (over) return;
        over = true;
        this.openConnections--;
        this.peerLost(problem);
      },
    };
  }

  /** The predecessor's connections failed or all ended: the receiver (or the next) fails. */
  private peerLost(problem: string): void {
    if (this.closedBecause !== undefined) return;
    this.failure ??= this.peerError(problem);
    this.held = [];
    this.receiver?.peerFailed(this.failure);
  }

  /** The generation is over (superseded or abandoned): everything of it is refused from now on. */
  close(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    this.held = [];
    this.receiver?.peerFailed(new CollectiveError(`generation ${this.group.generation} ended: ${reason}`));
    this.receiver = undefined;
  }

  private peerError(problem: string): CollectiveError {
    return new CollectiveError(`predecessor ${describeMember(this.group, this.predecessor)} ${problem}`, this.predecessor);
  }

  private deliver(receiver: ChunkReceiver, chunk: HeldChunk): void {
    let sink: ChunkSink;
    try {
      sink = receiver.begin(chunk.tag, chunk.payload.length);
    } catch (error) {
      receiver.peerFailed(this.peerError(`sent a chunk that was refused: ${(error as Error).message}`));
      return;
    }
    sink.write(chunk.payload);
    sink.end();
  }

  /** Copies an early chunk aside; if its all-reduce started meanwhile, hands it over at its end. */
  private holdingSink(tag: ChunkTag, payloadBytes: number): ChunkSink {
    const payload = Buffer.allocUnsafe(payloadBytes);
    let filled = 0;
    return {
      write: (piece) => {
        payload.set(piece, filled);
        filled += piece.length;
      },
      end: () => {
        if (this.closedBecause !== undefined || this.failure !== undefined) return;
        const receiver = this.receiver;
        if (receiver !== undefined && receiver.sequence === tag.sequence) this.deliver(receiver, { tag, payload });
        else this.held.push({ tag, payload });
      },
    };
  }
}
