import { AllReducer, CollectiveEndpoint, collectiveService, type RingGroup, startBulkListener } from '../collective/index.js';
import type { RunConfig } from '../shared/config.js';
import type { Logger } from '../shared/logging.js';
import { serverCredentials, type TlsMaterial } from '../shared/rpc/security.js';
import { formatHostPort, startServer } from '../shared/rpc/server.js';
import { AllReduceExchange } from './all-reduce-exchange.js';
import type { WorkerMetrics } from './metrics.js';
import type { GenerationExchange, TransportsFactory } from './transports.js';

/**
 * A worker process's side of the ring: the Collective gRPC service and the bulk-data listener that peers
 * reach it at, and per generation an all-reducer over them.
 */

export interface RingTransportsOptions {
  readonly workerId: string;
  /** host:port to bind the gRPC server to (port 0: any free one). */
  readonly listen: string;
  /** host:port to bind the bulk-data listener to. */
  readonly dataListen: string;
  /** host:port of a plaintext port serving only grpc.health.v1 (for Kubernetes' gRPC probes with TLS on); none if undefined. */
  readonly healthListen?: string | undefined;
  /** Host the peers and the coordinator reach this worker at (a Kubernetes pod advertises its IP). */
  readonly advertiseHost: string;
  readonly maxMessageBytes: number;
  readonly tls: TlsMaterial | undefined;
  readonly logger: Logger;
  readonly metrics?: WorkerMetrics | undefined;
}

export function ringTransports(options: RingTransportsOptions): TransportsFactory {
  return async () => {
    const endpoint = new CollectiveEndpoint({ workerId: options.workerId, logger: options.logger });
    const servers: Array<{ close(): Promise<void> }> = [];
    try {
      const grpcServer = await startServer({
        bind: options.listen,
        credentials: serverCredentials(options.tls),
        maxMessageBytes: options.maxMessageBytes,
        services: [collectiveService(endpoint)],
        healthBind: options.healthListen,
      });
      servers.push(grpcServer);
      if (grpcServer.healthPort !== undefined)
        options.logger.info(
          { event: 'health.listening', listen: options.healthListen, port: grpcServer.healthPort },
          `health-only port ${grpcServer.healthPort}`,
        );
      const bulk = await startBulkListener(endpoint, {
        bind: options.dataListen,
        ...(options.tls ? { tls: options.tls } : {}),
        maxFrameBytes: options.maxMessageBytes,
      });
      servers.push(bulk);
      return {
        address: formatHostPort(options.advertiseHost, grpcServer.port),
        dataAddress: formatHostPort(options.advertiseHost, bulk.port),
        openExchange: async (group: RingGroup, config: RunConfig): Promise<GenerationExchange> => {
          endpoint.setGroup(group);
          const reducer = await AllReducer.open(endpoint, group, collectiveOptions(config, options.maxMessageBytes), options.tls);
          const metrics = options.metrics;
          const exchange = new AllReduceExchange(reducer, metrics && ((seconds, bytes, world) => metrics.allReduced(seconds, bytes, world)));
          return { exchange, close: () => reducer.close() };
        },
        close: async () => void (await Promise.all(servers.map((s) => s.close()))),
      };
    } catch (error) {
      await Promise.all(servers.map((s) => s.close()));
      throw error;
    }
  };
}

function collectiveOptions(config: RunConfig, maxMessageBytes: number) {
  const c = config.distributed.collective;
  return {
    transport: c.transport,
    bucketBytes: Math.round(c.bucketMB * (1 << 20)),
    chunkBytes: Math.min(Math.round(c.chunkKB * 1024), maxMessageBytes - 4096),
    streams: c.streams,
    compression: c.compression,
    timeoutMs: c.timeoutSeconds * 1000,
    maxMessageBytes,
  };
}
