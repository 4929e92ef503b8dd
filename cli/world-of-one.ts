import { randomBytes } from 'node:crypto';
import { Coordinator, type RunOutcome } from '../coordinator/coordinator.js';
import { InProcessCoordinatorApi } from '../coordinator/in-process-api.js';
import type { RunDirectory } from '../coordinator/run-directory.js';
import type { StoredCheckpoint } from '../shared/checkpoint-store.js';
import type { RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { EventPublisher } from '../shared/events/bus.js';
import type { LogContext, Logger } from '../shared/logging.js';
import { WorkerAgent } from '../worker/agent.js';
import { noHeartbeats } from '../worker/heartbeats.js';
import { soloTransports } from '../worker/transports.js';

/**
 * A run whose only worker lives in this process (`autoprune train`): the coordinator of `autoprune run`
 * and one worker agent that calls it directly, without servers, and has no peers to exchange gradients
 * with. The task plan, run loop, checkpoints, events and report are those of every run.
 */

export interface WorldOfOneOptions {
  readonly config: RunConfig;
  readonly runId: string;
  readonly runDirectory: RunDirectory;
  readonly events: EventPublisher;
  readonly logger: Logger;
  /** The checkpoint a resumed run goes on from. */
  readonly resumeFrom?: StoredCheckpoint | undefined;
  /**
   * Aborted (with the signal's name) to stop the run gracefully: the worker stops after its step and
   * offers its state, which the coordinator writes as the final checkpoint within `offerWaitMs`.
   */
  readonly stop?: { readonly signal: AbortSignal; readonly offerWaitMs: number };
  /** The log's context: the run id, generation and phase, as the coordinator knows them (its only worker is rank 0). */
  readonly logContext?: LogContext;
}

const WORKER_ID = 'worker-0';

/** Runs to the end; bad input the worker meets (its data files) is thrown, as any bad input is. */
export async function runWorldOfOne(options: WorldOfOneOptions): Promise<RunOutcome> {
  const joinToken = randomBytes(24).toString('hex');
  // The worker's liveness is this process's own: no heartbeat watch.
  const coordinator = await Coordinator.create({ ...options, joinToken, workers: 1, watchHeartbeats: false });
  coordinator.start();
  options.logContext?.follow(() => ({ ...coordinator.logFields(), rank: 0 }));
  // Before the worker hears of it (its listener comes later), so that its report and offer find the coordinator stopping.
  const { stop } = options;
  stop?.signal.addEventListener(
    'abort',
    () =>
      void coordinator
        .stopGracefully(`${String(stop.signal.reason)} received`, stop.offerWaitMs)
        .catch((error: Error) => coordinator.fail(`the graceful stop failed: ${error.message}`)),
    { once: true },
  );
  const api = new InProcessCoordinatorApi(coordinator);
  try {
    const agent = new WorkerAgent({
      workerId: WORKER_ID,
      coordinator: api,
      transports: soloTransports,
      // The coordinator does not watch them (watchHeartbeats false): its worker lives and dies with this process.
      heartbeats: noHeartbeats,
      joinToken,
      config: options.config,
      // A direct call answers or refuses at once: there is no coordinator to wait for.
      connectTimeoutMs: 0,
      sampleLog: undefined,
      logger: options.logger.child({ workerId: WORKER_ID }),
      ...(stop ? { stop: stop.signal } : {}),
    });
    const worker = await agent.run();
    // Stopped: the coordinator ends the run itself once it has written the worker's state.
    if (worker.status !== 'completed' && worker.status !== 'stopped') {
      // The worker tells the coordinator why it fails, unless the coordinator refused it: either way the run is over.
      coordinator.fail(`worker ${WORKER_ID}: ${worker.reason}`);
      if (worker.status === 'failed' && worker.cause instanceof InputError) throw worker.cause;
    }
    return await coordinator.outcome();
  } finally {
    api.close();
    coordinator.stop();
  }
}
