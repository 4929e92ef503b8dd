import { parseHostPort } from '../shared/rpc/server.js';
import { setting } from './cluster-options.js';

/**
 * `--health-listen HOST:PORT` (AUTOPRUNE_HEALTH_LISTEN) of the coordinator and the worker: a plaintext port
 * that serves grpc.health.v1 alone, from the same status as the process's gRPC server. Kubernetes' native
 * gRPC probes speak plaintext only, so with TLS on they probe this port; nothing else is served there.
 */

export const HEALTH_LISTEN_FLAG = { 'health-listen': { type: 'string' } } as const;

/** The option's description, default and environment variable, for the commands' help. */
export const HEALTH_LISTEN_OPTION = {
  flag: '--health-listen HOST:PORT',
  description: 'a plaintext port serving only grpc.health.v1 (for Kubernetes gRPC probes when TLS is on)',
  defaultText: 'none',
  env: 'AUTOPRUNE_HEALTH_LISTEN',
} as const;

/** The health-only port's address, checked, or undefined when neither the flag nor the variable (nor an empty one) asks for it. */
export function healthListenFrom(flag: string | undefined): string | undefined {
  const value = setting(flag, HEALTH_LISTEN_OPTION.env);
  if (value === undefined || value === '') return undefined;
  parseHostPort(value, flag !== undefined ? '--health-listen' : HEALTH_LISTEN_OPTION.env);
  return value;
}
