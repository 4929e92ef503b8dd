import { randomBytes } from 'node:crypto';
import { appendFile, mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileSystemError } from '../../shared/atomic-file.js';
import { frameRecord } from '../../shared/tfrecord-framing.js';
import { EventEncoder, type TensorBoardRecord } from './event-encoder.js';

/**
 * One TensorBoard event file, appended to in order: TensorBoard's convention of a new file per process
 * start (`events.out.tfevents.<seconds>.<host>.<pid>.<suffix>`), its first record the file version. Records
 * are framed as TFRecords; a process killed mid-write leaves at most a truncated last record, which
 * readers stop at.
 */
export class EventFile {
  private readonly encoder = new EventEncoder();
  private writes: Promise<void> = Promise.resolve();
  private failure: Error | undefined;

  private constructor(readonly path: string) {}

  /** Creates the folder if need be and a new file in it, starting with its file version record. */
  static async create(dir: string, wallTime: number): Promise<EventFile> {
    try {
      await mkdir(dir, { recursive: true });
    } catch (error) {
      throw fileSystemError(dir, 'create the TensorBoard folder', error);
    }
    // TensorBoard's pattern; the last part (TensorFlow's process-wide counter) random, so that names never collide.
    const name = `events.out.tfevents.${Math.floor(wallTime)}.${hostname()}.${process.pid}.${randomBytes(3).toString('hex')}`;
    const file = new EventFile(join(dir, name));
    file.append([{ kind: 'file-version', wallTime }]);
    await file.flushed().catch((error: unknown) => {
      throw fileSystemError(file.path, 'write the TensorBoard event file', error);
    });
    return file;
  }

  /** Queues `records` behind the writes before them; `flushed` tells when they are on disk. */
  append(records: readonly TensorBoardRecord[]): void {
    if (records.length === 0) return;
    const bytes = Buffer.concat(records.map((record) => frameRecord(this.encoder.encode(record))));
    // After a failed write nothing more is written: a record must never follow a gap.
    this.writes = this.writes
      .then(() => (this.failure ? undefined : appendFile(this.path, bytes)))
      .catch((error: Error) => {
        this.failure ??= error;
      });
  }

  /** Resolves once every queued record is written; rejects with the first write's failure. */
  async flushed(): Promise<void> {
    await this.writes;
    if (this.failure) throw this.failure;
  }
}
