import type { RunConfig } from '../shared/config.js';
import type { LogContext, Logger } from '../shared/logging.js';
import { channelCredentials, type TlsMaterial } from '../shared/rpc/security.js';
import { WorkerAgent, type WorkerOutcome } from './agent.js';
import { CoordinatorConnection } from './coordinator-client.js';
import { threadHeartbeats } from './heartbeat-thread.js';
import type { HeartbeatsFactory } from './heartbeats.js';
import type { WorkerMetrics } from './metrics.js';
import { ringTransports } from './ring-transports.js';

/**
 * `autoprune worker`: a worker agent that reaches its coordinator over gRPC and its peers over the ring
 * transports it serves, and beats from a thread of its own.
 */

export interface WorkerOptions {
  readonly workerId: string;
  /** host:port of the coordinator. */
  readonly coordinator: string;
  readonly joinToken: string;
  /** host:port to bind the gRPC server to (port 0: any free one). */
  readonly listen: string;
  /** host:port to bind the bulk-data listener to. */
  readonly dataListen: string;
  /** host:port of a plaintext port serving only grpc.health.v1 (Kubernetes' gRPC probes with TLS on); none if undefined. */
  readonly healthListen?: string | undefined;
  /** Host the peers and the coordinator reach this worker at (a Kubernetes pod advertises its IP). */
  readonly advertiseHost: string;
  readonly maxMessageBytes: number;
  readonly tls: TlsMaterial | undefined;
  /** The config the worker was started with, if any: registration checks that it is the run's. */
  readonly config: RunConfig | undefined;
  /** How long to keep retrying registration while the coordinator is not up (or restarts). */
  readonly connectTimeoutMs: number;
  /** A file to append every step's samples to (JSON lines), to audit that none is lost or repeated. */
  readonly sampleLog: string | undefined;
  readonly logger: Logger;
  /** Aborted to stop the worker gracefully (SIGTERM): it offers its state and ends `stopped`. */
  readonly stop?: AbortSignal;
  /** Where the worker's Prometheus series go, if they are served. */
  readonly metrics?: WorkerMetrics | undefined;
  /** The log's context, which the agent fills in (run id, generation, rank, phase). */
  readonly logContext?: LogContext;
}

export async function runWorker(options: WorkerOptions): Promise<WorkerOutcome> {
  const { workerId, logger, maxMessageBytes, tls } = options;
  const coordinator = new CoordinatorConnection(options.coordinator, channelCredentials(tls), maxMessageBytes);
  try {
    const agent = new WorkerAgent({
      workerId,
      coordinator,
      transports: ringTransports({
        workerId,
        listen: options.listen,
        dataListen: options.dataListen,
        healthListen: options.healthListen,
        advertiseHost: options.advertiseHost,
        maxMessageBytes,
        tls,
        logger,
        metrics: options.metrics,
      }),
      heartbeats: blockingAfterRegistration(
        threadHeartbeats({ address: options.coordinator, tls, maxMessageBytes, workerId }),
        Number(process.env[BLOCK_AFTER_REGISTRATION] ?? 0),
      ),
      joinToken: options.joinToken,
      config: options.config,
      connectTimeoutMs: options.connectTimeoutMs,
      sampleLog: options.sampleLog,
      logger,
      ...(options.stop ? { stop: options.stop } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
      ...(options.logContext ? { logContext: options.logContext } : {}),
    });
    return await agent.run();
  } finally {
    coordinator.close();
  }
}

/** Test hook, off by default: milliseconds the main thread busy-waits right after its first registration. */
export const BLOCK_AFTER_REGISTRATION = 'AUTOPRUNE_TEST_BLOCK_AFTER_REGISTRATION_MS';

/**
 * For tests only (BLOCK_AFTER_REGISTRATION): blocks the main thread's event loop for `ms` once the first
 * registration is handed to the heartbeats, as a long synchronous setup does (backend, data load on a
 * contended CPU), to show that the heartbeat thread keeps the worker in the run. 0: the heartbeats as they are.
 */
function blockingAfterRegistration(heartbeats: HeartbeatsFactory, ms: number): HeartbeatsFactory {
  if (!(ms > 0)) return heartbeats;
  return (report) => {
    const source = heartbeats(report);
    let blocked = false;
    return {
      ...source,
      beatFor: (registration) => {
        source.beatFor(registration);
        if (blocked) return;
        blocked = true;
        const until = Date.now() + ms;
        while (Date.now() < until) {
          // Busy: nothing else runs on this thread.
        }
      },
    };
  };
}
