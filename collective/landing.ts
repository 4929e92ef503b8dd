import { bytesPerElement, type ChunkEncoding, type ChunkSink } from './chunk.js';
import { addFloat16, copyFloat16 } from './float16.js';
import type { ReduceKernels } from './simd.js';

/**
 * Lands a chunk's payload in the accumulation buffer as its pieces arrive: added (reduce-scatter) or
 * copied (all-gather), decoding float16 on the way. float32 copies are plain bytes and may even be read
 * straight into place; otherwise pieces are read in place where their bytes are aligned for the element
 * type and through the kernels' aligned staging area where not, and an element split between two pieces
 * is carried over. float32 sums go through the SIMD kernels.
 */

export type LandingOperation = 'add' | 'copy';

export interface Landing {
  readonly target: Float32Array;
  /** First element of the chunk in `target`. */
  readonly start: number;
  readonly elements: number;
  readonly operation: LandingOperation;
  readonly encoding: ChunkEncoding;
}

export function landingSink(landing: Landing, kernels: ReduceKernels, onEnd: () => void): ChunkSink {
  return landing.operation === 'copy' && landing.encoding === 'float32' ? new CopySink(landing, onEnd) : new DecodingSink(landing, kernels, onEnd);
}

/** float32 all-gather: bytes go where they belong, verbatim. */
class CopySink implements ChunkSink {
  private copied = 0;
  private readonly bytes: number;

  constructor(
    private readonly landing: Landing,
    private readonly onEnd: () => void,
  ) {
    this.bytes = landing.elements * 4;
  }

  write(piece: Uint8Array): void {
    this.directTarget(piece.length).set(piece);
    this.copied += piece.length;
  }

  directTarget(bytes: number): Uint8Array {
    const { target, start } = this.landing;
    return new Uint8Array(target.buffer, target.byteOffset + start * 4 + this.copied, Math.min(bytes, this.bytes - this.copied));
  }

  wroteDirectly(bytes: number): void {
    this.copied += bytes;
  }

  end(): void {
    if (this.copied !== this.bytes) throw new Error(`chunk ended after ${this.copied} of ${this.bytes} bytes`);
    this.onEnd();
  }
}

/** Reduce-scatter additions, and anything float16: whole elements through typed views. */
class DecodingSink implements ChunkSink {
  private readonly unit: number;
  /** Elements landed so far. */
  private landed = 0;
  /** Bytes of an element split between pieces, held in `carry`. */
  private carried = 0;
  private carry: Uint8Array | undefined;

  constructor(
    private readonly landing: Landing,
    private readonly kernels: ReduceKernels,
    private readonly onEnd: () => void,
  ) {
    this.unit = bytesPerElement(landing.encoding);
  }

  write(piece: Uint8Array): void {
    let at = 0;
    if (this.carried > 0) {
      const carry = this.carry!;
      const take = Math.min(this.unit - this.carried, piece.length);
      carry.set(piece.subarray(0, take), this.carried);
      this.carried += take;
      at = take;
      if (this.carried < this.unit) return;
      this.land(this.view(carry.buffer as ArrayBuffer, 0, 1));
      this.carried = 0;
    }
    const whole = Math.floor((piece.length - at) / this.unit);
    if (whole > 0) {
      const address = piece.byteOffset + at;
      if (address % this.unit === 0) {
        this.land(this.view(piece.buffer as ArrayBuffer, address, whole));
      } else {
        // Realigned through the staging area, where the kernels also find it without another copy.
        const staging = this.kernels.staging;
        const block = staging.length / this.unit;
        for (let done = 0; done < whole; done += block) {
          const count = Math.min(block, whole - done);
          const from = at + done * this.unit;
          staging.set(piece.subarray(from, from + count * this.unit));
          this.land(this.view(staging.buffer as ArrayBuffer, staging.byteOffset, count));
        }
      }
      at += whole * this.unit;
    }
    if (at < piece.length) {
      this.carry ??= new Uint8Array(4);
      this.carry.set(piece.subarray(at), 0);
      this.carried = piece.length - at;
    }
  }

  end(): void {
    if (this.landed !== this.landing.elements || this.carried !== 0) {
      throw new Error(`chunk ended after ${this.landed} of ${this.landing.elements} elements (${this.carried} stray bytes)`);
    }
    this.onEnd();
  }

  private view(buffer: ArrayBuffer, byteOffset: number, length: number): Float32Array | Uint16Array {
    return this.landing.encoding === 'float32' ? new Float32Array(buffer, byteOffset, length) : new Uint16Array(buffer, byteOffset, length);
  }

  private land(values: Float32Array | Uint16Array): void {
    const { target, start, operation } = this.landing;
    const offset = start + this.landed;
    if (values instanceof Float32Array) {
      if (operation === 'copy') target.set(values, offset);
      else this.kernels.addFloat32(target, offset, values);
    } else if (operation === 'copy') {
      copyFloat16(target, offset, values);
    } else {
      addFloat16(target, offset, values);
    }
    this.landed += values.length;
  }
}
