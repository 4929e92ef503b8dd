import type { RefusalReason } from '../shared/rpc/failure.js';

/**
 * Where a worker's heartbeats come from, injected into the agent. A worker process beats from a thread of
 * its own (heartbeat-thread.ts), so that a main thread busy with compute or a long synchronous data load
 * cannot starve them; the in-process worker of `autoprune train` has none (noHeartbeats), since its
 * coordinator does not watch them.
 */

/** What the coordinator answered one heartbeat: the generation it is at and the run's state. */
export interface HeartbeatReplyNews {
  readonly generation: number;
  readonly state: string;
  readonly reason: string;
}

/** What a heartbeat source reports to the agent. */
export type Beat =
  | { readonly kind: 'reply'; readonly reply: HeartbeatReplyNews }
  /** One heartbeat did not get through: the coordinator refused it (reason) or did not answer. */
  | { readonly kind: 'failed'; readonly reason: RefusalReason | undefined; readonly message: string }
  /** The source itself died: the worker can no longer prove it is alive, and must not go on as if it could. */
  | { readonly kind: 'crashed'; readonly message: string };

/** What a registration gives the heartbeats: the credential they present, and how often to beat. */
export interface HeartbeatRegistration {
  readonly credential: string;
  readonly intervalMs: number;
}

export interface HeartbeatSource {
  /** Beats for this registration from now on, in generation 0 (again after a re-registration, with its new credential). */
  beatFor(registration: HeartbeatRegistration): void;
  /** The generation the worker is in now: every later heartbeat names it. */
  enterGeneration(generation: number): void;
  /** Stops beating and releases what the source holds; nothing is reported after. */
  close(): Promise<void>;
}

/** Starts a worker's heartbeat source; every reply, failure or crash goes to `report`. */
export type HeartbeatsFactory = (report: (beat: Beat) => void) => HeartbeatSource;

/** No heartbeats: the worker of a coordinator that does not watch them (`autoprune train`, watchHeartbeats false). */
export const noHeartbeats: HeartbeatsFactory = () => ({
  beatFor: () => {},
  enterGeneration: () => {},
  close: async () => {},
});
