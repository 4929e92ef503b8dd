import * as grpc from '@grpc/grpc-js';
import type { Chunk } from '../shared/proto/generated/autoprune/v1/Chunk.js';
import type { ChunkAck__Output } from '../shared/proto/generated/autoprune/v1/ChunkAck.js';
import type { CollectiveClient } from '../shared/proto/generated/autoprune/v1/Collective.js';
import { loadCollectiveProto } from '../shared/proto/load.js';
import { channelCredentials, type TlsMaterial } from '../shared/rpc/security.js';
import { channelOptions } from '../shared/rpc/server.js';
import type { ChunkTag } from './chunk.js';
import { CollectiveError, CollectiveTimeoutError } from './errors.js';
import { describeMember, type RingGroup, type RingMember } from './group.js';
import { GENERATION_HEADER, REFUSAL_TRAILER, SESSION_HEADER, WORKER_HEADER } from './grpc-service.js';
import { leastLoaded, type OutboundLink } from './link.js';
import { CLOSE_GRACE_MS } from './socket-close.js';

/**
 * The gRPC transport's sending side: `streams` Exchange calls on the successor's Collective service, each
 * on its own channel (a grpc-js channel multiplexes its calls over one HTTP/2 connection, one socket, so
 * separate channels are what spreads the load). A call counts as open once the successor's response
 * headers arrive, which it sends only after admitting the sender.
 */

export interface GrpcLinkOptions {
  readonly group: RingGroup;
  readonly successor: RingMember;
  readonly streams: number;
  readonly timeoutMs: number;
  readonly inFlightLimit: number;
  readonly maxMessageBytes: number;
  readonly tls: TlsMaterial | undefined;
}

const RETRY_MS = 50;

type ExchangeCall = grpc.ClientDuplexStream<Chunk, ChunkAck__Output>;

interface Stream {
  readonly client: CollectiveClient;
  readonly call: ExchangeCall;
  inFlightBytes: number;
}

export async function openGrpcLink(options: GrpcLinkOptions): Promise<GrpcLink> {
  const deadline = Date.now() + options.timeoutMs;
  const Collective = loadCollectiveProto().Collective;
  const opened = await Promise.allSettled(
    Array.from({ length: options.streams }, () => {
      const client = new Collective(options.successor.address, channelCredentials(options.tls), {
        ...channelOptions(options.maxMessageBytes),
        // Let the receiver enforce its own limit (and say so), rather than failing here first.
        'grpc.max_send_message_length': -1,
        // Without this, channels to the same address share one connection.
        'grpc.use_local_subchannel_pool': 1,
      });
      return openStream(options, client, deadline).catch((error: unknown) => {
        client.close();
        throw error;
      });
    }),
  );
  const streams = opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failure = opened.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failure !== undefined) {
    for (const stream of streams) {
      stream.call.cancel();
      stream.client.close();
    }
    throw failure.reason;
  }
  return new GrpcLink(options, streams);
}

export class GrpcLink implements OutboundLink {
  private failureListener: ((error: CollectiveError) => void) | undefined;
  private failure: CollectiveError | undefined;
  private closing = false;

  constructor(
    private readonly options: GrpcLinkOptions,
    private readonly streams: readonly Stream[],
  ) {
    for (const stream of streams) this.watch(stream.call);
  }

  get ready(): boolean {
    return this.failure === undefined && leastLoaded(this.streams, this.options.inFlightLimit) !== undefined;
  }

  send(tag: ChunkTag, payload: Uint8Array, written: () => void): void {
    const stream = leastLoaded(this.streams, Infinity)!;
    const bytes = payload.length;
    stream.inFlightBytes += bytes;
    const message: Chunk = {
      generation: tag.generation,
      sequence: tag.sequence,
      step: tag.step,
      bucket: tag.bucket,
      round: tag.round,
      offset: tag.offset,
      elements: tag.elements,
      encoding: tag.encoding === 'float16' ? 'ENCODING_FLOAT16' : 'ENCODING_FLOAT32',
      data: payload,
    };
    stream.call.write(message, (error: Error | null | undefined) => {
      stream.inFlightBytes -= bytes;
      if (!error) written();
    });
  }

  onFailure(listener: (error: CollectiveError) => void): void {
    this.failureListener = listener;
    if (this.failure !== undefined) listener(this.failure);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.streams.map(
        ({ call, client }) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              call.cancel();
              done();
            }, CLOSE_GRACE_MS);
            const done = () => {
              clearTimeout(timer);
              client.close();
              resolve();
            };
            call.once('status', done);
            call.end();
          }),
      ),
    );
  }

  destroy(): void {
    this.closing = true;
    for (const { call, client } of this.streams) {
      call.cancel();
      client.close();
    }
  }

  private watch(call: ExchangeCall): void {
    const { group, successor } = this.options;
    const who = `successor ${describeMember(group, successor)}`;
    call.on('data', () => {}); // credits are not used: HTTP/2 flow control paces the sender
    call.on('error', (error: grpc.ServiceError) =>
      this.failed(new CollectiveError(`${who} ended the collective stream: ${grpc.status[error.code]}: ${error.details}`, successor, { cause: error })),
    );
    call.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) this.failed(new CollectiveError(`${who} ended the collective stream early`, successor));
    });
  }

  private failed(error: CollectiveError): void {
    if (this.closing || this.failure !== undefined) return;
    this.failure = error;
    for (const { call, client } of this.streams) {
      call.cancel();
      client.close();
    }
    this.failureListener?.(error);
  }
}

/** Opens one Exchange call and waits until the successor admits it, retrying while it is not ready. */
async function openStream(options: GrpcLinkOptions, client: CollectiveClient, deadline: number): Promise<Stream> {
  const { group, successor } = options;
  const who = `successor ${describeMember(group, successor)}`;
  const metadata = new grpc.Metadata();
  metadata.set(WORKER_HEADER, group.ring[group.rank]!.workerId);
  metadata.set(GENERATION_HEADER, String(group.generation));
  metadata.set(SESSION_HEADER, Buffer.from(group.sessionKey).toString('hex'));
  let lastProblem = 'no answer';
  while (Date.now() < deadline) {
    const call = client.Exchange(metadata);
    const outcome = await new Promise<'admitted' | 'retry' | 'timeout' | grpc.ServiceError>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now()));
      call.once('metadata', () => {
        clearTimeout(timer);
        resolve('admitted');
      });
      call.once('error', (error: grpc.ServiceError) => {
        clearTimeout(timer);
        const retryable = error.code === grpc.status.UNAVAILABLE || error.metadata?.get(REFUSAL_TRAILER)[0] === 'future-generation';
        lastProblem = `${grpc.status[error.code]}: ${error.details}`;
        resolve(retryable ? 'retry' : error);
      });
    });
    if (outcome === 'admitted') return { client, call, inFlightBytes: 0 };
    call.removeAllListeners('metadata');
    if (outcome === 'timeout') {
      call.cancel(); // its error goes to the listener above, which no longer matters
      break;
    }
    if (outcome !== 'retry')
      throw new CollectiveError(`${who} refused the collective stream: ${grpc.status[outcome.code]}: ${outcome.details}`, successor, { cause: outcome });
    await new Promise((resolve) => setTimeout(resolve, Math.min(RETRY_MS, Math.max(0, deadline - Date.now()))));
  }
  throw new CollectiveTimeoutError(`${who} did not admit a collective stream within ${options.timeoutMs} ms (last: ${lastProblem})`, successor);
}
