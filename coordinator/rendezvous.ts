import { randomBytes } from 'node:crypto';
import type { RendezvousReply } from '../shared/proto/generated/autoprune/v1/RendezvousReply.js';
import { nextGeneration } from './decisions.js';
import type { WorkerRecord } from './membership.js';

/**
 * Forms generations: once every worker the coordinator expects is waiting, they become the next
 * generation, in ring order (registration order), with a fresh session key that their collectives
 * authenticate with. The generation number only grows; anything tagged with an older one is stale and is
 * refused. How many to wait for is the coordinator's call (all live workers, up to the maximum), asked
 * afresh whenever someone arrives or leaves.
 */

export interface Generation {
  readonly number: number;
  /** Ring order: index = rank. */
  readonly members: readonly WorkerRecord[];
  readonly sessionKey: Buffer;
}

interface Waiter {
  readonly worker: WorkerRecord;
  readonly resolve: (g: Generation) => void;
  readonly reject: (e: Error) => void;
}

export class Rendezvous {
  private latest: Generation | undefined;
  private readonly waiting = new Map<string, Waiter>();

  /**
   * `expected()`: how many waiting workers make a generation now. `after`: the last generation number
   * already used (a resumed run continues the numbering, so that its predecessor's workers stay fenced out).
   */
  constructor(
    private readonly expected: () => number,
    private readonly after = 0,
  ) {}

  get current(): Generation | undefined {
    return this.latest;
  }

  get generation(): number {
    return this.latest?.number ?? this.after;
  }

  get waitingCount(): number {
    return this.waiting.size;
  }

  /** Waits for the next generation that includes `worker`. */
  join(worker: WorkerRecord): Promise<Generation> {
    const promise = new Promise<Generation>((resolve, reject) => {
      this.waiting.get(worker.id)?.reject(new Error(`worker ${worker.id} joined the rendezvous again`));
      this.waiting.set(worker.id, { worker, resolve, reject });
    });
    this.check();
    return promise;
  }

  /** A worker is gone: it no longer waits, and the others may now be enough. */
  leave(workerId: string, reason: string): void {
    this.waiting.get(workerId)?.reject(new Error(reason));
    this.waiting.delete(workerId);
    this.check();
  }

  /** Forms the generation if the expected number of workers now wait. */
  check(): void {
    const expected = this.expected();
    if (expected > 0 && this.waiting.size >= expected) this.form();
  }

  /** Forms the generation from whoever waits now, fewer than expected (an elastic start). */
  formWithWaiting(): void {
    if (this.waiting.size > 0) this.form();
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
    const generation: Generation = { number: nextGeneration(this.generation), members, sessionKey: randomBytes(32) };
    this.latest = generation;
    const waiters = [...this.waiting.values()];
    this.waiting.clear();
    for (const { resolve } of waiters) resolve(generation);
  }
}

/** What a worker learns of the generation it joined: its number, the worker's rank, the ring and the session key. */
export function rendezvousReply(generation: Generation, workerId: string): RendezvousReply {
  return {
    generation: generation.number,
    rank: generation.members.findIndex((m) => m.id === workerId),
    worldSize: generation.members.length,
    ring: generation.members.map((m) => ({ workerId: m.id, address: m.address, dataAddress: m.dataAddress })),
    sessionKey: generation.sessionKey,
  };
}
