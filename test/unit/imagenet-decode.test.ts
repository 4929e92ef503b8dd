import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { DecodeError, decodeCrop, decodeImage } from '../../engine/data/imagenet/decode.js';
import { readImageSize } from '../../engine/data/imagenet/image-size.js';
import { photoLikeJpeg } from '../../engine/data/imagenet/photo-like.js';
import { evalCrop, evalResizeSide, type SampleCrop, TRAIN_RATIO, trainCrop } from '../../engine/data/imagenet/transforms.js';
import { imagenetMiniFixture } from '../helpers/imagenet-images.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * The ImageNet transforms and decoder: crops are pure functions within the image, the evaluation crop is
 * torchvision's, decoded pixels match torchvision on Pillow (test/fixtures/imagenet-decode, written by its
 * make_reference.py), the fixture's odd files come out as RGB, and undecodable input is a DecodeError.
 */

const REFERENCES = resolve('test', 'fixtures', 'imagenet-decode');

describe('ImageNet crops', () => {
  const imageSize = fc.record({ width: fc.integer({ min: 1, max: 5000 }), height: fc.integer({ min: 1, max: 5000 }) });
  const draw = fc.record({ seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }), epoch: fc.nat(1000), sample: fc.nat(2_000_000) });

  it('a training crop is whole pixels within the image, the same for the same (seed, epoch, sample)', () => {
    fc.assert(
      fc.property(draw, imageSize, ({ seed, epoch, sample }, { width, height }) => {
        const crop = trainCrop(seed, epoch, sample, width, height);
        for (const value of [crop.left, crop.top, crop.width, crop.height]) assert.ok(Number.isInteger(value));
        assert.ok(crop.width >= 1 && crop.height >= 1);
        assert.ok(crop.left >= 0 && crop.top >= 0 && crop.left + crop.width <= width && crop.top + crop.height <= height);
        assert.deepEqual(trainCrop(seed, epoch, sample, width, height), crop);
      }),
      { numRuns: 2000 },
    );
  });

  it('a training crop keeps 8-100% of the area at a ratio of 3/4 to 4/3, up to rounding, unless the image is too narrow for any', () => {
    fc.assert(
      fc.property(draw, fc.integer({ min: 200, max: 2000 }), fc.integer({ min: 200, max: 2000 }), ({ seed, epoch, sample }, width, height) => {
        const crop = trainCrop(seed, epoch, sample, width, height);
        const ratio = crop.width / crop.height;
        // Rounding each side to a pixel moves the ratio by at most about one pixel in the shorter side.
        const slack = 1 / Math.min(crop.width, crop.height) + 1e-9;
        const fallback = crop.width === width || crop.height === height;
        assert.ok(fallback || (ratio >= TRAIN_RATIO[0] * (1 - slack) && ratio <= TRAIN_RATIO[1] * (1 + slack)), `ratio ${ratio}`);
        assert.ok(fallback || crop.width * crop.height >= 0.08 * width * height * (1 - 4 * slack), 'area');
      }),
      { numRuns: 2000 },
    );
  });

  it('draws a new crop each epoch and flips about half the samples', () => {
    let moved = 0;
    let flipped = 0;
    for (let sample = 0; sample < 1000; sample++) {
      const first = trainCrop(7, 0, sample, 500, 375);
      const next = trainCrop(7, 1, sample, 500, 375);
      if (first.left !== next.left || first.top !== next.top || first.width !== next.width) moved++;
      if (first.flip) flipped++;
    }
    assert.ok(moved > 990, `${moved} of 1000 crops moved`);
    assert.ok(flipped > 430 && flipped < 570, `${flipped} of 1000 flipped`);
  });

  it('the evaluation crop is Resize(256) then CenterCrop(224), with torchvision rounding', () => {
    // 500x375 resizes to 341x256 (the longer side truncated); (341 - 224) / 2 = 58.5 rounds to 58.
    const box = evalCrop(500, 375);
    assert.equal(box.left, (58 * 500) / 341);
    assert.equal(box.top, (16 * 375) / 256);
    assert.equal(box.width, (224 * 500) / 341);
    assert.equal(box.height, (224 * 375) / 256);
    assert.equal(evalResizeSide(224), 256);
    assert.equal(evalResizeSide(64), 73);
  });

  it('the evaluation crop is centred within the image at every size', () => {
    fc.assert(
      fc.property(imageSize, fc.integer({ min: 8, max: 512 }), ({ width, height }, size) => {
        const box = evalCrop(width, height, size);
        const slack = 1e-9 * Math.max(width, height);
        assert.ok(box.left >= 0 && box.top >= 0 && box.left + box.width <= width + slack && box.top + box.height <= height + slack);
        // Centred to within half a pixel of the resized image.
        assert.ok(Math.abs(box.left + box.width / 2 - width / 2) <= box.width / size / 2 + slack);
        assert.ok(Math.abs(box.top + box.height / 2 - height / 2) <= box.height / size / 2 + slack);
        // The shorter side keeps size/resize of itself.
        const short = width <= height ? box.width / width : box.height / height;
        assert.ok(Math.abs(short - size / evalResizeSide(size)) < 1e-9);
      }),
      { numRuns: 2000 },
    );
  });
});

interface ReferenceCase {
  readonly name: string;
  readonly file: string;
  readonly size: number;
  readonly kind: 'train' | 'eval';
  readonly box?: [number, number, number, number];
  readonly flip?: boolean;
}

/** Largest and mean absolute difference between two byte arrays of one length. */
function difference(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  assert.equal(a.length, b.length);
  let max = 0;
  let total = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    total += d;
    if (d > max) max = d;
  }
  return { max, mean: total / a.length };
}

describe('ImageNet decoding', () => {
  let train: string;
  before(function () {
    const fixture = imagenetMiniFixture();
    if (!fixture) skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
    train = join(fixture, 'folder', 'train');
  });

  /**
   * How close each path comes to Pillow: exact where it resamples itself, a level or two on average where
   * libvips shrinks (its triangle filter is Pillow's, its fixed point is not). A wrong crop, scale or flip
   * differs by tens of levels on average.
   */
  const tolerance: Record<string, { max: number; mean: number }> = {
    'rgb-eval-224': { max: 0, mean: 0 },
    'rgb-train-224-flip': { max: 0, mean: 0 },
    'grey-eval-224': { max: 0, mean: 0 },
    'png-train-224': { max: 0, mean: 0 },
    'rgb-eval-64': { max: 3, mean: 0.5 },
    'rgb-train-64-flip': { max: 10, mean: 0.5 },
    // Shrink-on-load: the JPEG's DCT scaling filters unlike Pillow's triangle, and a training crop's edges
    // move by up to half an output pixel.
    'rgb-train-64-dct': { max: 48, mean: 1.5 },
    'rgb-eval-64-dct': { max: 32, mean: 1.5 },
    // libvips converts CMYK through a CMYK profile, Pillow by a formula: the same picture in other colours.
    'cmyk-eval-64': { max: 160, mean: 30 },
  };
  const cases = (JSON.parse(readFileSync(join(REFERENCES, 'cases.json'), 'utf8')) as { cases: ReferenceCase[] }).cases;

  for (const reference of cases) {
    it(`matches torchvision on Pillow: ${reference.name}`, async () => {
      const bytes = readFileSync(join(train, reference.file));
      const size = readImageSize(bytes)!;
      const crop: SampleCrop =
        reference.kind === 'eval'
          ? { box: evalCrop(size.width, size.height, reference.size), flip: false, clampToBox: false }
          : {
              box: { left: reference.box![0], top: reference.box![1], width: reference.box![2], height: reference.box![3] },
              flip: reference.flip!,
              clampToBox: true,
            };
      const ours = await decodeCrop(bytes, size, crop, reference.size);
      const expected = await sharp(join(REFERENCES, `${reference.name}.png`))
        .removeAlpha()
        .raw()
        .toBuffer();
      const { max, mean } = difference(ours, expected);
      const allowed = tolerance[reference.name]!;
      assert.ok(max <= allowed.max && mean <= allowed.mean, `largest difference ${max}, mean ${mean.toFixed(3)}; allowed ${allowed.max}, ${allowed.mean}`);
    });
  }

  it('gives 3-channel RGB for the CMYK, greyscale and PNG-named-JPEG files of the real set', async () => {
    const odd = { cmyk: 'n01810111/n01810111_0.JPEG', grey: 'n01810111/n01810111_3.JPEG', png: 'n02215279/n02215279_6.JPEG' };
    for (const [kind, file] of Object.entries(odd)) {
      const bytes = readFileSync(join(train, file));
      for (const transform of [{ kind: 'eval', size: 224 } as const, { kind: 'train', size: 224, seed: 3, epoch: 0, sample: 1 } as const]) {
        const pixels = await decodeImage(bytes, transform);
        assert.equal(pixels.length, 224 * 224 * 3, `${kind} ${transform.kind}`);
        const distinct = new Set(pixels);
        assert.ok(distinct.size > 16, `${kind} ${transform.kind}: only ${distinct.size} distinct values`);
        if (kind === 'grey') {
          for (let p = 0; p < pixels.length; p += 3) assert.ok(pixels[p] === pixels[p + 1] && pixels[p] === pixels[p + 2], 'a grey image stays grey');
        }
      }
    }
  });
});

describe('ImageNet decoding of bad input', () => {
  const eval224 = { kind: 'eval', size: 224 } as const;

  async function assertDecodeError(bytes: Uint8Array, fragment?: string) {
    await assert.rejects(decodeImage(bytes, eval224), (error: unknown) => {
      assert.ok(error instanceof DecodeError, `expected a DecodeError, got ${String(error)}`);
      if (fragment) assert.match(error.message, new RegExp(fragment, 'i'));
      return true;
    });
  }

  it('is a DecodeError for bytes that are no image, an empty file and a damaged header', async () => {
    await assertDecodeError(Buffer.from('this is a text file named .JPEG'), 'unsupported image format');
    await assertDecodeError(Buffer.alloc(0));
    const jpeg = await photoLikeJpeg(1, 300, 200);
    await assertDecodeError(jpeg.subarray(0, 300));
  });

  it('is a DecodeError, never a grey or partial image, for a truncated JPEG or PNG', async () => {
    const jpeg = await photoLikeJpeg(2, 500, 375);
    await assertDecodeError(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
    const png = await sharp(await photoLikeJpeg(3, 200, 150))
      .png()
      .toBuffer();
    await assertDecodeError(png.subarray(0, Math.floor(png.length * 0.6)));
  });

  it('is a DecodeError for a JPEG whose entropy-coded data was overwritten', async () => {
    const jpeg = Buffer.from(await photoLikeJpeg(4, 500, 375));
    jpeg.fill(0xff, Math.floor(jpeg.length / 2), Math.floor(jpeg.length / 2) + 2000);
    await assertDecodeError(jpeg);
  });
});
