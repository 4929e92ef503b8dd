import { parseHostPort } from '../shared/rpc/server.js';

/**
 * `--health-listen HOST:PORT` (AUTOPRUNE_HEALTH_LISTEN) of the coordinator and the worker: a plaintext port
 * that serves grpc.health.v1 alone, from the same status as the process's gRPC server. Kubernetes' native
 * gRPC probes speak plaintext only, so with TLS on they probe this port; nothing else is served there.
 */

/** The health-only port's address (flag or AUTOPRUNE_HEALTH_LISTEN), checked; undefined when none, or an empty one, is given. */
export function healthListenFrom(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  parseHostPort(value, '--health-listen');
  return value;
}
