import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { InputError } from '../errors.js';

/**
 * A gRPC server bound exactly where configured, with message-size limits and the standard
 * grpc.health.v1.Health service, and optionally a plaintext port that serves that Health alone. Each
 * process owns its servers; nothing here is global.
 */

export interface ServerOptions {
  /** host:port to bind; port 0 picks a free one. */
  readonly bind: string;
  readonly credentials: grpc.ServerCredentials;
  /** Largest message accepted (and sent), in bytes. */
  readonly maxMessageBytes: number;
  /** Services to add: [definition, implementation]; their names are reported SERVING by Health. */
  readonly services: ReadonlyArray<readonly [grpc.ServiceDefinition, grpc.UntypedServiceImplementation, string]>;
  /**
   * host:port of a plaintext port that serves only grpc.health.v1, from this server's own health status.
   * Kubernetes' native gRPC probes speak plaintext only, so with TLS they need this port to probe.
   */
  readonly healthBind?: string | undefined;
}

export interface RunningServer {
  readonly server: grpc.Server;
  /** The bound port (the real one when `bind` asked for 0). */
  readonly port: number;
  readonly health: HealthImplementation;
  /** The bound port of the health-only port, when `healthBind` asked for one. */
  readonly healthPort: number | undefined;
  /** Stops accepting calls, waits briefly for running ones, then cuts the rest. */
  close(graceMs?: number): Promise<void>;
}

/** How long a server keeps a connection that carries no call. */
export const MAX_CONNECTION_IDLE_MS = 5 * 60_000;

/** Largest message the health-only port accepts: a HealthCheckRequest names one service. */
const HEALTH_MAX_MESSAGE_BYTES = 4096;

export function channelOptions(maxMessageBytes: number): grpc.ChannelOptions {
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // Detect a dead peer on an idle connection within seconds rather than at the OS's TCP timeout.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
  };
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const server = new grpc.Server({
    ...channelOptions(options.maxMessageBytes),
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    // A connection with no call for this long is closed (GOAWAY): an idle client cannot hold a session
    // open forever. Workers heartbeat every second and reconnect transparently if one is ever closed.
    'grpc.max_connection_idle_ms': MAX_CONNECTION_IDLE_MS,
  });
  const health = new HealthImplementation({ '': 'SERVING' });
  for (const [definition, implementation, name] of options.services) {
    server.addService(definition, implementation);
    health.setStatus(name, 'SERVING');
  }
  health.addToServer(server);
  const port = await bind(server, options.bind, options.credentials);
  const healthServer =
    options.healthBind === undefined
      ? undefined
      : new grpc.Server({ ...channelOptions(HEALTH_MAX_MESSAGE_BYTES), 'grpc.max_connection_idle_ms': MAX_CONNECTION_IDLE_MS });
  let healthPort: number | undefined;
  if (healthServer) {
    // The same HealthImplementation: the port reports exactly what the main server's Health reports.
    health.addToServer(healthServer);
    healthPort = await bind(healthServer, options.healthBind!, grpc.ServerCredentials.createInsecure()).catch(async (error: unknown) => {
      await shutdown(server, 0);
      throw error;
    });
  }
  return {
    server,
    port,
    health,
    healthPort,
    close: async (graceMs = 2000) => {
      for (const [, , name] of options.services) health.setStatus(name, 'NOT_SERVING');
      await Promise.all([shutdown(server, graceMs), healthServer && shutdown(healthServer, graceMs)]);
    },
  };
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (error, bound) => {
      if (error) reject(new InputError(`listen address ${address}`, `cannot bind: ${error.message}`));
      else resolve(bound);
    });
  });
}

/** Stops accepting calls and waits `graceMs` for running ones; a peer that stopped answering (a frozen process) would hold a graceful shutdown forever. */
function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Splits host:port, accepting [v6]:port; the error names the flag or variable it came from. */
export function parseHostPort(value: string, source: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535)
    throw new InputError(source, 'not a host:port address', { expected: 'HOST:PORT, e.g. 127.0.0.1:7070', found: JSON.stringify(value) });
  return { host: match[1] ?? match[2]!, port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
