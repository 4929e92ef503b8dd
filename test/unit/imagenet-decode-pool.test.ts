import assert from 'node:assert/strict';
import { DecodeError, decodeImage } from '../../engine/data/imagenet/decode.js';
import { decodeEnvironment, libuvThreads } from '../../engine/data/imagenet/decode-environment.js';
import { type DecodeJob, DecodePool, DecodePoolError } from '../../engine/data/imagenet/decode-pool.js';
import { photoLikeJpeg } from '../../engine/data/imagenet/photo-like.js';
import type { ImageTransform } from '../../engine/data/imagenet/transforms.js';

/**
 * The decode pool on real threads: results in job order and equal to decoding in place, a bad image a
 * DecodeError in its slot while the pool goes on, bytes moved rather than copied when they own their
 * buffer, and a thread that dies (or a pool closed) failing its calls instead of leaving them waiting.
 */

const DYING_THREAD = new URL('../helpers/dying-decode-thread.js', import.meta.url);

describe('DecodePool', () => {
  let images: Buffer[];
  let pool: DecodePool;

  before(async () => {
    images = await Promise.all([
      photoLikeJpeg(1, 500, 375),
      photoLikeJpeg(2, 375, 500),
      photoLikeJpeg(3, 160, 120),
      photoLikeJpeg(4, 900, 700),
      photoLikeJpeg(5, 240, 240),
      photoLikeJpeg(6, 333, 222),
    ]);
    pool = new DecodePool(2);
  });
  after(() => pool.close());

  const transformOf = (sample: number): ImageTransform =>
    sample % 3 === 0 ? { kind: 'eval', size: 64 } : { kind: 'train', size: 64, seed: 11, epoch: 2, sample };

  it('returns each image decoded as in place, in job order', async () => {
    const jobs: DecodeJob[] = [];
    for (let i = 0; i < 24; i++) jobs.push({ bytes: Buffer.from(images[i % images.length]!), transform: transformOf(i) });
    const expected = await Promise.all(jobs.map((job) => decodeImage(job.bytes, job.transform)));
    const results = await pool.decode(jobs);
    assert.equal(results.length, jobs.length);
    results.forEach((result, i) => {
      assert.ok(result instanceof Uint8Array, `job ${i}: ${String(result)}`);
      assert.deepEqual(result, expected[i], `job ${i}`);
    });
  });

  it('answers a bad image with a DecodeError in its slot and goes on', async () => {
    const jobs: DecodeJob[] = [
      { bytes: Buffer.from(images[0]!), transform: transformOf(1) },
      { bytes: Buffer.from('not an image'), transform: transformOf(2) },
      { bytes: Buffer.from(images[1]!).subarray(0, 4000), transform: transformOf(3) },
      { bytes: Buffer.from(images[2]!), transform: transformOf(4) },
    ];
    const results = await pool.decode(jobs);
    assert.ok(results[0] instanceof Uint8Array && results[3] instanceof Uint8Array);
    assert.ok(results[1] instanceof DecodeError && /unsupported image format/i.test(results[1].message), String(results[1]));
    assert.ok(results[2] instanceof DecodeError, String(results[2]));
    const after = await pool.decode([{ bytes: Buffer.from(images[4]!), transform: transformOf(5) }]);
    assert.equal((after[0] as Uint8Array).length, 64 * 64 * 3);
  });

  it('moves bytes that own their buffer and copies a slice of a larger one, leaving it intact', async () => {
    const owned = new Uint8Array(images[3]!);
    const shard = Buffer.concat([Buffer.alloc(100, 7), images[5]!, Buffer.alloc(100, 9)]);
    const slice = shard.subarray(100, 100 + images[5]!.length);
    const results = await pool.decode([
      { bytes: owned, transform: transformOf(1) },
      { bytes: slice, transform: transformOf(2) },
    ]);
    assert.ok(results.every((result) => result instanceof Uint8Array));
    assert.equal(owned.byteLength, 0, 'the owned bytes were transferred to the thread');
    assert.ok(shard.subarray(100, 100 + images[5]!.length).equals(images[5]!), 'the shard is intact');
  });

  it('keeps many calls at once apart', async () => {
    const calls = Array.from({ length: 6 }, (_, c) =>
      pool.decode(Array.from({ length: 5 }, (_, i) => ({ bytes: Buffer.from(images[(c + i) % 6]!), transform: transformOf(c * 5 + i) }))),
    );
    const results = await Promise.all(calls);
    for (const [c, call] of results.entries()) {
      for (const [i, pixels] of call.entries()) {
        assert.deepEqual(pixels, await decodeImage(images[(c + i) % 6]!, transformOf(c * 5 + i)));
      }
    }
  });

  it('fails the calls in flight and every later one when a thread dies, rather than hanging', async () => {
    const dying = new DecodePool(2, DYING_THREAD);
    try {
      const jobs = images.map((bytes, i) => ({ bytes: Buffer.from(bytes), transform: transformOf(i) }));
      await assert.rejects(dying.decode(jobs), (error: unknown) => error instanceof DecodePoolError && /decode thread \d (crashed|exited)/.test(error.message));
      await assert.rejects(dying.decode(jobs.slice(0, 1)), DecodePoolError);
    } finally {
      await dying.close();
    }
  });

  it('fails the calls in flight when closed', async () => {
    const closing = new DecodePool(1);
    const call = closing.decode(images.map((bytes, i) => ({ bytes: Buffer.from(bytes), transform: transformOf(i) })));
    const failed = assert.rejects(call, (error: unknown) => error instanceof DecodePoolError && /closed/.test(error.message));
    await closing.close();
    await failed;
  });

  it('refuses a size that is not a whole number of threads', () => {
    assert.throws(() => new DecodePool(0), RangeError);
    assert.throws(() => new DecodePool(1.5), RangeError);
  });
});

describe('decodeEnvironment', () => {
  it('sizes libuv for the decoders and file reads, and adds the malloc thresholds once', () => {
    const env = decodeEnvironment(12, { PATH: '/bin' });
    assert.equal(env.UV_THREADPOOL_SIZE, '16');
    assert.equal(env.PATH, '/bin');
    assert.match(env.GLIBC_TUNABLES!, /^glibc\.malloc\.mmap_threshold=16777216:glibc\.malloc\.trim_threshold=67108864$/);
    assert.equal(decodeEnvironment(2, { UV_THREADPOOL_SIZE: '64' }).UV_THREADPOOL_SIZE, '64');
    assert.equal(decodeEnvironment(2, { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2');
    assert.equal(decodeEnvironment(2, { GLIBC_TUNABLES: 'glibc.rtld.nns=2' }).GLIBC_TUNABLES?.split(':').length, 3);
    assert.equal(libuvThreads({}), 4);
    assert.equal(libuvThreads({ UV_THREADPOOL_SIZE: 'many' }), 4);
  });
});
