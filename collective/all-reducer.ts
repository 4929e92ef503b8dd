import type { TlsMaterial } from '../shared/rpc/security.js';
import { bytesPerElement, type ChunkEncoding } from './chunk.js';
import type { SuccessorDock } from './dock.js';
import type { CollectiveEndpoint } from './endpoint.js';
import { type CollectiveOptions, predecessorOf, type RingGroup, successorOf, validateCollectiveOptions, validateGroup } from './group.js';
import { openGrpcLink } from './grpc-link.js';
import type { ChunkInbox } from './inbox.js';
import type { OutboundLink } from './link.js';
import { type Bucket, planBuckets } from './plan.js';
import { HalfBufferPool, RingExchange } from './ring-exchange.js';
import { ReduceKernels } from './simd.js';
import { openTcpInbound, type TcpInbound } from './tcp-inbound.js';
import { openTcpLink } from './tcp-link.js';

export { CollectiveError, CollectiveTimeoutError } from './errors.js';

/**
 * Ring all-reduce (reduce-scatter, then all-gather) over one generation's ring: each rank sends
 * 2(N-1)/N of the data to its successor and receives as much from its predecessor. Open one per
 * generation; after a failure it is unusable (the worker re-rendezvouses and opens another).
 */

/** What a ring of two or more ranks runs on. */
interface Links {
  readonly inbox: ChunkInbox;
  readonly dock: SuccessorDock;
  readonly link: OutboundLink;
  /** The bulk channel's receiving connections (gRPC receives through the endpoint's server instead). */
  readonly inbound: TcpInbound | undefined;
  readonly kernels: ReduceKernels;
}

interface Layout {
  readonly sizes: string;
  readonly buckets: readonly Bucket[];
  /** Scratch for buckets that fuse several arrays; undefined where a bucket is a slice of one array. */
  readonly fused: readonly (Float32Array | undefined)[];
}

export class AllReducer {
  private sequence = 0;
  private running = false;
  private closed = false;
  private broken: Error | undefined;
  private exchange: RingExchange | undefined;
  private layout: Layout | undefined;
  private readonly halves: HalfBufferPool;
  private readonly encoding: ChunkEncoding;
  private readonly chunkElements: number;

  /** `links` is undefined in a world of one. */
  private constructor(
    readonly group: RingGroup,
    readonly options: CollectiveOptions,
    private readonly links: Links | undefined,
  ) {
    this.encoding = options.compression === 'fp16' ? 'float16' : 'float32';
    this.chunkElements = Math.max(1, Math.floor(options.chunkBytes / bytesPerElement(this.encoding)));
    this.halves = new HalfBufferPool(this.chunkElements);
    links?.link.onFailure((error) => {
      if (this.exchange !== undefined) this.exchange.fail(error);
      else this.broken ??= error;
    });
  }

  /**
   * Opens the ring links (world 1: nothing to open). The endpoint must already be in `group` (setGroup).
   * gRPC: streams to the successor's Collective service. TCP: connections to the predecessor's bulk
   * listener to receive on, while the successor's connections to this worker's listener are awaited to
   * send on. If opening fails, the generation's inbound side is closed too, so that peers fail fast.
   */
  static async open(endpoint: CollectiveEndpoint, group: RingGroup, options: CollectiveOptions, tls?: TlsMaterial): Promise<AllReducer> {
    validateCollectiveOptions(options);
    validateGroup(group, endpoint.workerId);
    if (group.world === 1) return new AllReducer(group, options, undefined);
    const inbox = endpoint.inboxFor(group);
    const dock = endpoint.dockFor(group);
    const successor = successorOf(group);
    const predecessor = predecessorOf(group);
    // Enough in flight per connection to keep the kernel's socket buffer full while the next chunk is prepared.
    const inFlightLimit = Math.max(2 * options.chunkBytes, 1 << 20);
    const { streams, timeoutMs } = options;
    // Without TLS, the bulk channel reads into buffers in the kernels' memory, to add from where it read.
    const kernels = new ReduceKernels(options.transport === 'tcp' && tls === undefined ? streams : 0);
    try {
      if (options.transport === 'grpc') {
        const link = await openGrpcLink({ group, successor, streams, timeoutMs, inFlightLimit, maxMessageBytes: options.maxMessageBytes, tls });
        return new AllReducer(group, options, { inbox, dock, link, inbound: undefined, kernels });
      }
      const halves = new AbortController();
      const maxFrameBytes = endpoint.maxBulkFrameBytes(options.maxMessageBytes);
      const opening = [
        openTcpInbound({
          group,
          predecessor,
          streams,
          timeoutMs,
          maxFrameBytes,
          tls,
          inbox,
          signal: halves.signal,
          readBuffer: (index) => kernels.readBuffer(index),
        }),
        openTcpLink({ group, successor, streams, timeoutMs, inFlightLimit, dock, signal: halves.signal }),
      ] as const;
      // The first half to fail stops the other, and its error (the telling one) is what comes out.
      let firstFailure: unknown;
      for (const half of opening) {
        half.catch((error: unknown) => {
          firstFailure ??= error;
          halves.abort();
        });
      }
      const [inbound, link] = await Promise.allSettled(opening);
      if (inbound.status === 'fulfilled' && link.status === 'fulfilled')
        return new AllReducer(group, options, { inbox, dock, link: link.value, inbound: inbound.value, kernels });
      if (inbound.status === 'fulfilled') inbound.value.destroy();
      if (link.status === 'fulfilled') link.value.destroy();
      throw firstFailure;
    } catch (error) {
      inbox.close(`opening the all-reducer failed: ${(error as Error).message}`);
      dock.close(`opening the all-reducer failed: ${(error as Error).message}`);
      throw error;
    }
  }

  /** Sums each array elementwise across all ranks, in place; every rank ends with bitwise identical results (also with fp16). */
  async allReduce(arrays: readonly Float32Array[], tag: { step: number }): Promise<void> {
    if (this.closed) throw new Error('allReduce on a closed AllReducer');
    if (this.broken !== undefined) throw this.broken;
    if (this.running) throw new Error('allReduce called while another all-reduce of the same AllReducer is running');
    const links = this.links;
    if (links === undefined) return; // world 1: the sum is the array itself
    this.running = true;
    const layout = this.layoutOf(arrays);
    const buckets = layout.buckets.map((bucket, index) => {
      const fused = layout.fused[index];
      if (fused === undefined) {
        const piece = bucket.pieces[0]!;
        return arrays[piece.array]!.subarray(piece.arrayOffset, piece.arrayOffset + piece.length);
      }
      for (const piece of bucket.pieces) fused.set(arrays[piece.array]!.subarray(piece.arrayOffset, piece.arrayOffset + piece.length), piece.bucketOffset);
      return fused;
    });
    const predecessor = predecessorOf(this.group);
    const successor = successorOf(this.group);
    const grpc = this.options.transport === 'grpc';
    const exchange = new RingExchange({
      group: this.group,
      predecessor: { member: predecessor, address: grpc ? predecessor.address : predecessor.dataAddress },
      successor: { member: successor, address: grpc ? successor.address : successor.dataAddress },
      sequence: this.sequence++,
      step: tag.step,
      buckets,
      encoding: this.encoding,
      chunkElements: this.chunkElements,
      timeoutMs: this.options.timeoutMs,
      link: links.link,
      kernels: links.kernels,
      halves: this.halves,
    });
    this.exchange = exchange;
    try {
      links.inbox.attach(exchange);
      exchange.start();
      await exchange.done;
    } catch (error) {
      this.breakDown(error as Error);
      throw error;
    } finally {
      links.inbox.detach(exchange);
      this.exchange = undefined;
      this.running = false;
    }
    layout.buckets.forEach((bucket, index) => {
      const fused = layout.fused[index];
      if (fused === undefined) return;
      for (const piece of bucket.pieces) arrays[piece.array]!.set(fused.subarray(piece.bucketOffset, piece.bucketOffset + piece.length));
    });
  }

  /**
   * Ends the connections (what was sent is still delivered; the predecessor's are left for it to end,
   * briefly) and refuses this generation's chunks from now on.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const links = this.links;
    if (links === undefined) return;
    links.inbox.close('its all-reducer was closed');
    links.dock.close('its all-reducer was closed');
    if (this.broken !== undefined) return; // breakDown already cut everything
    await Promise.all([links.link.close(), links.inbound?.close()]);
  }

  private breakDown(error: Error): void {
    this.broken = error;
    const links = this.links!;
    links.inbound?.destroy();
    links.link.destroy();
    links.inbox.close(`the all-reduce failed: ${error.message}`);
    links.dock.close(`the all-reduce failed: ${error.message}`);
  }

  private layoutOf(arrays: readonly Float32Array[]): Layout {
    const sizes = arrays.map((array) => array.length).join(',');
    if (this.layout?.sizes === sizes) return this.layout;
    const buckets = planBuckets(
      arrays.map((array) => array.length),
      Math.max(1, Math.floor(this.options.bucketBytes / 4)),
    );
    const fused = buckets.map((bucket) => (bucket.pieces.length > 1 ? new Float32Array(bucket.elements) : undefined));
    this.layout = { sizes, buckets, fused };
    return this.layout;
  }
}
