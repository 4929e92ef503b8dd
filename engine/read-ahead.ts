/**
 * Reads ahead of the steps: which samples each coming step trains on is a pure function of the step, so
 * their reads can start while the current step trains. `reads` yields the reads in the order the steps
 * take them and starts each when it is pulled; at most `depth` beyond the one a step waits for are pulled
 * (in flight or ready), which bounds the memory that ready batches hold.
 */
export class ReadAhead<T> {
  private readonly pending: Promise<T>[] = [];
  private exhausted = false;

  constructor(
    private readonly reads: Iterator<Promise<T>>,
    private readonly depth: number,
  ) {
    if (!Number.isInteger(depth) || depth < 0) throw new RangeError(`read-ahead depth ${depth} is not a whole number ≥ 0`);
  }

  /** The next read's result and how long, in milliseconds, the caller waited for it; undefined when none is left. */
  async next(): Promise<{ value: T; waitedMs: number } | undefined> {
    if (this.pending.length === 0) this.pull();
    const head = this.pending.shift();
    if (head === undefined) return undefined;
    while (this.pending.length < this.depth && this.pull()) {}
    const started = performance.now();
    const value = await head;
    return { value, waitedMs: performance.now() - started };
  }

  private pull(): boolean {
    if (this.exhausted) return false;
    const item = this.reads.next();
    if (item.done) {
      this.exhausted = true;
      return false;
    }
    // A read that no step waits for (the segment broke off first) must not surface as an unhandled
    // rejection; a step that does wait for it still gets its error.
    item.value.catch(() => undefined);
    this.pending.push(item.value);
    return true;
  }
}
