import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import protobuf from 'protobufjs';
import { EventFile } from '../../coordinator/tensorboard/event-file.js';
import { INITIAL_SUMMARY_STATE, summariesOf } from '../../coordinator/tensorboard/run-summaries.js';
import { isGzipFile, scanRecords } from '../../engine/data/imagenet/tfrecord.js';
import { histogram } from '../../engine/gate-summary.js';
import { validateConfig } from '../../shared/config.js';
import type { RunEvent } from '../../shared/events/types.js';
import { PROTO_DIR } from '../../shared/proto/load.js';
import { frameRecord, maskedCrc32c } from '../../shared/tfrecord-framing.js';

describe('TensorBoard event files', () => {
  it("CRC-32C matches the published test vectors (RFC 3720, B.4), and the mask is TensorFlow's", () => {
    const ascending = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
    assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
    assert.equal(crc32c(ascending), 0x46dd794e);
    assert.equal(crc32c(Buffer.from(ascending).reverse()), 0x113fdb5c);
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    // Masked: rotated right by 15 bits, plus 0xa282ead8 (TensorFlow's crc32c::Mask).
    const crc = 0x8a9136aa;
    assert.equal(maskedCrc32c(Buffer.alloc(32, 0)), (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0);
    const frame = frameRecord(Buffer.from('abc'));
    assert.equal(frame.length, 12 + 3 + 4);
    assert.equal(frame.readBigUInt64LE(0), 3n);
  });

  it('writes framed tensorflow.Event records that decode back: file version first, then summaries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'autoprune-tb-'));
    const file = await EventFile.create(dir, 1000.5);
    file.append([
      { kind: 'session-start', wallTime: 1001, step: 11 },
      {
        kind: 'scalars',
        wallTime: 1002,
        step: 12,
        values: [
          { tag: 'loss/W', value: 0.25 },
          { tag: 'zero', value: 0 },
        ],
      },
      { kind: 'histogram', wallTime: 1003, step: 12, tag: 'M/fc1', histogram: histogram([-1, 0, 0.5, 2], 3) },
    ]);
    await file.flushed();
    assert.match(readdirSync(dir)[0]!, /^events\.out\.tfevents\.1000\./);
    const root = new protobuf.Root();
    root.loadSync(join(PROTO_DIR, 'tensorboard', 'event.proto'));
    const Event = root.lookupType('tensorflow.Event');
    const events: Record<string, unknown>[] = [];
    for await (const record of scanRecords(file.path, await isGzipFile(file.path))) {
      assert.ok('data' in record);
      events.push(Event.toObject(Event.decode(record.data), { longs: Number, enums: String }));
    }
    assert.deepEqual(events[0], { wallTime: 1000.5, fileVersion: 'brain.Event:2' });
    assert.deepEqual(events[1], { wallTime: 1001, step: 11, sessionLog: { status: 'START' } });
    assert.deepEqual(events[2], {
      wallTime: 1002,
      step: 12,
      summary: {
        value: [
          { tag: 'loss/W', simpleValue: 0.25 },
          { tag: 'zero', simpleValue: 0 },
        ],
      },
    });
    const histo = (events[3] as { summary: { value: { histo: Record<string, unknown> }[] } }).summary.value[0]!.histo;
    assert.deepEqual(histo, { min: -1, max: 2, num: 4, sum: 1.5, sumSquares: 5.25, bucketLimit: [0, 1, 2], bucket: [2, 1, 1] });
  });

  it('maps run events to scalars at the global step: a prune step after a dense phase, an evaluation with its layers', () => {
    const config = validateConfig(
      {
        model: { name: 'lenet300' },
        data: { dataset: 'mnist' },
        batchSize: 10,
        phases: [
          { phase: 'dense', steps: 100, weights: { lr: 0.1 } },
          { phase: 'prune', steps: 50, weights: { lr: 0.01 }, aux: { type: 'sgd', lr: { type: 'step', value: 1, gamma: 0.5, every: 10 } } },
        ],
      },
      'test config',
    );
    const time = '2030-01-01T00:00:00.000Z';
    const step: RunEvent = {
      runId: 'r',
      event: 'step',
      seq: 5,
      time,
      data: {
        phase: 'prune',
        phaseIndex: 1,
        step: 20,
        steps: 50,
        loss: 0.5,
        accuracy: 0.9,
        auxLoss: 0.1,
        remaining: 0.25,
        compression: 4,
        imagesPerSecond: 100,
        allReduceSeconds: 0.2,
        workers: 2,
      },
    };
    const after = summariesOf(config, INITIAL_SUMMARY_STATE, step);
    assert.equal(after.state.step, 120);
    const record = after.records[0]!;
    assert.ok(record.kind === 'scalars');
    assert.equal(record.step, 120);
    assert.equal(record.wallTime, Date.parse(time) / 1000);
    const values = Object.fromEntries(record.values.map((v) => [v.tag, v.value]));
    // M's rate halves every 10 steps: step 19 (the last trained, 0-based) is in its second decade.
    assert.deepEqual(values, {
      'loss/W': 0.5,
      'loss/M': 0.1,
      'accuracy/train': 0.9,
      'kept/total': 0.25,
      compression: 4,
      'learning_rate/W': 0.01,
      'learning_rate/M': 0.5,
      'throughput/images_per_second': 100,
      'time/all_reduce_seconds': 0.2,
      workers: 2,
    });
    const layer = (name: string, group: 'conv' | 'fc', kept: number, params: number) => ({
      name,
      group,
      granularity: 'neuron' as const,
      params,
      kept,
      flops: params * 2,
      flopsKept: kept * 2,
      gates: 10,
      gatesOpen: 4,
      histogram: histogram([1, 2], 2),
    });
    const evaluation: RunEvent = {
      runId: 'r',
      event: 'eval',
      seq: 6,
      time,
      data: { phase: 'prune', phaseIndex: 1, step: 20, testAccuracy: 0.8, layers: [layer('conv1', 'conv', 10, 100), layer('fc1', 'fc', 30, 100)] },
    };
    const { records } = summariesOf(config, after.state, evaluation);
    assert.deepEqual(
      records.map((r) => (r.kind === 'scalars' ? Object.fromEntries(r.values.map((v) => [v.tag, v.value])) : r.kind === 'histogram' ? r.tag : r.kind)),
      [
        {
          'accuracy/test': 0.8,
          'kept/layer/conv1': 0.1,
          'kept/layer/fc1': 0.3,
          'kept/group/conv': 0.1,
          'kept/group/fc': 0.3,
          'flops/kept': 0.2,
          'channels_kept/conv1': 4,
          'channels_kept/fc1': 4,
        },
        'M/conv1',
        'M/fc1',
      ],
    );
  });
});
