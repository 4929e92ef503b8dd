import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ChunkSink, ChunkTag } from '../../collective/chunk.js';
import { RefusalError } from '../../collective/errors.js';
import { addFloat16, copyFloat16, encodeFloat16 } from '../../collective/float16.js';
import { landingSink } from '../../collective/landing.js';
import { chunkCount, planBuckets, receivedSegment, segmentRange, sentSegment } from '../../collective/plan.js';
import { ReduceKernels } from '../../collective/simd.js';
import { CHUNK_HEADER_BYTES, encodeChunkHeader, FrameReader } from '../../collective/tcp-frames.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../shared/safetensors.js';

/** Cuts `bytes` into pieces at the given points, each piece a view at an odd place in a larger buffer. */
function piecesOf(bytes: Uint8Array, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const edges = [0, ...points, bytes.length];
  const pieces: Buffer[] = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    if (edges[i] === edges[i + 1]) continue;
    const padded = Buffer.alloc(edges[i + 1]! - edges[i]! + 3);
    padded.set(bytes.subarray(edges[i], edges[i + 1]), 1 + (i % 3));
    pieces.push(padded.subarray(1 + (i % 3), 1 + (i % 3) + edges[i + 1]! - edges[i]!));
  }
  return pieces;
}

describe('collective: bucket plan', () => {
  it('covers every element of every array exactly once, within the bucket size', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 12 }), fc.integer({ min: 1, max: 100 }), (sizes, bucketElements) => {
        const buckets = planBuckets(sizes, bucketElements);
        const seen = sizes.map((size) => new Uint8Array(size));
        for (const bucket of buckets) {
          assert.ok(bucket.elements >= 1 && bucket.elements <= bucketElements);
          let filled = 0;
          for (const piece of bucket.pieces) {
            assert.equal(piece.bucketOffset, filled, 'pieces are contiguous in the bucket');
            filled += piece.length;
            for (let i = 0; i < piece.length; i++) seen[piece.array]![piece.arrayOffset + i]!++;
          }
          assert.equal(filled, bucket.elements);
        }
        seen.forEach((counts) => assert.ok(counts.every((count) => count === 1)));
        assert.deepEqual(planBuckets(sizes, bucketElements), buckets, 'deterministic');
      }),
    );
  });

  it('fuses small arrays and gives each slice of a large array its own bucket', () => {
    const buckets = planBuckets([3, 0, 4, 25, 1], 10);
    assert.deepEqual(
      buckets.map((bucket) => bucket.pieces.map((piece) => [piece.array, piece.arrayOffset, piece.length])),
      [
        [
          [0, 0, 3],
          [2, 0, 4],
        ],
        [[3, 0, 9]],
        [[3, 9, 8]],
        [[3, 17, 8]],
        [[4, 0, 1]],
      ],
    );
  });

  it('partitions a bucket into N segments, also when it has fewer elements than ranks', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 9 }), (elements, parts) => {
        let next = 0;
        for (let index = 0; index < parts; index++) {
          const { start, end } = segmentRange(elements, parts, index);
          assert.equal(start, next);
          assert.ok(end - start === Math.floor(elements / parts) || end - start === Math.ceil(elements / parts));
          next = end;
        }
        assert.equal(next, elements);
      }),
    );
    assert.equal(chunkCount(0, 4), 0);
    assert.equal(chunkCount(9, 4), 3);
  });

  it('schedules each rank to forward what it received in the previous round, owning segment r + 1', () => {
    for (const world of [2, 3, 4, 5]) {
      for (let rank = 0; rank < world; rank++) {
        const predecessor = (rank - 1 + world) % world;
        for (let round = 0; round < 2 * (world - 1); round++) {
          assert.equal(receivedSegment(rank, world, round), sentSegment(predecessor, world, round), 'receives what the predecessor sends');
          if (round > 0) assert.equal(sentSegment(rank, world, round), receivedSegment(rank, world, round - 1));
        }
        assert.equal(receivedSegment(rank, world, world - 2), (rank + 1) % world, 'owns segment r + 1 after the reduce-scatter');
      }
    }
  });
});

describe('collective: float16 conversions', () => {
  it('encodes exactly like the safetensors converter, special values included', () => {
    const specials = [
      0,
      -0,
      1,
      -1,
      65504,
      65519.996,
      65520,
      -65520,
      1e-8,
      2 ** -24,
      2.9802322387695312e-8,
      6.103515625e-5,
      6.1e-5,
      Infinity,
      -Infinity,
      NaN,
      3.4e38,
    ];
    const bits = new Uint32Array(2048);
    fc.assert(
      fc.property(fc.uint32Array({ minLength: 1, maxLength: 2048 }), (random) => {
        bits.set(random);
        const values = new Float32Array(bits.buffer, 0, random.length);
        const encoded = new Uint16Array(values.length);
        encodeFloat16(values, encoded);
        assert.deepEqual(encoded, float32ToFloat16Bits(values));
      }),
    );
    const values = Float32Array.from(specials);
    const encoded = new Uint16Array(values.length);
    encodeFloat16(values, encoded);
    assert.deepEqual(encoded, float32ToFloat16Bits(values));
  });

  it('decodes by table and adds', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const copied = new Float32Array(65536);
    copyFloat16(copied, 0, all);
    const reference = float16BitsToFloat32(all);
    assert.ok(Buffer.from(copied.buffer).equals(Buffer.from(reference.buffer)));
    const sums = new Float32Array(4).fill(1);
    addFloat16(sums, 1, float32ToFloat16Bits(Float32Array.of(0.5, 2.5)));
    assert.deepEqual(Array.from(sums), [1, 1.5, 3.5, 1]);
  });
});

describe('collective: SIMD sums', () => {
  it('adds like a plain loop, from anywhere in memory, any length and offset', () => {
    const kernels = new ReduceKernels(1);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200_000 }), fc.integer({ min: 0, max: 5 }), fc.boolean(), (length, offset, fromReadBuffer) => {
        const target = Float32Array.from({ length: length + offset + 1 }, (_, i) => (i % 11) - 5.5);
        const expected = Float32Array.from(target);
        const readBuffer = kernels.readBuffer(0);
        const values =
          fromReadBuffer && length <= readBuffer.length / 4 ? new Float32Array(readBuffer.buffer, readBuffer.byteOffset, length) : new Float32Array(length);
        values.forEach((_, i) => (values[i] = Math.fround(i * 0.25) - 3));
        for (let i = 0; i < length; i++) expected[offset + i] = Math.fround(expected[offset + i]! + values[i]!);
        kernels.addFloat32(target, offset, values);
        assert.deepEqual(target, expected);
      }),
      { numRuns: 30 },
    );
  });
});

describe('collective: landing payloads', () => {
  const cases = [
    { operation: 'add', encoding: 'float32' },
    { operation: 'copy', encoding: 'float32' },
    { operation: 'add', encoding: 'float16' },
    { operation: 'copy', encoding: 'float16' },
  ] as const;
  for (const { operation, encoding } of cases) {
    it(`${operation === 'add' ? 'adds' : 'copies'} ${encoding} pieces cut anywhere, misaligned included`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 40_000 }), fc.array(fc.nat(), { maxLength: 8 }), (elements, cuts) => {
          const incoming = Float32Array.from({ length: elements }, (_, i) => (i % 13) - 6);
          const payload = encoding === 'float32' ? new Uint8Array(incoming.buffer) : new Uint8Array(float32ToFloat16Bits(incoming).buffer);
          const target = Float32Array.from({ length: elements + 2 }, (_, i) => i % 5);
          const before = Float32Array.from(target);
          let ended = false;
          const sink = landingSink({ target, start: 1, elements, operation, encoding }, new ReduceKernels(0), () => (ended = true));
          for (const piece of piecesOf(payload, cuts)) sink.write(piece);
          sink.end();
          assert.ok(ended);
          assert.equal(target[0], before[0]);
          assert.equal(target[elements + 1], before[elements + 1]);
          for (let i = 0; i < elements; i++) assert.equal(target[1 + i], operation === 'add' ? before[1 + i]! + incoming[i]! : incoming[i]);
        }),
        { numRuns: 40 },
      );
    });
  }

  it('refuses to end a chunk that is short', () => {
    const sink = landingSink({ target: new Float32Array(4), start: 0, elements: 4, operation: 'add', encoding: 'float32' }, new ReduceKernels(0), () => {});
    sink.write(new Uint8Array(6));
    assert.throws(() => sink.end(), /after 1 of 4 elements \(2 stray bytes\)/);
  });
});

describe('collective: TCP frames', () => {
  const tag = (elements: number, offset: number): ChunkTag => ({
    generation: 2 ** 40 + 3,
    sequence: 5,
    step: 2 ** 33,
    bucket: 7,
    round: 1,
    offset,
    elements,
    encoding: 'float32',
  });

  it('parses frames cut at any point, tags and payloads intact', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 12 }), (sizes, cuts) => {
        const frames = sizes.map((elements, index) => {
          const payload = Buffer.from(Float32Array.from({ length: elements }, (_, i) => i + index).buffer);
          return { tag: tag(elements, index * 10_000), payload };
        });
        const stream = Buffer.concat(frames.flatMap(({ tag: t, payload }) => [encodeChunkHeader(t, payload.length), payload]));
        const received: { tag: ChunkTag; payload: Buffer }[] = [];
        const reader = new FrameReader(1 << 20, (t, bytes): ChunkSink => {
          const parts: Buffer[] = [];
          assert.equal(bytes, t.elements * 4);
          return { write: (piece) => parts.push(Buffer.from(piece)), end: () => received.push({ tag: t, payload: Buffer.concat(parts) }) };
        });
        for (const piece of piecesOf(stream, cuts)) reader.push(piece);
        assert.deepEqual(received, frames);
      }),
    );
  });

  it('refuses a frame over the limit from its header, before reading the payload', () => {
    let began = false;
    const reader = new FrameReader(1024, () => {
      began = true;
      return { write: () => {}, end: () => {} };
    });
    const header = encodeChunkHeader(tag(257, 0), 1028);
    assert.throws(
      () => reader.push(header),
      (error: unknown) =>
        error instanceof RefusalError && error.reason === 'too-large' && /frame of 1028 bytes exceeds the limit of 1024 bytes/.test(error.message),
    );
    assert.equal(began, false);
    assert.equal(header.length, CHUNK_HEADER_BYTES);
  });
});
