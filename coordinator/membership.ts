/**
 * Who is in the run: registered workers, their addresses and when each was last heard from. The
 * coordinator's tick decides from those times which are lost.
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

  /** When each worker was last heard from, for the heartbeat decision (decisions.ts, lostWorkers). */
  lastSeenTimes(): ReadonlyMap<string, number> {
    return this.lastSeen;
  }
}
