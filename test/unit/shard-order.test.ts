import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { StoredShard } from '../../engine/data/source.js';
import { type AuditEntry, auditSamples, samplesOutsideOwnShards } from '../../engine/sample-audit.js';
import { range, splitTrainingSet } from '../../engine/sampling.js';
import { interleavedOrder, membersByShard, SHARD_BALANCE_TOLERANCE, shardLookup, shardOwners } from '../../engine/shard-order.js';
import { cursorAfter, epochShard, evaluationShare, ShardedSampler } from '../../engine/sharding.js';

/** Shards of the given sizes, one after another from sample 0. */
function shardsOf(sizes: readonly number[]): StoredShard[] {
  let first = 0;
  return sizes.map((count) => {
    const shard = { first, count };
    first += count;
    return shard;
  });
}

const total = (shards: readonly StoredShard[]) => shards.reduce((sum, s) => sum + s.count, 0);

/** Layouts of 1..12 shards of 1..40 samples, a seed, and a world size. */
const layouts = fc.record({
  sizes: fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }),
  seed: fc.nat(1000),
  world: fc.integer({ min: 1, max: 6 }),
});

describe('shard order (samples stored in shards)', () => {
  it('orders every member of an epoch once, each shard front to back from a rotated start', () => {
    fc.assert(
      fc.property(layouts, fc.nat(4), ({ sizes, seed }, epoch) => {
        const shards = shardsOf(sizes);
        const members = splitTrainingSet(seed, total(shards)).weight;
        const byShard = membersByShard(members, shards);
        const order = interleavedOrder(seed, 'w', epoch, byShard);
        assert.deepEqual(
          [...order].sort((a, b) => a - b),
          [...members],
        );
        const shardOf = shardLookup(shards);
        for (const [s, own] of byShard.entries()) {
          const seen = [...order].filter((sample) => shardOf(sample) === s);
          // File order, rotated: at most one step back (the wrap to the shard's start).
          const wraps = seen.filter((sample, i) => i > 0 && sample < seen[i - 1]!).length;
          assert.ok(wraps <= 1, `shard ${s} is read out of order: ${seen}`);
          assert.equal(seen.length, own.length);
        }
      }),
    );
  });

  it('is a function of the seed, the stream and the epoch', () => {
    const shards = shardsOf([30, 25, 40, 35]);
    const byShard = membersByShard(range(total(shards)), shards);
    assert.deepEqual(interleavedOrder(4, 'w', 1, byShard), interleavedOrder(4, 'w', 1, byShard));
    assert.notDeepEqual(interleavedOrder(4, 'w', 1, byShard), interleavedOrder(4, 'w', 2, byShard));
    assert.notDeepEqual(interleavedOrder(4, 'w', 1, byShard), interleavedOrder(5, 'w', 1, byShard));
    assert.notDeepEqual(interleavedOrder(4, 'w', 1, byShard), interleavedOrder(4, 'a', 1, byShard));
  });

  it('spreads each shard over the epoch: every batch holds its share of each shard, within two samples', () => {
    const shards = shardsOf([100, 60, 140, 100]);
    const byShard = membersByShard(range(total(shards)), shards);
    const order = interleavedOrder(9, 'w', 0, byShard);
    const shardOf = shardLookup(shards);
    const batch = 40;
    for (let start = 0; start + batch <= order.length; start += batch) {
      const counts = new Array<number>(shards.length).fill(0);
      for (const sample of order.subarray(start, start + batch)) counts[shardOf(sample)]!++;
      for (const [s, shard] of shards.entries()) {
        const expected = (batch * shard.count) / total(shards);
        assert.ok(Math.abs(counts[s]! - expected) <= 2, `batch at ${start}: shard ${s} has ${counts[s]}, expected about ${expected}`);
      }
    }
  });

  it('gives whole shards to ranks when they balance, and none when they cannot', () => {
    assert.deepEqual([...shardOwners(shardsOf([10, 10, 10, 10]), 2)!].sort(), [0, 0, 1, 1]);
    assert.deepEqual([...shardOwners(shardsOf([7]), 1)!], [0]);
    assert.equal(shardOwners(shardsOf([10, 10, 10]), 4), undefined, 'fewer shards than ranks');
    assert.equal(shardOwners(shardsOf([30, 10, 10]), 2), undefined, 'one shard outweighs the rest');
    fc.assert(
      fc.property(layouts, ({ sizes, world }) => {
        const shards = shardsOf(sizes);
        const owners = shardOwners(shards, world);
        if (!owners) return;
        const loads = new Array<number>(world).fill(0);
        for (const [s, shard] of shards.entries()) loads[owners[s]!]! += shard.count;
        assert.ok(Math.max(...loads) <= (total(shards) / world) * (1 + SHARD_BALANCE_TOLERANCE));
      }),
    );
  });
});

describe('shard plan over shards (the sample audit of a sharded set)', () => {
  /** Every rank's batches of `steps` steps from `cursor` in a world of `world`, as sample-log entries. */
  function logged(plan: { seed: number; shards: StoredShard[]; batchSize: number }, generation: number, world: number, from: number, to: number) {
    const split = splitTrainingSet(plan.seed, total(plan.shards));
    const entries: AuditEntry[] = [];
    for (const [kind, members] of [
      ['weight', split.weight],
      ['aux', split.aux],
    ] as const) {
      for (let rank = 0; rank < world; rank++) {
        const cursor = cursorAfter(from, plan.batchSize, members.length);
        const sampler = new ShardedSampler(plan.seed, `0:${kind}`, members, world, rank, cursor, plan.shards);
        for (let step = from; step < to; step++)
          entries.push({ generation, phaseIndex: 0, step, kind, rank, samples: [...sampler.next(plan.batchSize).local] });
      }
    }
    return entries;
  }

  it('takes the same global batch at every world size, each rank from its own shards only', () => {
    const shards = shardsOf([50, 48, 52, 50, 47, 53]);
    const split = splitTrainingSet(2, total(shards));
    const reference = new ShardedSampler(2, 'w', split.weight, 1, 0, undefined, shards);
    const samplers = [2, 3].map((world) =>
      Array.from({ length: world }, (_, rank) => new ShardedSampler(2, 'w', split.weight, world, rank, undefined, shards)),
    );
    for (const ranks of samplers) assert.ok(ranks.every((s) => s.wholeShards));
    const shardOf = shardLookup(shards);
    for (let step = 0; step < 20; step++) {
      const global = [...reference.next(16).local].sort((a, b) => a - b);
      for (const ranks of samplers) {
        const owners = shardOwners(shards, ranks.length)!;
        const parts = ranks.map((s) => s.next(16));
        assert.deepEqual(
          parts.flatMap((p) => [...p.local]).sort((a, b) => a - b),
          global,
        );
        parts.forEach((part, rank) => {
          for (const sample of part.local) assert.equal(owners[shardOf(sample)], rank, `sample ${sample} read by rank ${rank}`);
        });
      }
    }
  });

  it('uses every sample of each half once per epoch across ranks, also after a resume at another world size', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 5, max: 30 }), { minLength: 2, maxLength: 8 }),
        fc.nat(100),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 12 }),
        (sizes, seed, before, after, cut) => {
          const shards = shardsOf(sizes);
          const smallerHalf = Math.floor(total(shards) / 2);
          const batchSize = Math.max(1, Math.min(8, smallerHalf));
          const steps = Math.ceil((3 * smallerHalf) / batchSize);
          const plan = { seed, shards, batchSize };
          const entries = [...logged(plan, 1, before, 0, Math.min(cut, steps)), ...logged(plan, 2, after, Math.min(cut, steps), steps)];
          const audit = auditSamples(entries, { seed, trainSamples: total(shards), batchSize, phases: [{ phase: 'prune', steps }], shards });
          assert.deepEqual(audit, { lost: 0, repeated: 0, wrongSteps: [] });
          assert.equal(samplesOutsideOwnShards(entries, shards), 0);
        },
      ),
    );
  });

  it('hands each epoch to the ranks whole, repartitioned from any offset', () => {
    fc.assert(
      fc.property(layouts, fc.integer({ min: 1, max: 6 }), fc.nat(500), ({ sizes, seed }, newWorld, cut) => {
        const shards = shardsOf(sizes);
        const members = range(total(shards));
        const offset = cut % (members.length + 1);
        const order = epochShard(seed, 'w', members, 0, 1, 0, 0, shards);
        const head = new Set(order.subarray(0, offset));
        const rest = Array.from({ length: newWorld }, (_, rank) => [...epochShard(seed, 'w', members, 0, newWorld, rank, offset, shards)]).flat();
        assert.equal(rest.length, members.length - offset);
        for (const sample of rest) assert.ok(!head.has(sample), `sample ${sample} used twice`);
      }),
    );
  });

  it('reports the epoch of each sample of a batch that straddles two epochs', () => {
    const shards = shardsOf([6, 6]);
    const sampler = new ShardedSampler(1, 'w', range(12), 1, 0, { epoch: 0, offset: 8 }, shards);
    const { local, epochs } = sampler.next(8);
    assert.equal(local.length, 8);
    assert.deepEqual([...epochs], [0, 0, 0, 0, 1, 1, 1, 1]);
  });

  it('shares an evaluation by whole shards when they balance, by sample otherwise', () => {
    const shards = shardsOf([20, 20, 20, 20]);
    const shares = [0, 1].map((rank) => evaluationShare(80, 2, rank, shards));
    assert.deepEqual(
      [...shares[0]!, ...shares[1]!].sort((a, b) => a - b),
      [...range(80)],
    );
    const shardOf = shardLookup(shards);
    for (const [rank, share] of shares.entries()) assert.equal(new Set([...share].map(shardOf)).size, 2, `rank ${rank} reads two whole shards`);
    assert.deepEqual([...evaluationShare(10, 3, 1, shardsOf([10]))], [1, 4, 7]);
    assert.deepEqual([...evaluationShare(10, 3, 1)], [1, 4, 7]);
  });
});
