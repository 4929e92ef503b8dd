import type { RunConfig } from '../shared/config.js';
import type { Logger } from '../shared/logging.js';
import { channelCredentials, type TlsMaterial } from '../shared/rpc/security.js';
import { WorkerAgent, type WorkerOutcome } from './agent.js';
import { CoordinatorConnection } from './coordinator-client.js';
import { ringTransports } from './ring-transports.js';

/**
 * `autoprune worker`: a worker agent that reaches its coordinator over gRPC and its peers over the ring
 * transports it serves.
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
        advertiseHost: options.advertiseHost,
        maxMessageBytes,
        tls,
        logger,
      }),
      joinToken: options.joinToken,
      config: options.config,
      connectTimeoutMs: options.connectTimeoutMs,
      sampleLog: options.sampleLog,
      logger,
    });
    return await agent.run();
  } finally {
    coordinator.close();
  }
}
