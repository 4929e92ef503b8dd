import { randomBytes } from 'node:crypto';
import { AllReducer } from '../../collective/all-reducer.js';
import type { CollectiveOptions, RingGroup, RingMember } from '../../collective/group.js';
import { type BulkListener, CollectiveEndpoint, collectiveService, startBulkListener } from '../../collective/index.js';
import { serverCredentials, type TlsMaterial } from '../../shared/rpc/security.js';
import { type RunningServer, startServer } from '../../shared/rpc/server.js';

/**
 * Ranks of a ring on loopback, as a worker process would run them: an endpoint, a gRPC server with the
 * Collective service, and a bulk TCP listener each. Several ranks may live in one process (tests) or
 * one per process (the child-process test, the benchmark).
 */

export interface Rank {
  readonly endpoint: CollectiveEndpoint;
  readonly server: RunningServer;
  readonly bulk: BulkListener;
  readonly member: RingMember;
}

export const TEST_OPTIONS: CollectiveOptions = {
  transport: 'tcp',
  bucketBytes: 4 << 20,
  chunkBytes: 1 << 20,
  streams: 1,
  compression: 'none',
  timeoutMs: 10_000,
  maxMessageBytes: 64 << 20,
};

export async function startRank(workerId: string, limits: { maxMessageBytes?: number; tls?: TlsMaterial } = {}): Promise<Rank> {
  const maxMessageBytes = limits.maxMessageBytes ?? TEST_OPTIONS.maxMessageBytes;
  const endpoint = new CollectiveEndpoint({ workerId });
  const server = await startServer({
    bind: '127.0.0.1:0',
    credentials: serverCredentials(limits.tls),
    maxMessageBytes,
    services: [collectiveService(endpoint)],
  });
  const bulk = await startBulkListener(endpoint, { bind: '127.0.0.1:0', maxFrameBytes: maxMessageBytes, ...(limits.tls ? { tls: limits.tls } : {}) });
  return { endpoint, server, bulk, member: { workerId, address: `127.0.0.1:${server.port}`, dataAddress: `127.0.0.1:${bulk.port}` } };
}

export async function startRanks(count: number, limits: { maxMessageBytes?: number; tls?: TlsMaterial } = {}): Promise<Rank[]> {
  return Promise.all(Array.from({ length: count }, (_, rank) => startRank(`w${rank}`, limits)));
}

export function groupOf(members: readonly RingMember[], rank: number, generation: number, sessionKey: Uint8Array): RingGroup {
  return { generation, rank, world: members.length, ring: members, sessionKey };
}

/** Puts every rank in a new generation and opens their all-reducers (in parallel, as workers would). */
export async function openRing(ranks: readonly Rank[], generation: number, options: CollectiveOptions, tls?: TlsMaterial): Promise<AllReducer[]> {
  const sessionKey = randomBytes(32);
  const members = ranks.map((rank) => rank.member);
  const groups = ranks.map((_, rank) => groupOf(members, rank, generation, sessionKey));
  ranks.forEach((rank, index) => rank.endpoint.setGroup(groups[index]!));
  return Promise.all(ranks.map((rank, index) => AllReducer.open(rank.endpoint, groups[index]!, options, tls)));
}

export async function stopRanks(ranks: readonly Rank[]): Promise<void> {
  await Promise.all(ranks.map(async (rank) => Promise.all([rank.server.close(100), rank.bulk.close()])));
}

/** Small integers, different per rank, array, element and step: their sums are exact in float32. */
export function patternValue(rank: number, array: number, index: number, step: number): number {
  return ((index * 7 + array * 3 + rank * 5 + step) % 17) - 8;
}

export function patternArrays(rank: number, sizes: readonly number[], step: number): Float32Array[] {
  return sizes.map((size, array) => Float32Array.from({ length: size }, (_, index) => patternValue(rank, array, index, step)));
}

/** The first element (if any) where `arrays` differ from the sum of every rank's pattern. */
export function firstWrongSum(arrays: readonly Float32Array[], world: number, step: number): string | undefined {
  for (let array = 0; array < arrays.length; array++) {
    const values = arrays[array]!;
    for (let index = 0; index < values.length; index++) {
      let expected = 0;
      for (let rank = 0; rank < world; rank++) expected += patternValue(rank, array, index, step);
      if (values[index] !== expected) return `array ${array} element ${index}: ${values[index]} instead of ${expected}`;
    }
  }
  return undefined;
}
