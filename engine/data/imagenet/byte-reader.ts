/**
 * Exact-length reads from a stream of chunks (a file read stream, or a gunzip stream after one), so that a
 * sequential parser can ask for "the next 12 bytes" without caring where the chunks end.
 */
export class ByteReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Bytes handed out or skipped so far: the stream offset of the next byte read. */
  position = 0;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** The next `count` bytes, or fewer only where the stream ends first (then all that was left). */
  async read(count: number): Promise<Buffer> {
    await this.fill(count);
    const length = Math.min(count, this.buffered);
    const out = this.take(length);
    this.position += length;
    return out;
  }

  /** Skips up to `count` bytes; returns how many there were. */
  async skip(count: number): Promise<number> {
    let skipped = 0;
    while (skipped < count) {
      await this.fill(1);
      if (this.buffered === 0) break;
      const step = Math.min(count - skipped, this.buffered);
      this.take(step);
      skipped += step;
    }
    this.position += skipped;
    return skipped;
  }

  /** Whether the stream has no byte left. */
  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buffered === 0;
  }

  private async fill(count: number): Promise<void> {
    while (this.buffered < count && !this.ended) {
      const next = await this.source.next();
      if (next.done) this.ended = true;
      else if (next.value.length > 0) {
        this.chunks.push(next.value);
        this.buffered += next.value.length;
      }
    }
  }

  /** Removes `length` buffered bytes from the front; copies only when they span chunks. */
  private take(length: number): Buffer {
    this.buffered -= length;
    const first = this.chunks[0];
    if (first !== undefined && first.length >= length) {
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
      return first.subarray(0, length);
    }
    const out = Buffer.allocUnsafe(length);
    let written = 0;
    while (written < length) {
      const chunk = this.chunks[0]!;
      const step = Math.min(length - written, chunk.length);
      chunk.copy(out, written, 0, step);
      written += step;
      if (step === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(step);
    }
    return out;
  }
}
