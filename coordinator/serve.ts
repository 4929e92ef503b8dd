import { serverCredentials, type TlsMaterial } from '../shared/rpc/security.js';
import { startServer } from '../shared/rpc/server.js';
import { Coordinator, type CoordinatorOptions } from './coordinator.js';
import { coordinatorService } from './service.js';

/** A coordinator serving its gRPC API (and Health) where configured. */

export interface ServeOptions extends CoordinatorOptions {
  /** host:port to bind; port 0 picks a free one. */
  readonly listen: string;
  /** host:port of a plaintext port serving only grpc.health.v1 (for Kubernetes' gRPC probes with TLS on); none if undefined. */
  readonly healthListen?: string | undefined;
  readonly tls: TlsMaterial | undefined;
  readonly maxMessageBytes: number;
}

export interface ServingCoordinator {
  readonly coordinator: Coordinator;
  readonly port: number;
  /** The health-only port's bound port, if one was asked for. */
  readonly healthPort: number | undefined;
  close(): Promise<void>;
}

/** Largest state (W, M and optimizer slots) a worker may upload: ResNet-50 with Adam is about 0.5 GB. */
const MAX_STATE_BYTES = 4 * 1024 ** 3;

export async function serveCoordinator(options: ServeOptions): Promise<ServingCoordinator> {
  const coordinator = await Coordinator.create(options);
  const server = await startServer({
    bind: options.listen,
    credentials: serverCredentials(options.tls),
    maxMessageBytes: options.maxMessageBytes,
    services: [coordinatorService(coordinator, MAX_STATE_BYTES)],
    healthBind: options.healthListen,
  });
  if (server.healthPort !== undefined)
    options.logger.info({ event: 'health.listening', listen: options.healthListen, port: server.healthPort }, `health-only port ${server.healthPort}`);
  coordinator.start();
  return {
    coordinator,
    port: server.port,
    healthPort: server.healthPort,
    close: async () => {
      coordinator.stop();
      await server.close();
    },
  };
}
