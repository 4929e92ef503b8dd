import { bytesPerElement, type ChunkEncoding, type ChunkSink, type ChunkTag, describeTag } from './chunk.js';
import { type CollectiveError, CollectiveTimeoutError, RefusalError } from './errors.js';
import { copyFloat16, encodeFloat16 } from './float16.js';
import { describeMember, type RingGroup, type RingMember } from './group.js';
import type { ChunkReceiver } from './inbox.js';
import { landingSink } from './landing.js';
import type { OutboundLink } from './link.js';
import { chunkCount, receivedSegment, roundCount, segmentRange, sentSegment } from './plan.js';
import type { ReduceKernels } from './simd.js';

/**
 * One ring all-reduce as a dataflow of chunks. Each bucket is cut into N segments and each segment into
 * chunks of the same boundaries on every rank; a chunk received in round k is reduced (or, in the
 * all-gather, copied) into place and goes on to the successor in round k + 1. So every chunk travels the
 * ring on its own and a segment streams instead of waiting for whole rounds: round-0 chunks go out at
 * once, later rounds as their input arrives, the latest round first.
 */

export interface ExchangeParams {
  readonly group: RingGroup;
  readonly predecessor: { readonly member: RingMember; readonly address: string };
  readonly successor: { readonly member: RingMember; readonly address: string };
  readonly sequence: number;
  readonly step: number;
  /** Each bucket's elements, reduced in place. */
  readonly buckets: readonly Float32Array[];
  readonly encoding: ChunkEncoding;
  readonly chunkElements: number;
  readonly timeoutMs: number;
  readonly link: OutboundLink;
  readonly kernels: ReduceKernels;
  readonly halves: HalfBufferPool;
}

interface SendItem {
  readonly bucket: number;
  readonly round: number;
  readonly offset: number;
  readonly elements: number;
  /** float16 bits already encoded (the segment owner's rounded copy). */
  readonly encoded?: Uint16Array;
}

/** Reusable float16 buffers of one chunk each, for encoding outgoing chunks. */
export class HalfBufferPool {
  private readonly free: Uint16Array[] = [];

  constructor(private readonly chunkElements: number) {}

  take(): Uint16Array {
    return this.free.pop() ?? new Uint16Array(this.chunkElements);
  }

  give(buffer: Uint16Array): void {
    this.free.push(buffer);
  }
}

export class RingExchange implements ChunkReceiver {
  readonly sequence: number;
  private readonly world: number;
  private readonly rank: number;
  private readonly rounds: number;
  /** Per bucket: one flag per (round, chunk of the segment received in that round). */
  private readonly arrived: Uint8Array[];
  private readonly chunksPerSegment: number[];
  private readonly expectedReceives: number;
  private readonly expectedSends: number;
  private receivedCount = 0;
  private sentCount = 0;
  private inFlight = 0;
  /** Pending sends per round; the latest round goes first. */
  private readonly queues: SendItem[][];
  private readonly queueHeads: number[];
  private queued = 0;
  private lastSent: ChunkTag | undefined;
  private settled = false;
  private receiveTimer: NodeJS.Timeout | undefined;
  private sendTimer: NodeJS.Timeout | undefined;
  private resolve!: () => void;
  private reject!: (error: Error) => void;
  readonly done: Promise<void>;

  constructor(private readonly params: ExchangeParams) {
    this.sequence = params.sequence;
    this.world = params.group.world;
    this.rank = params.group.rank;
    this.rounds = roundCount(this.world);
    this.queues = Array.from({ length: this.rounds }, () => []);
    this.queueHeads = new Array<number>(this.rounds).fill(0);
    this.chunksPerSegment = params.buckets.map((data) => chunkCount(Math.ceil(data.length / this.world), params.chunkElements));
    this.arrived = this.chunksPerSegment.map((chunks) => new Uint8Array(chunks * this.rounds));
    let receives = 0;
    let sends = 0;
    params.buckets.forEach((data) => {
      for (let round = 0; round < this.rounds; round++) {
        receives += this.segmentChunks(data.length, receivedSegment(this.rank, this.world, round));
        sends += this.segmentChunks(data.length, sentSegment(this.rank, this.world, round));
      }
    });
    this.expectedReceives = receives;
    this.expectedSends = sends;
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Sends this rank's round-0 chunks and arms the timeouts; `done` settles when all is sent and received. */
  start(): void {
    const { buckets, chunkElements } = this.params;
    buckets.forEach((data, bucket) => {
      const { start, end } = segmentRange(data.length, this.world, sentSegment(this.rank, this.world, 0));
      for (let offset = start; offset < end; offset += chunkElements)
        this.enqueue({ bucket, round: 0, offset, elements: Math.min(chunkElements, end - offset) });
    });
    if (this.expectedReceives > 0) this.receiveTimer = setTimeout(() => this.receiveTimedOut(), this.params.timeoutMs);
    if (this.expectedSends > 0) this.sendTimer = setTimeout(() => this.sendTimedOut(), this.params.timeoutMs);
    this.pump();
    this.finishIfDone();
  }

  begin(tag: ChunkTag, payloadBytes: number): ChunkSink {
    const { buckets, chunkElements, encoding, step } = this.params;
    const refuse = (problem: string) => new RefusalError('protocol', `${problem} (${describeTag(tag)})`);
    if (this.settled) throw refuse('chunk after its all-reduce ended');
    if (tag.step !== step) throw refuse(`chunk of step ${tag.step} while this worker is at step ${step}`);
    if (tag.encoding !== encoding) throw refuse(`chunk encoded as ${tag.encoding}, expected ${encoding}`);
    const data = buckets[tag.bucket];
    if (data === undefined) throw refuse(`no bucket ${tag.bucket} (there are ${buckets.length}; do the ranks reduce the same arrays?)`);
    if (tag.round >= this.rounds) throw refuse(`no round ${tag.round} with ${this.world} ranks`);
    const { start, end } = segmentRange(data.length, this.world, receivedSegment(this.rank, this.world, tag.round));
    const index = (tag.offset - start) / chunkElements;
    if (!Number.isInteger(index) || tag.offset < start || tag.offset >= end || tag.elements !== Math.min(chunkElements, end - tag.offset)) {
      throw refuse(`chunk of ${tag.elements} elements at ${tag.offset} does not fit segment [${start}, ${end}) in chunks of ${chunkElements}`);
    }
    if (payloadBytes !== tag.elements * bytesPerElement(encoding)) throw refuse(`payload of ${payloadBytes} bytes for ${tag.elements} ${encoding} elements`);
    const flag = tag.round * this.chunksPerSegment[tag.bucket]! + index;
    const arrived = this.arrived[tag.bucket]!;
    if (arrived[flag] !== 0) throw refuse('duplicate chunk');
    arrived[flag] = 1;
    const reducing = tag.round < this.world - 1;
    return landingSink({ target: data, start: tag.offset, elements: tag.elements, operation: reducing ? 'add' : 'copy', encoding }, this.params.kernels, () =>
      this.landed(tag.bucket, tag.round, tag.offset, tag.elements),
    );
  }

  peerFailed(error: CollectiveError): void {
    if (this.receivedCount < this.expectedReceives) this.fail(error);
  }

  fail(error: Error): void {
    if (this.settled) return;
    this.settle();
    this.reject(error);
  }

  private landed(bucket: number, round: number, offset: number, elements: number): void {
    if (this.settled) return;
    this.receivedCount++;
    if (this.receivedCount === this.expectedReceives) clearTimeout(this.receiveTimer);
    else this.receiveTimer?.refresh();
    if (round + 1 < this.rounds) {
      if (round + 1 === this.world - 1 && this.params.encoding === 'float16') {
        // This rank owns the segment now: round its copy to float16 exactly as the others will receive it.
        const encoded = this.params.halves.take().subarray(0, elements);
        const values = this.params.buckets[bucket]!;
        encodeFloat16(values.subarray(offset, offset + elements), encoded);
        copyFloat16(values, offset, encoded);
        this.enqueue({ bucket, round: round + 1, offset, elements, encoded });
      } else {
        this.enqueue({ bucket, round: round + 1, offset, elements });
      }
      this.pump();
    }
    this.finishIfDone();
  }

  private enqueue(item: SendItem): void {
    this.queues[item.round]!.push(item);
    this.queued++;
  }

  private dequeue(): SendItem {
    for (let round = this.rounds - 1; ; round--) {
      const queue = this.queues[round]!;
      const head = this.queueHeads[round]!;
      if (head === queue.length) continue;
      const item = queue[head]!;
      if (head + 1 === queue.length) {
        queue.length = 0;
        this.queueHeads[round] = 0;
      } else {
        this.queueHeads[round] = head + 1;
      }
      this.queued--;
      return item;
    }
  }

  private pump(): void {
    const { link } = this.params;
    while (this.queued > 0 && !this.settled && link.ready) this.transmit(this.dequeue());
  }

  private transmit(item: SendItem): void {
    const { buckets, encoding, group, halves, link, sequence, step } = this.params;
    const values = buckets[item.bucket]!.subarray(item.offset, item.offset + item.elements);
    let payload: Uint8Array;
    let pooled: Uint16Array | undefined;
    if (encoding === 'float32') {
      // Zero copy: the chunk's values go out from where they are. Nothing writes them again before the
      // write completes, since their next change (the all-gather's) depends on this send's arrival.
      payload = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    } else {
      pooled = item.encoded ?? halves.take().subarray(0, item.elements);
      if (item.encoded === undefined) encodeFloat16(values, pooled);
      payload = new Uint8Array(pooled.buffer, pooled.byteOffset, pooled.byteLength);
    }
    const tag: ChunkTag = {
      generation: group.generation,
      sequence,
      step,
      bucket: item.bucket,
      round: item.round,
      offset: item.offset,
      elements: item.elements,
      encoding,
    };
    this.lastSent = tag;
    this.inFlight++;
    link.send(tag, payload, () => {
      this.inFlight--;
      this.sentCount++;
      if (pooled !== undefined) halves.give(new Uint16Array(pooled.buffer));
      if (this.settled) return;
      if (this.sentCount === this.expectedSends) clearTimeout(this.sendTimer);
      else this.sendTimer?.refresh();
      this.pump();
      this.finishIfDone();
    });
  }

  private finishIfDone(): void {
    if (this.settled || this.receivedCount < this.expectedReceives || this.sentCount < this.expectedSends) return;
    this.settle();
    this.resolve();
  }

  private settle(): void {
    this.settled = true;
    clearTimeout(this.receiveTimer);
    clearTimeout(this.sendTimer);
  }

  private segmentChunks(elements: number, segment: number): number {
    const { start, end } = segmentRange(elements, this.world, segment);
    return chunkCount(end - start, this.params.chunkElements);
  }

  private receiveTimedOut(): void {
    const { group, predecessor, sequence, step, timeoutMs } = this.params;
    const awaited = this.firstMissing();
    const what = awaited === undefined ? 'chunks' : describeTag({ generation: group.generation, sequence, step, ...awaited });
    this.fail(
      new CollectiveTimeoutError(
        `predecessor ${describeMember(group, predecessor.member, predecessor.address)} sent nothing for ${timeoutMs} ms; ` +
          `awaiting ${what} (${this.receivedCount} of ${this.expectedReceives} chunks of this all-reduce received)`,
        predecessor.member,
      ),
    );
  }

  private sendTimedOut(): void {
    if (this.inFlight === 0 && this.queued === 0) {
      // Nothing to send until the predecessor delivers: that wait is the receive timeout's business.
      this.sendTimer?.refresh();
      return;
    }
    const { group, successor, timeoutMs } = this.params;
    const sending = this.lastSent === undefined ? 'nothing yet' : describeTag(this.lastSent);
    this.fail(
      new CollectiveTimeoutError(
        `successor ${describeMember(group, successor.member, successor.address)} accepted no data for ${timeoutMs} ms ` +
          `(${this.inFlight} chunks in flight, ${this.queued} queued; last sent: ${sending})`,
        successor.member,
      ),
    );
  }

  private firstMissing(): { bucket: number; round: number } | undefined {
    for (let round = 0; round < this.rounds; round++) {
      for (let bucket = 0; bucket < this.params.buckets.length; bucket++) {
        const elements = this.params.buckets[bucket]!.length;
        const chunks = this.segmentChunks(elements, receivedSegment(this.rank, this.world, round));
        const base = round * this.chunksPerSegment[bucket]!;
        for (let index = 0; index < chunks; index++) if (this.arrived[bucket]![base + index] === 0) return { bucket, round };
      }
    }
    return undefined;
  }
}
