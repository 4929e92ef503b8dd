import assert from 'node:assert/strict';
import fc from 'fast-check';
import { range } from '../../engine/sampling.js';
import { cursorAfter, epochShard, ShardedSampler } from '../../engine/sharding.js';

/** Draws `steps` global batches on every rank; returns, per rank, the samples it took in each epoch. */
function drawEpochs(seed: number, members: Uint32Array, world: number, batchSize: number, steps: number) {
  const size = members.length;
  return Array.from({ length: world }, (_, rank) => {
    const sampler = new ShardedSampler(seed, 'w', members, world, rank);
    const byEpoch = new Map<number, number[]>();
    for (let s = 0; s < steps; s++) {
      const { epoch, offset } = sampler.cursor;
      const { local } = sampler.next(batchSize);
      // The epochs of this rank's positions in the global batch (a batch may straddle two), in order.
      const epochs: number[] = [];
      for (let i = 0; i < batchSize; i++) if (((offset + i) % size) % world === rank) epochs.push(epoch + Math.floor((offset + i) / size));
      assert.equal(epochs.length, local.length);
      local.forEach((sample, i) => (byEpoch.get(epochs[i]!) ?? byEpoch.set(epochs[i]!, []).get(epochs[i]!)!).push(sample));
    }
    return byEpoch;
  });
}

const plans = fc.record({
  seed: fc.nat(1000),
  size: fc.integer({ min: 1, max: 300 }),
  world: fc.integer({ min: 1, max: 8 }),
  epoch: fc.nat(5),
});

describe('shard plan', () => {
  it('gives every sample of an epoch to exactly one rank, balanced within one sample', () => {
    fc.assert(
      fc.property(plans, ({ seed, size, world, epoch }) => {
        const members = range(size);
        const shards = Array.from({ length: world }, (_, rank) => epochShard(seed, 'w', members, epoch, world, rank));
        const all = shards.flatMap((s) => [...s]).sort((a, b) => a - b);
        assert.deepEqual(all, [...members]);
        const sizes = shards.map((s) => s.length);
        assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`);
      }),
    );
  });

  it('is stable under the seed and changes with it', () => {
    const members = range(500);
    assert.deepEqual(epochShard(7, 'w', members, 2, 3, 1), epochShard(7, 'w', members, 2, 3, 1));
    assert.notDeepEqual(epochShard(7, 'w', members, 2, 3, 1), epochShard(8, 'w', members, 2, 3, 1));
    assert.notDeepEqual(epochShard(7, 'w', members, 2, 3, 1), epochShard(7, 'w', members, 3, 3, 1));
  });

  it('resumes mid-epoch from a cursor: the rest of the epoch, repartitioned for any world size', () => {
    fc.assert(
      fc.property(plans, fc.integer({ min: 1, max: 8 }), fc.nat(400), ({ seed, size, epoch }, newWorld, cut) => {
        const members = range(size);
        const offset = cut % (size + 1);
        // The first `offset` positions of the epoch's order (one rank's view of a world of 1) are used up.
        const order = epochShard(seed, 'w', members, epoch, 1, 0);
        const head = new Set(order.subarray(0, offset));
        const rest = Array.from({ length: newWorld }, (_, rank) => [...epochShard(seed, 'w', members, epoch, newWorld, rank, offset)]).flat();
        assert.equal(rest.length, size - offset);
        for (const sample of rest) assert.ok(!head.has(sample), `sample ${sample} used twice`);
        assert.equal(new Set([...head, ...rest]).size, size);
      }),
    );
  });

  it('samplers on all ranks take each global batch exactly once and match the epoch shards', () => {
    fc.assert(
      fc.property(plans, fc.integer({ min: 1, max: 64 }), ({ seed, size, world }, batchSize) => {
        fc.pre(batchSize >= world);
        const members = range(size);
        const steps = Math.ceil((2 * size) / batchSize);
        const reference = new ShardedSampler(seed, 'w', members, 1, 0);
        const samplers = Array.from({ length: world }, (_, rank) => new ShardedSampler(seed, 'w', members, world, rank));
        for (let s = 0; s < steps; s++) {
          const global = [...reference.next(batchSize).local].sort((a, b) => a - b);
          const parts = samplers.map((sampler) => sampler.next(batchSize));
          assert.deepEqual(
            parts.flatMap((p) => [...p.local]).sort((a, b) => a - b),
            global,
          );
          assert.ok(parts.every((p) => p.global === batchSize));
          for (const sampler of samplers) assert.deepEqual(sampler.cursor, reference.cursor);
        }
        assert.deepEqual(reference.cursor, cursorAfter(steps, batchSize, size));
        // Per epoch, what each rank drew is exactly its epoch shard.
        const fullEpochs = Math.floor((steps * batchSize) / size);
        const drawn = drawEpochs(seed, members, world, batchSize, steps);
        for (let epoch = 0; epoch < fullEpochs; epoch++) {
          for (let rank = 0; rank < world; rank++) {
            assert.deepEqual(drawn[rank]!.get(epoch) ?? [], [...epochShard(seed, 'w', members, epoch, world, rank)]);
          }
        }
      }),
    );
  });

  it('continues from a cursor exactly where an uninterrupted sampler would be', () => {
    fc.assert(
      fc.property(plans, fc.integer({ min: 1, max: 50 }), fc.nat(20), ({ seed, size, world }, batchSize, cut) => {
        const members = range(size);
        for (let rank = 0; rank < world; rank++) {
          const straight = new ShardedSampler(seed, 'w', members, world, rank);
          for (let s = 0; s < cut; s++) straight.next(batchSize);
          const resumed = new ShardedSampler(seed, 'w', members, world, rank, cursorAfter(cut, batchSize, size));
          for (let s = 0; s < 3; s++) assert.deepEqual(resumed.next(batchSize), straight.next(batchSize));
        }
      }),
    );
  });

  it('refuses a rank outside the world', () => {
    assert.throws(() => new ShardedSampler(1, 'w', range(10), 2, 2), /rank 2 is not in a world of 2/);
  });
});
