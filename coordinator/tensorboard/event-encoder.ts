import { join } from 'node:path';
import protobuf from 'protobufjs';
import type { Histogram } from '../../engine/gate-summary.js';
import { PROTO_DIR } from '../../shared/proto/load.js';

/**
 * tensorflow.Event records encoded with protobufjs from proto/tensorboard/event.proto: the file version
 * every event file starts with, scalar and histogram summaries, and the session start a resumed run writes.
 */

/** What TensorBoard expects in the first record of a file: version 2 purges stale steps on a session START only. */
export const FILE_VERSION = 'brain.Event:2';

/** One record's contents, before encoding. */
export type TensorBoardRecord =
  | { readonly kind: 'file-version'; readonly wallTime: number }
  | { readonly kind: 'session-start'; readonly wallTime: number; readonly step: number }
  | { readonly kind: 'scalars'; readonly wallTime: number; readonly step: number; readonly values: readonly ScalarValue[] }
  | { readonly kind: 'histogram'; readonly wallTime: number; readonly step: number; readonly tag: string; readonly histogram: Histogram };

export interface ScalarValue {
  readonly tag: string;
  readonly value: number;
}

/** Encodes records as tensorflow.Event messages; load the .proto once and reuse it. */
export class EventEncoder {
  private readonly event: protobuf.Type;

  constructor() {
    const root = new protobuf.Root();
    root.loadSync(join(PROTO_DIR, 'tensorboard', 'event.proto'));
    this.event = root.lookupType('tensorflow.Event');
  }

  encode(record: TensorBoardRecord): Uint8Array {
    return this.event.encode(this.event.fromObject(eventObject(record))).finish();
  }
}

function eventObject(record: TensorBoardRecord): Record<string, unknown> {
  const { wallTime } = record;
  switch (record.kind) {
    case 'file-version':
      return { wallTime, fileVersion: FILE_VERSION };
    case 'session-start':
      return { wallTime, step: record.step, sessionLog: { status: 'START' } };
    case 'scalars':
      return { wallTime, step: record.step, summary: { value: record.values.map(({ tag, value }) => ({ tag, simpleValue: value })) } };
    case 'histogram': {
      const h = record.histogram;
      const histo = { min: h.min, max: h.max, num: h.num, sum: h.sum, sumSquares: h.sumSquares, bucketLimit: h.bucketLimit, bucket: h.bucket };
      return { wallTime, step: record.step, summary: { value: [{ tag: record.tag, histo }] } };
    }
  }
}
