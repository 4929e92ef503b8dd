import * as grpc from '@grpc/grpc-js';
import type { Chunk__Output } from '../shared/proto/generated/autoprune/v1/Chunk.js';
import type { ChunkAck } from '../shared/proto/generated/autoprune/v1/ChunkAck.js';
import { loadCollectiveProto } from '../shared/proto/load.js';
import type { ChunkTag } from './chunk.js';
import type { CollectiveEndpoint } from './endpoint.js';
import { RefusalError, type RefusalReason } from './errors.js';
import type { ChunkInbox, InboundConnectionEvents } from './inbox.js';

/**
 * The gRPC transport's receiving side: the Collective service. Exchange admits the sender from its
 * metadata, answers with response headers once admitted (the sender waits for them before it sends),
 * and lands each Chunk in the generation's inbox. Refusals end the call with a status saying why and,
 * for generations this worker has not reached yet, the trailer that lets the sender retry.
 */

export const SERVICE_NAME = 'autoprune.v1.Collective';
export const WORKER_HEADER = 'x-autoprune-worker';
export const GENERATION_HEADER = 'x-autoprune-generation';
export const SESSION_HEADER = 'x-autoprune-session';
/** Trailer naming the RefusalReason, so the sender knows whether to retry. */
export const REFUSAL_TRAILER = 'x-autoprune-refusal';

const STATUS_OF: Record<RefusalReason, grpc.status> = {
  unauthenticated: grpc.status.UNAUTHENTICATED,
  'stale-generation': grpc.status.FAILED_PRECONDITION,
  'future-generation': grpc.status.FAILED_PRECONDITION,
  'not-predecessor': grpc.status.PERMISSION_DENIED,
  'not-successor': grpc.status.PERMISSION_DENIED,
  'too-large': grpc.status.RESOURCE_EXHAUSTED,
  protocol: grpc.status.INVALID_ARGUMENT,
};

type ExchangeCall = grpc.ServerDuplexStream<Chunk__Output, ChunkAck>;

export function collectiveService(endpoint: CollectiveEndpoint): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation, string] {
  const definition = loadCollectiveProto().Collective.service;
  const implementation: grpc.UntypedServiceImplementation = {
    Exchange: (call: ExchangeCall) => serveExchange(endpoint, call),
  };
  return [definition, implementation, SERVICE_NAME];
}

function serveExchange(endpoint: CollectiveEndpoint, call: ExchangeCall): void {
  let connection: InboundConnectionEvents | undefined;
  let ended = false;
  const refuse = (error: unknown) => {
    const refusal = error instanceof RefusalError ? error : new RefusalError('protocol', (error as Error).message);
    endpoint.logger?.warn({ peer: call.getPeer(), reason: refusal.reason, err: refusal.message }, 'collective stream refused');
    ended = true;
    connection?.failed(`was refused: ${refusal.message}`);
    const trailer = new grpc.Metadata();
    trailer.set(REFUSAL_TRAILER, refusal.reason);
    call.emit('error', { code: STATUS_OF[refusal.reason], details: refusal.message, metadata: trailer });
  };
  let inbox: ChunkInbox;
  try {
    inbox = endpoint.admitPredecessor(readClaim(call.metadata));
  } catch (error) {
    refuse(error);
    return;
  }
  const events = inbox.connectionOpened();
  connection = events;
  call.sendMetadata(new grpc.Metadata());
  call.on('data', (chunk: Chunk__Output) => {
    if (ended) return;
    try {
      const tag: ChunkTag = {
        generation: chunk.generation,
        sequence: chunk.sequence,
        step: chunk.step,
        bucket: chunk.bucket,
        round: chunk.round,
        offset: chunk.offset,
        elements: chunk.elements,
        encoding: chunk.encoding === 'ENCODING_FLOAT16' ? 'float16' : 'float32',
      };
      const sink = inbox.begin(tag, chunk.data.length);
      sink.write(chunk.data);
      sink.end();
    } catch (error) {
      refuse(error);
    }
  });
  call.on('end', () => {
    ended = true;
    events.ended('ended its collective streams');
    call.end();
  });
  // grpc-js also cancels a call whose message exceeded the server's limit, without saying so here.
  call.on('cancelled', () => events.failed('cancelled its collective stream (it gave up, or sent a message over the size limit)'));
  call.on('error', (error) => events.failed(`collective stream failed: ${error.message}`));
}

function readClaim(metadata: grpc.Metadata): { workerId: string; generation: number; sessionKey: Uint8Array } {
  const text = (key: string) => {
    const value = metadata.get(key)[0];
    if (typeof value !== 'string' || value === '') throw new RefusalError('unauthenticated', `missing ${key} metadata`);
    return value;
  };
  const workerId = text(WORKER_HEADER);
  const generationText = text(GENERATION_HEADER);
  const generation = Number(generationText);
  if (!/^\d+$/.test(generationText) || !Number.isSafeInteger(generation))
    throw new RefusalError('protocol', `${GENERATION_HEADER} is not a generation number: ${JSON.stringify(generationText)}`);
  const session = text(SESSION_HEADER);
  if (!/^(?:[0-9a-f]{2})+$/i.test(session)) throw new RefusalError('unauthenticated', `${SESSION_HEADER} is not hex`);
  return { workerId, generation, sessionKey: Buffer.from(session, 'hex') };
}
