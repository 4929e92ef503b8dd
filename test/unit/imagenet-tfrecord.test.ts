import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { decodeExample, encodeExample, loadExampleType } from '../../engine/data/imagenet/example.js';
import { isGzipFile, readRecordAt, type ScannedRecord, SequentialRecordReader, scanRecords } from '../../engine/data/imagenet/tfrecord.js';
import { maskedCrc32c } from '../../shared/tfrecord-framing.js';
import { writeTfrecordFile } from '../helpers/imagenet-data.js';
import { imagenetMiniFixture } from '../helpers/imagenet-images.js';
import { skipBecause } from '../helpers/skip.js';

async function scanAll(path: string): Promise<ScannedRecord[]> {
  const records: ScannedRecord[] = [];
  for await (const record of scanRecords(path, await isGzipFile(path))) records.push(record);
  return records;
}

/** Records of distinct sizes and contents, so that a misframed read cannot pass for a right one. */
const payloads = [Buffer.from('first record'), Buffer.alloc(70_000, 7), Buffer.from('third'), Buffer.alloc(0), Buffer.from('last one')];

describe('TFRecord framing', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'autoprune-tfrecord-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("masks the CRC-32C as TensorFlow does: the fixture's records, written by TensorFlow, all verify", async function () {
    const fixture = imagenetMiniFixture();
    if (!fixture) skipBecause(this, 'the shared ImageNet fixture (../shared/fixtures/imagenet-mini) is not on this machine');
    // CRC-32C of "123456789" is 0xe3069283; masked: rotate right 15, add 0xa282ead8.
    const crc = 0xe3069283;
    assert.equal(maskedCrc32c(Buffer.from('123456789')), (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0);
    const records = await scanAll(join(fixture, 'tfrecord', 'train-00000-of-00002'));
    assert.equal(records.length, 15);
    assert.ok(records.every((record) => 'data' in record));
  });

  for (const gzip of [false, true]) {
    it(`scans every record with its offset, and reads each one back (${gzip ? 'GZIP' : 'uncompressed'})`, async () => {
      const path = join(dir, `plain-${gzip}`);
      const offsets = writeTfrecordFile(path, payloads, { gzip });
      assert.equal(await isGzipFile(path), gzip);
      const records = await scanAll(path);
      assert.deepEqual(
        records.map((record) => ('data' in record ? [record.offset, record.data.toString('hex')] : record)),
        payloads.map((payload, i) => [offsets[i], payload.toString('hex')]),
      );
      const reader = new SequentialRecordReader(path, gzip);
      for (const i of [1, 2, 4]) assert.deepEqual(await reader.recordAt(offsets[i]!, payloads[i]!.length), { data: payloads[i] });
      await reader.close();
      if (!gzip) {
        const handle = await open(path);
        for (const i of [4, 0, 1]) assert.deepEqual(await readRecordAt(handle, offsets[i]!, payloads[i]!.length), { data: payloads[i] });
        await handle.close();
      }
    });
  }

  it('reports a flipped data byte at its record and goes on with the next record', async () => {
    const path = join(dir, 'flipped-data');
    const offsets = writeTfrecordFile(path, payloads);
    const bytes = readFileSync(path);
    bytes[offsets[1]! + 12 + 500]! ^= 0x01;
    writeFileSync(path, bytes);
    const records = await scanAll(path);
    assert.deepEqual(records[1], { offset: offsets[1], bad: "CRC-32C mismatch in the record's data", final: false });
    assert.equal(records.length, payloads.length);
    assert.ok(records.filter((_, i) => i !== 1).every((record) => 'data' in record));
    const handle = await open(path);
    assert.deepEqual(await readRecordAt(handle, offsets[1]!, payloads[1]!.length), { bad: "CRC-32C mismatch in the record's data" });
    await handle.close();
  });

  it('ends the scan at a flipped length byte, since nothing after it can be framed', async () => {
    const path = join(dir, 'flipped-length');
    const offsets = writeTfrecordFile(path, payloads);
    const bytes = readFileSync(path);
    bytes[offsets[2]! + 1]! ^= 0x40;
    writeFileSync(path, bytes);
    const records = await scanAll(path);
    assert.equal(records.length, 3);
    assert.deepEqual(records[2], { offset: offsets[2], bad: "CRC-32C mismatch in the record's length; the rest of the file cannot be framed", final: true });
  });

  it('reports a truncated last record with its offset, plain or GZIP', async () => {
    const plain = join(dir, 'truncated');
    const offsets = writeTfrecordFile(plain, payloads);
    const whole = readFileSync(plain);
    writeFileSync(plain, whole.subarray(0, whole.length - 3));
    const records = await scanAll(plain);
    assert.equal(records.filter((record) => 'data' in record).length, payloads.length - 1);
    assert.deepEqual(records.at(-1), { offset: offsets.at(-1), bad: 'truncated record: 21 of 24 bytes', final: true });

    const gzip = join(dir, 'truncated.gz');
    const compressed = gzipSync(whole);
    writeFileSync(gzip, compressed.subarray(0, compressed.length - 30));
    const fromGzip = await scanAll(gzip);
    const last = fromGzip.at(-1)!;
    assert.ok('bad' in last && last.final, `the last record is bad: ${JSON.stringify(last)}`);
    assert.match(last.bad, /gzip stream is damaged|truncated record/);
    assert.ok(fromGzip.slice(0, -1).every((record) => 'data' in record));
  });

  it('decodes tf.train.Example features from the .proto files, int64 and bytes', () => {
    const type = loadExampleType();
    const features = decodeExample(type, encodeExample(type, { label: 2 ** 40, name: 'n01440764', 'image/encoded': Buffer.from([1, 2, 3]) }));
    assert.deepEqual(features.get('label'), { kind: 'int64', values: [2 ** 40] });
    assert.deepEqual(features.get('image/encoded'), { kind: 'bytes', values: [Buffer.from([1, 2, 3])] });
    assert.equal(features.get('name')?.kind, 'bytes');
    assert.throws(() => decodeExample(type, Buffer.from([0x0a, 0xff, 0xff, 0xff])));
  });
});
