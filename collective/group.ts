import { InputError } from '../shared/errors.js';

/**
 * Who takes part in a generation's ring all-reduce, and how the data plane runs. All ranks of a
 * generation must use the same options: the bucket and chunk layout is computed independently on each.
 */

export interface RingMember {
  readonly workerId: string;
  /** gRPC host:port (Collective service). */
  readonly address: string;
  /** Bulk TCP host:port (startBulkListener). */
  readonly dataAddress: string;
}

export interface RingGroup {
  readonly generation: number;
  readonly rank: number;
  readonly world: number;
  /** Ring order: index = rank. */
  readonly ring: readonly RingMember[];
  readonly sessionKey: Uint8Array;
}

export interface CollectiveOptions {
  readonly transport: 'tcp' | 'grpc';
  /** Gradients are fused into buckets of about this size. */
  readonly bucketBytes: number;
  /** Largest chunk (gRPC message payload or TCP frame payload) sent. */
  readonly chunkBytes: number;
  /** Parallel connections (tcp) or channels, each with one stream (grpc), per ring link. */
  readonly streams: number;
  readonly compression: 'none' | 'fp16';
  /** A collective that waits longer than this on a peer fails, naming it. */
  readonly timeoutMs: number;
  /** Larger inbound chunks or frames are refused. */
  readonly maxMessageBytes: number;
}

/** Room a gRPC Chunk message needs besides its data (tags, field keys, lengths). */
export const CHUNK_ENVELOPE_BYTES = 128;

export function successorOf(group: RingGroup): RingMember {
  return group.ring[(group.rank + 1) % group.world]!;
}

export function predecessorOf(group: RingGroup): RingMember {
  return group.ring[(group.rank - 1 + group.world) % group.world]!;
}

/** "worker w2 (127.0.0.1:7071, rank 2)": how errors name a peer. */
export function describeMember(group: RingGroup, member: RingMember, address = member.address): string {
  return `worker ${member.workerId} (${address}, rank ${group.ring.indexOf(member)})`;
}

export function validateGroup(group: RingGroup, workerId: string): void {
  const where = `ring of generation ${group.generation}`;
  if (!Number.isSafeInteger(group.generation) || group.generation < 0)
    throw new InputError(where, 'bad generation number', { found: String(group.generation) });
  if (group.world < 1 || group.ring.length !== group.world)
    throw new InputError(where, 'ring size does not match the world size', { expected: String(group.world), found: String(group.ring.length) });
  if (!Number.isInteger(group.rank) || group.rank < 0 || group.rank >= group.world)
    throw new InputError(where, 'rank outside the ring', { found: String(group.rank) });
  if (group.ring[group.rank]!.workerId !== workerId)
    throw new InputError(where, `rank ${group.rank} is not this worker`, { expected: workerId, found: group.ring[group.rank]!.workerId });
  if (new Set(group.ring.map((m) => m.workerId)).size !== group.world) throw new InputError(where, 'a worker id appears twice in the ring');
  if (group.world > 1 && group.sessionKey.length === 0) throw new InputError(where, 'empty session key');
}

export function validateCollectiveOptions(options: CollectiveOptions): void {
  const positiveInteger = (name: keyof CollectiveOptions, value: number, min = 1) => {
    if (!Number.isSafeInteger(value) || value < min)
      throw new InputError(`collective.${name}`, 'not a usable value', { expected: `an integer >= ${min}`, found: String(value) });
  };
  positiveInteger('bucketBytes', options.bucketBytes, 4);
  positiveInteger('chunkBytes', options.chunkBytes, 4);
  positiveInteger('streams', options.streams);
  positiveInteger('timeoutMs', options.timeoutMs);
  positiveInteger('maxMessageBytes', options.maxMessageBytes);
  if (options.chunkBytes > 0xffffffff) throw new InputError('collective.chunkBytes', 'too large for a frame', { expected: 'at most 4 GiB - 1' });
  if (options.chunkBytes + CHUNK_ENVELOPE_BYTES > options.maxMessageBytes) {
    throw new InputError('collective.chunkBytes', 'chunks would exceed the message limit that peers accept', {
      expected: `at most maxMessageBytes - ${CHUNK_ENVELOPE_BYTES} = ${options.maxMessageBytes - CHUNK_ENVELOPE_BYTES}`,
      found: String(options.chunkBytes),
    });
  }
}
