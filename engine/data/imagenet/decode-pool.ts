import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { DecodeError } from './decode.js';
import type { DecodeRequest, DecodeResponse } from './decode-thread.js';
import type { ImageTransform } from './transforms.js';

/**
 * Decoding off the training thread: `size` worker threads (decode-thread.ts) each with at most
 * JOBS_PER_THREAD images in hand, the rest waiting here in order. Encoded bytes go to a thread and pixels
 * come back by transfer, not copy. Results come back in job order; an image that does not decode is a
 * DecodeError in its slot and the others are unaffected. A thread that dies fails every call in flight and
 * every later one with a DecodePoolError, so nothing waits forever.
 *
 * libvips does each decode on the process's libuv thread pool, which the threads share: it has
 * UV_THREADPOOL_SIZE threads (4 unless set when the process starts), so the environment of a process that
 * decodes on more than about three threads needs decodeEnvironment() (decode-environment.ts).
 */

export interface DecodeJob {
  /** Transferred to the decoding thread (and so detached here) when it is a whole ArrayBuffer; copied otherwise. */
  readonly bytes: Uint8Array;
  readonly transform: ImageTransform;
}

export type DecodeResult = Uint8Array | DecodeError;

/** A decoding thread died or the pool was closed: the calls it had cannot be answered. */
export class DecodePoolError extends Error {
  override readonly name = 'DecodePoolError';
}

/** One image decodes on libuv while the thread resamples the other, so neither waits. */
const JOBS_PER_THREAD = 2;
const ENTRY = new URL('./decode-thread.js', import.meta.url);

interface Pending {
  readonly job: DecodeJob;
  readonly settle: (result: DecodeResult) => void;
  readonly fail: (error: Error) => void;
}

interface DecodeThread {
  readonly worker: Worker;
  readonly inHand: Map<number, Pending>;
}

export class DecodePool {
  private readonly threads: DecodeThread[] = [];
  private readonly waiting: Pending[] = [];
  private nextId = 0;
  /** Set once a thread has died or close() was called; every call after fails with it. */
  private broken: DecodePoolError | undefined;

  /** `entry` is the threads' script: decode-thread.js, or in tests one that dies. */
  constructor(
    readonly size: number,
    private readonly entry: URL = ENTRY,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`a decode pool needs a whole number of threads from 1, not ${size}`);
    // Each image is new, so libvips' operation cache would only hold memory (a process-wide setting).
    sharp.cache(false);
    for (let i = 0; i < size; i++) this.threads.push(this.startThread(i));
  }

  decode(jobs: readonly DecodeJob[]): Promise<DecodeResult[]> {
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      const results = new Array<DecodeResult>(jobs.length);
      let remaining = jobs.length;
      if (remaining === 0) resolve(results);
      let failed = false;
      const fail = (error: Error) => {
        if (failed) return;
        failed = true;
        reject(error);
      };
      jobs.forEach((job, index) => {
        const settle = (result: DecodeResult) => {
          results[index] = result;
          if (--remaining === 0 && !failed) resolve(results);
        };
        this.waiting.push({ job, settle, fail });
      });
      this.dispatch();
    });
  }

  /** Ends the threads; calls still in flight fail with a DecodePoolError. */
  async close(): Promise<void> {
    this.breakWith(new DecodePoolError('the decode pool was closed'));
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }

  private startThread(index: number): DecodeThread {
    const thread: DecodeThread = { worker: new Worker(this.entry), inHand: new Map() };
    thread.worker.on('message', (response: DecodeResponse) => this.answer(thread, response));
    thread.worker.on('error', (error: Error) => this.breakWith(new DecodePoolError(`decode thread ${index} crashed: ${error.message}`)));
    thread.worker.on('exit', (code) => this.breakWith(new DecodePoolError(`decode thread ${index} exited with status ${code}`)));
    // An idle thread must not keep the process alive; one with images in hand does (dispatch refs it).
    thread.worker.unref();
    return thread;
  }

  private answer(thread: DecodeThread, response: DecodeResponse): void {
    const pending = thread.inHand.get(response.id);
    if (!pending) return;
    thread.inHand.delete(response.id);
    if (thread.inHand.size === 0) thread.worker.unref();
    if ('pixels' in response) pending.settle(response.pixels);
    else if ('bad' in response) pending.settle(new DecodeError(response.bad));
    else pending.fail(new DecodePoolError(`decoding failed in its thread: ${response.fault}`));
    this.dispatch();
  }

  private dispatch(): void {
    for (const thread of this.threads) {
      while (thread.inHand.size < JOBS_PER_THREAD && this.waiting.length > 0 && !this.broken) {
        const pending = this.waiting.shift()!;
        const id = this.nextId++;
        thread.inHand.set(id, pending);
        if (thread.inHand.size === 1) thread.worker.ref();
        send(thread.worker, id, pending.job);
      }
    }
  }

  private breakWith(error: DecodePoolError): void {
    if (this.broken) return;
    this.broken = error;
    for (const thread of this.threads) {
      for (const pending of thread.inHand.values()) pending.fail(error);
      thread.inHand.clear();
    }
    for (const pending of this.waiting.splice(0)) pending.fail(error);
  }
}

/** Posts a job, moving its bytes when they own their buffer (a file read whole) and copying them otherwise. */
function send(worker: Worker, id: number, { bytes, transform }: DecodeJob): void {
  if (ownsWholeBuffer(bytes)) {
    try {
      worker.postMessage({ id, bytes, transform } satisfies DecodeRequest, [bytes.buffer as ArrayBuffer]);
      return;
    } catch {
      // Memory that cannot be transferred (an external or wasm buffer): copy it as below.
    }
  }
  const copy = new Uint8Array(bytes);
  worker.postMessage({ id, bytes: copy, transform } satisfies DecodeRequest, [copy.buffer]);
}

/** A view over all of a plain ArrayBuffer can be transferred; a slice of a larger one (a record in a shard) cannot. */
function ownsWholeBuffer(bytes: Uint8Array): boolean {
  return bytes.buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
}
