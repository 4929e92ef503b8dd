import { randomBytes } from 'node:crypto';
import type { WorkerRecord } from './membership.js';

/**
 * Forms generations: once the expected number of workers wait, they become the next generation, in
 * ring order (registration order), with a fresh session key that their collectives authenticate with.
 * The generation number only grows; anything tagged with an older one is stale and is refused.
 */

export interface Generation {
  readonly number: number;
  /** Ring order: index = rank. */
  readonly members: readonly WorkerRecord[];
  readonly sessionKey: Buffer;
}

export class Rendezvous {
  private latest: Generation | undefined;
  private readonly waiting = new Map<string, { worker: WorkerRecord; resolve: (g: Generation) => void; reject: (e: Error) => void }>();

  constructor(private readonly expected: number) {}

  get current(): Generation | undefined {
    return this.latest;
  }

  get generation(): number {
    return this.latest?.number ?? 0;
  }

  /** Waits for the next generation that includes `worker`. */
  join(worker: WorkerRecord): Promise<Generation> {
    const promise = new Promise<Generation>((resolve, reject) => {
      this.waiting.get(worker.id)?.reject(new Error(`worker ${worker.id} joined the rendezvous again`));
      this.waiting.set(worker.id, { worker, resolve, reject });
    });
    if (this.waiting.size >= this.expected) this.form();
    return promise;
  }

  /** Whether `worker` belongs to the current generation. */
  isMember(workerId: string): boolean {
    return this.latest?.members.some((m) => m.id === workerId) ?? false;
  }

  rankOf(workerId: string): number {
    return this.latest?.members.findIndex((m) => m.id === workerId) ?? -1;
  }

  /** Rejects everyone waiting (the run ended). */
  abort(reason: string): void {
    for (const { reject } of this.waiting.values()) reject(new Error(reason));
    this.waiting.clear();
  }

  private form(): void {
    const members = [...this.waiting.values()].map((w) => w.worker).sort((a, b) => a.order - b.order);
    const generation: Generation = { number: this.generation + 1, members, sessionKey: randomBytes(32) };
    this.latest = generation;
    const waiters = [...this.waiting.values()];
    this.waiting.clear();
    for (const { resolve } of waiters) resolve(generation);
  }
}
