import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../shared/errors.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  type NamedTensor,
  readSafetensorsFile,
  type TensorData,
  writeSafetensorsFile,
} from '../../shared/safetensors.js';
import { skipBecause } from '../helpers/skip.js';

const SOURCE = '/models/broken.safetensors';

function bytesOf(data: TensorData): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function assertSameTensor(actual: NamedTensor | undefined, expected: NamedTensor, name: string): void {
  assert.ok(actual, `tensor ${name} missing`);
  assert.equal(actual.dtype, expected.dtype, name);
  assert.deepEqual(actual.shape, expected.shape, name);
  assert.equal(actual.data.constructor, expected.data.constructor, name);
  assert.equal(actual.data.byteOffset % actual.data.BYTES_PER_ELEMENT, 0, `${name} is misaligned`);
  // Byte comparison is bit-exact, NaN payloads and -0 included.
  assert.ok(bytesOf(actual.data).equals(bytesOf(expected.data)), `${name} data differs`);
}

/** A safetensors file with a hand-written header, no padding, and an optionally lying length field. */
function rawFile(header: string | object, data: ArrayLike<number> = [], declaredHeaderBytes?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declaredHeaderBytes ?? BigInt(json.length));
  return Buffer.concat([prefix, json, Buffer.from(Array.from(data))]);
}

function assertRejected(bytes: Buffer, problem: RegExp): void {
  assert.throws(
    () => decodeSafetensors(bytes, SOURCE),
    (error: unknown) => {
      assert.ok(error instanceof InputError, `expected an InputError, got ${String(error)}`);
      assert.ok(error.message.startsWith(SOURCE), `message does not name the file: ${error.message}`);
      assert.match(error.message, problem);
      return true;
    },
  );
}

const EVERY_DTYPE: Record<string, NamedTensor> = {
  f64: { dtype: 'F64', shape: [2, 2], data: new Float64Array([Math.PI, -0, Infinity, NaN]) },
  f32: { dtype: 'F32', shape: [3], data: new Float32Array([1.5, -2.25, 3e38]) },
  f16: { dtype: 'F16', shape: [2], data: float32ToFloat16Bits(new Float32Array([0.5, -65504])) },
  bf16: { dtype: 'BF16', shape: [1], data: new Uint16Array([0x3f80]) },
  i64: { dtype: 'I64', shape: [3], data: new BigInt64Array([-(2n ** 63n), 0n, 2n ** 63n - 1n]) },
  u64: { dtype: 'U64', shape: [1], data: new BigUint64Array([2n ** 64n - 1n]) },
  i32: { dtype: 'I32', shape: [1, 3], data: new Int32Array([-(2 ** 31), 0, 2 ** 31 - 1]) },
  u32: { dtype: 'U32', shape: [1], data: new Uint32Array([2 ** 32 - 1]) },
  i16: { dtype: 'I16', shape: [2], data: new Int16Array([-32768, 32767]) },
  u16: { dtype: 'U16', shape: [1], data: new Uint16Array([65535]) },
  i8: { dtype: 'I8', shape: [2], data: new Int8Array([-128, 127]) },
  u8: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) },
  bool: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
  empty: { dtype: 'F32', shape: [0], data: new Float32Array(0) },
  empty_3d: { dtype: 'I32', shape: [2, 0, 3], data: new Int32Array(0) },
  scalar: { dtype: 'F32', shape: [], data: new Float32Array([42]) },
};

describe('safetensors', () => {
  describe('round trip', () => {
    it('keeps every dtype, empty and 0-d tensors, and metadata', () => {
      const metadata = { format: 'pt', ünïcode: 'çödé ✓' };
      const decoded = decodeSafetensors(encodeSafetensors(EVERY_DTYPE, metadata), SOURCE);
      assert.deepEqual(decoded.metadata, metadata);
      assert.deepEqual([...decoded.tensors.keys()].sort(), Object.keys(EVERY_DTYPE).sort());
      for (const [name, tensor] of Object.entries(EVERY_DTYPE)) assertSameTensor(decoded.tensors.get(name), tensor, name);
    });

    it('encodes no tensors and no metadata to an empty header', () => {
      const bytes = encodeSafetensors(new Map());
      assert.deepEqual([...bytes], [8, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20]);
      const decoded = decodeSafetensors(bytes, SOURCE);
      assert.equal(decoded.tensors.size, 0);
      assert.deepEqual(decoded.metadata, {});
    });

    it('gives the same bytes whatever order the tensors come in', () => {
      const entries = Object.entries(EVERY_DTYPE);
      const forward = encodeSafetensors(new Map(entries), { b: '2', a: '1' });
      const backward = encodeSafetensors(new Map(entries.reverse()), { a: '1', b: '2' });
      assert.ok(forward.equals(backward));
    });

    it('stores tensors in name order, integer-like names included', () => {
      const one = (value: number): NamedTensor => ({ dtype: 'F32', shape: [1], data: new Float32Array([value]) });
      const bytes = encodeSafetensors({ a: one(3), '9': one(2), '10': one(1) });
      const decoded = decodeSafetensors(bytes, SOURCE);
      // Decoded tensors come in file order.
      assert.deepEqual([...decoded.tensors.keys()], ['10', '9', 'a']);
      const header = bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8');
      assert.ok(header.indexOf('"10"') < header.indexOf('"9"') && header.indexOf('"9"') < header.indexOf('"a"'));
    });

    it('encodes typed arrays that view part of a larger buffer', () => {
      const backing = new Float32Array([9, 1, 2, 9]);
      const view = new Float32Array(backing.buffer, 4, 2);
      const decoded = decodeSafetensors(encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: view } }), SOURCE);
      assert.deepEqual([...decoded.tensors.get('w')!.data], [1, 2]);
    });
  });

  it('writes the exact bytes of the format', () => {
    const bytes = encodeSafetensors(
      { b: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) }, a: { dtype: 'F32', shape: [], data: new Float32Array([1.5]) } },
      { fmt: 'pt' },
    );
    // 133 bytes of JSON, padded with 3 spaces to 136 = 0x88 so the data starts 8-byte aligned.
    const json =
      '{"__metadata__":{"fmt":"pt"},' + '"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},' + '"b":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}}';
    const expected = Buffer.concat([
      Buffer.from([0x88, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from(`${json}   `, 'utf8'),
      Buffer.from([0x00, 0x00, 0xc0, 0x3f]), // 1.5 as little-endian float32
      Buffer.from([1, 2, 3]),
    ]);
    assert.equal(bytes.length, 8 + 136 + 7);
    assert.deepEqual([...bytes], [...expected]);
  });

  describe('alignment of decoded data', () => {
    it('copies a tensor whose offset is not a multiple of its element size', () => {
      const bytes = encodeSafetensors({
        a: { dtype: 'U8', shape: [3], data: new Uint8Array([7, 8, 9]) },
        b: { dtype: 'F64', shape: [2], data: new Float64Array([0.25, -1e300]) },
      });
      const decoded = decodeSafetensors(bytes, SOURCE);
      const b = decoded.tensors.get('b')!;
      assert.equal(b.data.byteOffset % 8, 0);
      assert.deepEqual([...b.data], [0.25, -1e300]);
    });

    it('decodes a buffer that starts at an odd offset of its memory', () => {
      const bytes = encodeSafetensors(EVERY_DTYPE);
      const shifted = Buffer.alloc(bytes.length + 1);
      bytes.copy(shifted, 1);
      const decoded = decodeSafetensors(shifted.subarray(1), SOURCE);
      for (const [name, tensor] of Object.entries(EVERY_DTYPE)) assertSameTensor(decoded.tensors.get(name), tensor, name);
    });

    it('reads files from writers that do not pad the header', () => {
      const decoded = decodeSafetensors(rawFile({ x: { dtype: 'I32', shape: [1], data_offsets: [0, 4] } }, [1, 0, 0, 0]), SOURCE);
      assert.deepEqual([...decoded.tensors.get('x')!.data], [1]);
    });
  });

  describe('rejects damaged files with an InputError naming the file', () => {
    const f32 = (offsets: unknown): object => ({ dtype: 'F32', shape: [1], data_offsets: offsets });

    it('file shorter than the length field', () => assertRejected(Buffer.from([1, 0, 0]), /too short/));
    it('header length past the end of the file', () => assertRejected(rawFile('{}', [], 1000n), /past the end of the file/));
    it('absurd header length', () => {
      assertRejected(rawFile('{}', [], 200_000_000n), /implausibly large/);
      assertRejected(rawFile('{}', [], 2n ** 64n - 1n), /implausibly large/);
    });
    it('header with invalid UTF-8 bytes', () => {
      const bytes = Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x7b, 0xff, 0x7d])]);
      assertRejected(bytes, /not valid UTF-8/);
    });
    it('header not JSON', () => assertRejected(rawFile('{"a": '), /not valid JSON/));
    it('empty header', () => assertRejected(rawFile(''), /not valid JSON/));
    it('header not an object', () => {
      assertRejected(rawFile('[1, 2]'), /not a JSON object/);
      assertRejected(rawFile('null'), /not a JSON object/);
    });
    it('tensor entry not an object', () => assertRejected(rawFile({ w: 5 }), /tensor "w": tensor entry is not an object/));
    it('unknown dtype', () => {
      assertRejected(rawFile({ w: { dtype: 'float32', shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /tensor "w": unknown dtype.*"float32"/);
      assertRejected(rawFile({ w: { shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /unknown dtype/);
    });
    it('shape not an array of non-negative integers', () => {
      for (const shape of ['3', [-1], [1.5], ['2'], [null], undefined, [2 ** 53, 2 ** 53]]) {
        assertRejected(rawFile({ w: { dtype: 'F32', shape, data_offsets: [0, 0] } }), /tensor "w": invalid shape/);
      }
    });
    it('malformed data_offsets', () => {
      for (const offsets of [undefined, [0], [0, 4, 8], [4, 0], [-4, 0], [0, '4'], [0.5, 4.5]]) {
        assertRejected(rawFile({ w: f32(offsets) }, [0, 0, 0, 0]), /tensor "w": invalid data_offsets/);
      }
    });
    it('data_offsets not matching shape and dtype', () => {
      assertRejected(rawFile({ w: f32([0, 8]) }, new Array(8).fill(0)), /do not match the shape.*expected 4 bytes.*found 8 bytes/);
      assertRejected(rawFile({ w: { dtype: 'I64', shape: [2, 0], data_offsets: [0, 8] } }, new Array(8).fill(0)), /do not match/);
    });
    it('offsets beyond the byte buffer', () => assertRejected(rawFile({ w: f32([0, 4]) }, [0, 0]), /tensor "w".*past the end of the file/));
    it('overlapping tensors', () => {
      assertRejected(rawFile({ a: f32([0, 4]), b: f32([2, 6]) }, new Array(8).fill(0)), /tensor "b".*overlaps/);
      assertRejected(rawFile({ a: f32([0, 4]), b: f32([0, 4]) }, new Array(4).fill(0)), /overlaps/);
      assertRejected(rawFile({ a: f32([0, 4]), b: { dtype: 'F32', shape: [0], data_offsets: [2, 2] } }, new Array(4).fill(0)), /tensor "b".*overlaps/);
    });
    it('holes in the byte buffer', () => {
      assertRejected(rawFile({ a: f32([0, 4]), b: f32([8, 12]) }, new Array(12).fill(0)), /tensor "b".*hole/);
      assertRejected(rawFile({ a: f32([4, 8]) }, new Array(8).fill(0)), /tensor "a".*hole/);
      assertRejected(rawFile({ a: f32([0, 4]) }, new Array(6).fill(0)), /\(byte \d+\): bytes after the last tensor/);
    });
    it('metadata that is not a map of strings', () => {
      assertRejected(rawFile({ __metadata__: { epoch: 3 } }), /__metadata__: metadata value "epoch" is not a string/);
      assertRejected(rawFile({ __metadata__: ['a'] }), /metadata is not an object/);
    });
  });

  describe('refuses to encode inconsistent tensors', () => {
    it('data length not matching the shape', () => {
      assert.throws(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }), /"w".*4 elements.*3 data/);
    });
    it('data of the wrong typed array for the dtype', () => {
      assert.throws(() => encodeSafetensors({ w: { dtype: 'F32', shape: [1], data: new Int32Array(1) } }), /"w" \(F32\) needs a Float32Array/);
    });
    it('invalid shapes, the reserved name and non-string metadata', () => {
      assert.throws(() => encodeSafetensors({ w: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }), /invalid shape/);
      assert.throws(() => encodeSafetensors({ __metadata__: EVERY_DTYPE.scalar }), /reserved/);
      assert.throws(() => encodeSafetensors({}, { epoch: 3 as unknown as string }), /metadata "epoch" must be a string/);
    });
  });

  describe('files', () => {
    let directory: string;
    beforeEach(async () => {
      directory = await mkdtemp(join(tmpdir(), 'autoprune-safetensors-'));
    });
    afterEach(async () => {
      await rm(directory, { recursive: true, force: true });
    });

    it('writes and reads back a file', async () => {
      const path = join(directory, 'model.safetensors');
      await writeSafetensorsFile(path, new Map(Object.entries(EVERY_DTYPE)), { step: '12' });
      const { tensors, metadata } = await readSafetensorsFile(path);
      assert.deepEqual(metadata, { step: '12' });
      for (const [name, tensor] of Object.entries(EVERY_DTYPE)) assertSameTensor(tensors.get(name), tensor, name);
    });

    it('names the path when the file is missing or damaged', async () => {
      const missing = join(directory, 'missing.safetensors');
      await assert.rejects(readSafetensorsFile(missing), (error: unknown) => {
        assert.ok(error instanceof InputError);
        assert.match(error.message, new RegExp(`^${missing}: cannot read file: .*ENOENT`));
        return true;
      });
      const damaged = join(directory, 'damaged.safetensors');
      await writeFile(damaged, rawFile('{"a": '));
      await assert.rejects(readSafetensorsFile(damaged), (error: unknown) => {
        assert.ok(error instanceof InputError);
        assert.ok(error.message.startsWith(`${damaged}: safetensors header is not valid JSON`), error.message);
        return true;
      });
    });

    it('is readable by the Python safetensors package (skipped when it is not installed)', async function () {
      if (spawnSync('python3', ['-c', 'import safetensors, numpy']).status !== 0) {
        skipBecause(this, 'python3 with the safetensors and numpy packages is not installed');
      }
      const path = join(directory, 'cross.safetensors');
      const halves = float32ToFloat16Bits(new Float32Array([0.5, -1.25, 65504]));
      await writeSafetensorsFile(
        path,
        {
          f32: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1.5, -2, 0.25, 8]) },
          f16: { dtype: 'F16', shape: [3], data: halves },
          f64: { dtype: 'F64', shape: [1], data: new Float64Array([Math.PI]) },
          i64: { dtype: 'I64', shape: [2], data: new BigInt64Array([-5n, 2n ** 40n]) },
          i32: { dtype: 'I32', shape: [1], data: new Int32Array([-7]) },
          u8: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 1, 255]) },
          bool: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
          empty: { dtype: 'F32', shape: [0, 2], data: new Float32Array(0) },
          scalar: { dtype: 'F32', shape: [], data: new Float32Array([3]) },
        },
        { format: 'np', note: 'çödé' },
      );
      const script = [
        'import json, sys',
        'from safetensors import safe_open',
        'out = {}',
        'with safe_open(sys.argv[1], framework="numpy") as f:',
        '    out["__metadata__"] = f.metadata()',
        '    for name in f.keys():',
        '        t = f.get_tensor(name)',
        '        out[name] = [str(t.dtype), list(t.shape), t.tolist()]',
        'print(json.dumps(out))',
      ].join('\n');
      const result = spawnSync('python3', ['-c', script, path], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), {
        __metadata__: { format: 'np', note: 'çödé' },
        f32: [
          'float32',
          [2, 2],
          [
            [1.5, -2],
            [0.25, 8],
          ],
        ],
        f16: ['float16', [3], [0.5, -1.25, 65504]],
        f64: ['float64', [1], [Math.PI]],
        i64: ['int64', [2], [-5, 2 ** 40]],
        i32: ['int32', [1], [-7]],
        u8: ['uint8', [3], [0, 1, 255]],
        bool: ['bool', [2], [true, false]],
        empty: ['float32', [0, 2], []],
        scalar: ['float32', [], 3],
      });
    });
  });

  describe('float16 conversion', () => {
    const toHalf = (value: number): number => float32ToFloat16Bits(new Float32Array([value]))[0];
    const isNaNHalf = (bits: number): boolean => (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;

    it('round-trips every float16 bit pattern exactly (NaNs stay NaN)', () => {
      const all = new Uint16Array(65536).map((_, i) => i);
      const back = float32ToFloat16Bits(float16BitsToFloat32(all));
      for (let bits = 0; bits < 65536; bits++) {
        if (isNaNHalf(bits)) assert.ok(isNaNHalf(back[bits]), `NaN 0x${bits.toString(16)} lost`);
        else if (back[bits] !== bits) assert.fail(`0x${bits.toString(16)} came back as 0x${back[bits].toString(16)}`);
      }
    });

    it('decodes known values', () => {
      assert.deepEqual(
        [...float16BitsToFloat32(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x8000]))],
        [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, Infinity, -Infinity, -0],
      );
      assert.ok(Number.isNaN(float16BitsToFloat32(new Uint16Array([0x7e00]))[0]));
    });

    it('rounds to nearest, ties to even, with overflow to infinity', () => {
      const cases: [number, number][] = [
        [1, 0x3c00],
        [-2, 0xc000],
        [0.1, 0x2e66],
        [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even wins
        [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even wins
        [65504, 0x7bff],
        [65519, 0x7bff],
        [65520, 0x7c00], // tie between the largest half and the next (infinite) step
        [1e10, 0x7c00],
        [-1e10, 0xfc00],
        [2 ** -24, 0x0001],
        [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal
        [2 ** -25 * (1 + 2 ** -23), 0x0001],
        [1023.5 * 2 ** -24, 0x0400], // rounds up from the largest subnormal into the normals
        [1e-10, 0x0000],
        [-0, 0x8000],
        [Infinity, 0x7c00],
        [-Infinity, 0xfc00],
      ];
      for (const [value, bits] of cases) assert.equal(toHalf(value), bits, `${value}`);
      assert.ok(isNaNHalf(toHalf(NaN)));
    });

    it('agrees with numpy on float32 -> float16 (skipped when numpy is missing)', async function () {
      if (spawnSync('python3', ['-c', 'import numpy']).status !== 0) {
        skipBecause(this, 'python3 with numpy is not installed');
      }
      // Deterministic bit patterns: half fully random, half with exponents around float16's range.
      const bits = new Uint32Array(100_000);
      let state = 12345;
      for (let i = 0; i < bits.length; i++) {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        const random = (state ^ Math.imul(state >>> 15, 2654435761)) >>> 0;
        bits[i] = i % 2 === 0 ? random : (random & 0x807fffff) | ((97 + (random % 50)) << 23);
      }
      const values = new Float32Array(bits.buffer);
      const directory = await mkdtemp(join(tmpdir(), 'autoprune-f16-'));
      try {
        const input = join(directory, 'in.f32');
        const output = join(directory, 'out.f16');
        await writeFile(input, Buffer.from(values.buffer));
        const script = 'import numpy, sys\nnumpy.fromfile(sys.argv[1], "<f4").astype("<f2").tofile(sys.argv[2])';
        const result = spawnSync('python3', ['-c', script, input, output], { encoding: 'utf8', timeout: 30_000 });
        assert.equal(result.status, 0, result.stderr);
        const fromNumpy = new Uint16Array(new Uint8Array(await readFile(output)).buffer);
        const ours = float32ToFloat16Bits(values);
        for (let i = 0; i < values.length; i++) {
          if (Number.isNaN(values[i])) assert.ok(isNaNHalf(ours[i]) && isNaNHalf(fromNumpy[i]));
          else if (ours[i] !== fromNumpy[i]) assert.fail(`${values[i]}: ours 0x${ours[i].toString(16)}, numpy 0x${fromNumpy[i].toString(16)}`);
        }
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    });
  });
});
