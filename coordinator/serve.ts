import { serverCredentials, type TlsMaterial } from '../shared/rpc/security.js';
import { startServer } from '../shared/rpc/server.js';
import { Coordinator, type CoordinatorOptions } from './coordinator.js';
import { coordinatorService } from './service.js';

/** A coordinator serving its gRPC API (and Health) where configured. */

export interface ServeOptions extends CoordinatorOptions {
  /** host:port to bind; port 0 picks a free one. */
  readonly listen: string;
  readonly tls: TlsMaterial | undefined;
  readonly maxMessageBytes: number;
}

export interface ServingCoordinator {
  readonly coordinator: Coordinator;
  readonly port: number;
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
  });
  coordinator.start();
  return {
    coordinator,
    port: server.port,
    close: async () => {
      coordinator.stop();
      await server.close();
    },
  };
}
