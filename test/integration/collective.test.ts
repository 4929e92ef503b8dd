import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { CollectiveError } from '../../collective/all-reducer.js';
import type { CollectiveOptions } from '../../collective/group.js';
import type { ChildReply, ChildRequest } from '../helpers/collective-child.js';
import { firstWrongSum, openRing, patternArrays, type Rank, startRanks, stopRanks, TEST_OPTIONS } from '../helpers/collective-ring.js';

/** Sizes that do not divide by N, empty and one-element arrays, and arrays spanning several buckets. */
const SIZES = [0, 1, 7, 1000, 33_335, 3, 0, 70_001, 2];
/** Small buckets and chunks, so that the sizes above make many of each. */
const SMALL: CollectiveOptions = { ...TEST_OPTIONS, bucketBytes: 64 * 1024, chunkBytes: 16 * 1024 };

function bytesOf(arrays: readonly Float32Array[]): Buffer {
  return Buffer.concat(arrays.map((array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength)));
}

describe('collective: ring all-reduce', () => {
  let ranks: Rank[] = [];
  let generation = 0;

  before(async () => {
    ranks = await startRanks(4);
  });
  after(async () => {
    await stopRanks(ranks);
  });

  for (const transport of ['tcp', 'grpc'] as const) {
    for (const world of [1, 2, 3, 4]) {
      it(`sums exactly over ${transport} with N = ${world}, in place, several all-reduces in a row`, async () => {
        const ring = ranks.slice(0, world);
        const reducers = await openRing(ring, ++generation, { ...SMALL, transport, streams: world === 3 ? 3 : 2 });
        try {
          for (const step of [0, 1, 2]) {
            const arrays = ring.map((_, rank) => patternArrays(rank, SIZES, step));
            // The array objects themselves (the sums must land in them) and a copy of their values.
            const handedIn = arrays.map((mine) => [...mine]);
            const inputs = arrays.map(bytesOf);
            await Promise.all(reducers.map((reducer, rank) => reducer.allReduce(arrays[rank]!, { step })));
            handedIn.forEach((mine, rank) => {
              assert.equal(firstWrongSum(mine, world, step), undefined, `rank ${rank}, step ${step}: the sums, in place in the arrays passed in`);
              assert.ok(world > 1 || bytesOf(mine).equals(inputs[rank]!), 'alone, a rank keeps its values bit for bit');
            });
          }
        } finally {
          await Promise.all(reducers.map((reducer) => reducer.close()));
        }
      });
    }

    it(`handles fewer elements than ranks, a single array and nothing at all over ${transport}`, async () => {
      const reducers = await openRing(ranks, ++generation, { ...SMALL, transport });
      try {
        for (const [step, sizes] of [
          [0, [1]],
          [1, [2, 1]],
          [2, []],
          [3, [0, 0]],
          [4, [5]],
        ] as const) {
          const arrays = ranks.map((_, rank) => patternArrays(rank, sizes, step));
          await Promise.all(reducers.map((reducer, rank) => reducer.allReduce(arrays[rank]!, { step })));
          arrays.forEach((mine, rank) => assert.equal(firstWrongSum(mine, ranks.length, step), undefined, `rank ${rank}, sizes ${sizes}`));
        }
      } finally {
        await Promise.all(reducers.map((reducer) => reducer.close()));
      }
    });

    it(`compresses to fp16 over ${transport}: sums within fp16 tolerance, bitwise identical on every rank`, async () => {
      const reducers = await openRing(ranks, ++generation, { ...SMALL, transport, compression: 'fp16' });
      try {
        const size = 50_003;
        const arrays = ranks.map((_, rank) => [Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.37 + rank * 1.3) * (1 + (i % 5)))]);
        const exact = Float64Array.from({ length: size }, (_, i) => arrays.reduce((sum, mine) => sum + mine[0]![i]!, 0));
        const magnitude = Float64Array.from({ length: size }, (_, i) => arrays.reduce((sum, mine) => sum + Math.abs(mine[0]![i]!), 0));
        await Promise.all(reducers.map((reducer, rank) => reducer.allReduce(arrays[rank]!, { step: 9 })));
        for (let rank = 1; rank < ranks.length; rank++) assert.ok(bytesOf(arrays[rank]!).equals(bytesOf(arrays[0]!)), `rank ${rank} differs from rank 0`);
        // Every hop (N - 1 partial sums sent, then the owner's rounding) is off by at most half an fp16 ulp,
        // 2^-11 of a partial sum, which is at most the sum of magnitudes.
        let rounded = 0;
        for (let i = 0; i < size; i++) {
          const error = Math.abs(arrays[0]![0]![i]! - exact[i]!);
          assert.ok(error <= ranks.length * 2 ** -11 * magnitude[i]!, `element ${i}: ${arrays[0]![0]![i]} against ${exact[i]}`);
          if (error > 0) rounded++;
        }
        assert.ok(rounded > size / 2, 'values went through fp16');
      } finally {
        await Promise.all(reducers.map((reducer) => reducer.close()));
      }
    });
  }

  it('refuses the previous generation once a new one is set, and runs the new one', async () => {
    const ring = ranks.slice(0, 2);
    const old = await openRing(ring, ++generation, SMALL);
    const fresh = await openRing(ring, ++generation, SMALL);
    const error = await old[0]!.allReduce(patternArrays(0, [100], 0), { step: 0 }).catch((e: unknown) => e);
    assert.ok(error instanceof CollectiveError, String(error));
    assert.match(error.message, new RegExp(`generation ${generation - 1} (ended|is over): superseded by generation ${generation}`));
    const arrays = ring.map((_, rank) => patternArrays(rank, [100], 0));
    await Promise.all(fresh.map((reducer, rank) => reducer.allReduce(arrays[rank]!, { step: 0 })));
    assert.equal(firstWrongSum(arrays[1]!, 2, 0), undefined);
    await Promise.all([...old, ...fresh].map((reducer) => reducer.close()));
  });
});

describe('collective: ranks in separate processes', () => {
  const children: ChildProcess[] = [];

  after(() => {
    for (const child of children) child.send({ type: 'exit' } satisfies ChildRequest);
  });

  function nextReply(child: ChildProcess): Promise<ChildReply> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`child exited with ${code}`));
      child.once('exit', onExit);
      child.once('message', (reply: ChildReply) => {
        child.off('exit', onExit);
        resolve(reply);
      });
    });
  }

  it('sums exactly over both transports with three worker processes, identical everywhere', async () => {
    const script = fileURLToPath(new URL('../helpers/collective-child.js', import.meta.url));
    for (let rank = 0; rank < 3; rank++) children.push(fork(script, [`child${rank}`]));
    const members = (await Promise.all(children.map(nextReply))).map((reply) =>
      reply.type === 'ready' ? reply.member : assert.fail(`child did not start: ${JSON.stringify(reply)}`),
    );
    for (const [generation, transport] of [
      [1, 'tcp'],
      [2, 'grpc'],
    ] as const) {
      const sessionKey = randomBytes(32).toString('hex');
      const replies = children.map(nextReply);
      children.forEach((child, rank) =>
        child.send({
          type: 'run',
          generation,
          rank,
          members,
          sessionKey,
          options: { ...SMALL, transport, streams: 2 },
          sizes: SIZES,
          steps: [0, 1],
        } satisfies ChildRequest),
      );
      const results = await Promise.all(replies);
      for (const result of results) {
        assert.equal(result.type, 'done', JSON.stringify(result));
        if (result.type === 'done') assert.equal(result.wrong, undefined, transport);
      }
      assert.equal(new Set(results.map((result) => (result.type === 'done' ? result.digest : ''))).size, 1, 'results differ between ranks');
    }
  });
});
