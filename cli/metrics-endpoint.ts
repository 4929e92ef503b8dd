import { Registry } from 'prom-client';
import type { Coordinator } from '../coordinator/coordinator.js';
import { CoordinatorMetrics } from '../coordinator/metrics.js';
import type { EventSource } from '../shared/events/bus.js';
import type { Logger } from '../shared/logging.js';
import { type MetricsServer, serveMetrics } from '../shared/metrics/server.js';
import { formatHostPort } from '../shared/rpc/server.js';
import { WorkerMetrics } from '../worker/metrics.js';

/**
 * `--metrics-port` (AUTOPRUNE_METRICS_PORT): the Prometheus endpoint of a coordinator or a worker, on the
 * host that process already serves gRPC on (a pod's IP, or loopback), each with a registry of its own.
 */

export interface MetricsEndpoint {
  close(): Promise<void>;
}

function announce(server: MetricsServer, host: string, role: string, logger: Logger): void {
  const address = formatHostPort(host, server.port);
  logger.info({ event: 'metrics.listening', address, port: server.port }, `${role} metrics on http://${address}/metrics`);
}

/** The coordinator's series: its run's events from `bus`, its generation and workers at each scrape. */
export async function serveCoordinatorMetrics(
  coordinator: Coordinator,
  bus: EventSource,
  where: { readonly host: string; readonly port: number },
  logger: Logger,
): Promise<MetricsEndpoint> {
  const metrics = new CoordinatorMetrics(new Registry(), coordinator.runId);
  metrics.watch(coordinator);
  const subscription = await bus.subscribe(coordinator.runId);
  const following = metrics.follow(subscription);
  const server = await serveMetrics(metrics.registry, where.host, where.port);
  announce(server, where.host, 'coordinator', logger);
  return {
    close: async () => {
      await subscription.close();
      await following;
      await server.close();
    },
  };
}

/** A worker's series, filled in by its agent; `metrics` goes to runWorker. */
export async function serveWorkerMetrics(
  workerId: string,
  where: { readonly host: string; readonly port: number },
  logger: Logger,
): Promise<{ readonly metrics: WorkerMetrics } & MetricsEndpoint> {
  const metrics = new WorkerMetrics(new Registry(), workerId);
  const server = await serveMetrics(metrics.registry, where.host, where.port);
  announce(server, where.host, 'worker', logger);
  return { metrics, close: () => server.close() };
}
