import type { RingGroup } from '../collective/index.js';
import { type GradientExchange, singleProcess } from '../engine/phase-runner.js';
import type { RunConfig } from '../shared/config.js';

/**
 * How a worker reaches its peers, injected into the agent: where it says it can be reached when it
 * registers, and each generation's gradient exchange. A worker process serves the ring over the network
 * (ring-transports.ts); the worker of `autoprune train` has no peers (soloTransports).
 */
export interface WorkerTransports {
  /** host:port of this worker's Collective service, as it registers it. */
  readonly address: string;
  /** host:port of its bulk-data listener. */
  readonly dataAddress: string;
  /** Joins the ring of a generation, with the run's collective settings. */
  openExchange(group: RingGroup, config: RunConfig): Promise<GenerationExchange>;
  close(): Promise<void>;
}

/** A generation's gradient exchange. */
export interface GenerationExchange {
  readonly exchange: GradientExchange;
  /** Leaves the ring: a collective that waits on a peer which will never answer fails at once. */
  close(): Promise<void>;
}

/** Starts the transports (binds their servers), so that the agent knows where it listens before it registers. */
export type TransportsFactory = () => Promise<WorkerTransports>;

/**
 * A worker alone in its run, in the coordinator's process: no listener, and the identity exchange, since
 * it holds the whole global batch. The address only satisfies registration's host:port check.
 */
export const soloTransports: TransportsFactory = async () => ({
  address: 'in-process:0',
  dataAddress: 'in-process:0',
  openExchange: async (group) => {
    if (group.world !== 1)
      throw new Error(`an in-process worker has no peers to exchange gradients with, but generation ${group.generation} has ${group.world} workers`);
    return { exchange: singleProcess, close: async () => {} };
  },
  close: async () => {},
});
