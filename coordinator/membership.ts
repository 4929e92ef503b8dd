/**
 * Who is in the run: registered workers, their addresses and when each was last heard from. The
 * coordinator's heartbeat monitor asks for the silent ones.
 */

export interface WorkerCapabilities {
  readonly hostname: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly engineVersion: string;
}

export interface WorkerRecord {
  readonly id: string;
  /** host:port of its Collective and Health services. */
  readonly address: string;
  /** host:port of its bulk-data listener. */
  readonly dataAddress: string;
  readonly capabilities: WorkerCapabilities;
  /** Registration order: the ring follows it. */
  readonly order: number;
  /** The backend it trains on, once it has reached the rendezvous. */
  backend?: string;
}

export class Membership {
  private readonly workers = new Map<string, WorkerRecord>();
  private readonly lastSeen = new Map<string, number>();
  private joined = 0;

  add(worker: Omit<WorkerRecord, 'order'>, now: number): WorkerRecord {
    const record = { ...worker, order: this.joined++ };
    this.workers.set(worker.id, record);
    this.lastSeen.set(worker.id, now);
    return record;
  }

  get(id: string): WorkerRecord | undefined {
    return this.workers.get(id);
  }

  remove(id: string): void {
    this.workers.delete(id);
    this.lastSeen.delete(id);
  }

  touch(id: string, now: number): void {
    if (this.workers.has(id)) this.lastSeen.set(id, now);
  }

  get size(): number {
    return this.workers.size;
  }

  /** Workers not heard from for longer than `timeoutMs`, with how long they have been silent. */
  silent(now: number, timeoutMs: number): Array<{ worker: WorkerRecord; silentMs: number }> {
    const out: Array<{ worker: WorkerRecord; silentMs: number }> = [];
    for (const [id, seen] of this.lastSeen) if (now - seen > timeoutMs) out.push({ worker: this.workers.get(id)!, silentMs: now - seen });
    return out;
  }
}
