import { status } from '@grpc/grpc-js';
import type { RegisterRequest__Output } from '../shared/proto/generated/autoprune/v1/RegisterRequest.js';
import { PROTOCOL_VERSION } from '../shared/proto/load.js';
import { RpcFailure } from '../shared/rpc/failure.js';
import { secretsEqual } from '../shared/rpc/security.js';
import { parseHostPort } from '../shared/rpc/server.js';
import { refusesGeneration } from './decisions.js';
import type { RunStatus } from './run-state.js';

/** What a registration is checked against. */
export interface AdmissionContext {
  readonly runId: string;
  readonly joinToken: string;
  readonly configHash: string;
  readonly generation: number;
  readonly status: RunStatus;
  /** The coordinator stops, or stopped, on a signal (the run ended interrupted): it will be back. */
  readonly stopping: boolean;
  readonly isRegistered: (workerId: string) => boolean;
  /** Whether the caller presented the current credential of the id it registers under. */
  readonly holdsCredential: (workerId: string) => boolean;
  readonly registered: number;
  /** The most workers the run takes. */
  readonly workers: number;
}

/** A new registration, or one that replaces the live registration of its id (the caller holds its credential). */
export type Admission = 'new' | 'replace';

/**
 * Who may register: the join token first (a caller without it learns nothing, not even the protocol
 * version), then the right protocol, addresses and config, a coordinator that is not stopping, a generation
 * the run is not past, a run not yet over, a worker id that is free or whose credential the caller holds, and a free place. Throws the
 * refusal, with its gRPC status and reason, for the first check that fails.
 */
export function checkRegistration(request: RegisterRequest__Output, context: AdmissionContext): Admission {
  if (!secretsEqual(request.joinToken, context.joinToken)) throw new RpcFailure(status.UNAUTHENTICATED, 'unauthenticated', 'join token refused');
  if (request.protocolVersion !== PROTOCOL_VERSION) {
    throw new RpcFailure(
      status.FAILED_PRECONDITION,
      'protocol-version',
      `protocol version ${request.protocolVersion} is not supported; this coordinator speaks version ${PROTOCOL_VERSION}`,
    );
  }
  if (!request.workerId) throw new RpcFailure(status.INVALID_ARGUMENT, 'invalid-argument', 'worker_id is empty');
  for (const [field, value] of [
    ['address', request.address],
    ['data_address', request.dataAddress],
  ] as const) {
    try {
      parseHostPort(value, field);
    } catch (error) {
      throw new RpcFailure(status.INVALID_ARGUMENT, 'invalid-argument', (error as Error).message);
    }
  }
  if (request.configHash !== '' && request.configHash !== context.configHash) {
    throw new RpcFailure(
      status.FAILED_PRECONDITION,
      'config-mismatch',
      `config hash ${request.configHash.slice(0, 12)}… differs from the run's ${context.configHash.slice(0, 12)}…: the worker was started with another config`,
    );
  }
  // Before the checks of places and generations: a coordinator about to restart knows neither for sure.
  if (context.stopping)
    throw new RpcFailure(status.UNAVAILABLE, 'coordinator-stopping', `the coordinator of run ${context.runId} is stopping: register again once it is back`);
  if (refusesGeneration('register', request.generation, context.generation)) {
    throw new RpcFailure(
      status.FAILED_PRECONDITION,
      'stale-generation',
      `stale generation ${request.generation}: the run is at generation ${context.generation}; restart the worker to join afresh`,
    );
  }
  if (context.status === 'completed' || context.status === 'failed')
    throw new RpcFailure(status.FAILED_PRECONDITION, 'run-finished', `run ${context.runId} is ${context.status}`);
  const admission: Admission = context.isRegistered(request.workerId) ? 'replace' : 'new';
  if (admission === 'replace' && !context.holdsCredential(request.workerId))
    throw new RpcFailure(
      status.ALREADY_EXISTS,
      'already-registered',
      `worker id ${request.workerId} is already registered: registering again under it needs its credential`,
    );
  // The registration replaced frees its place.
  if (context.registered - (admission === 'replace' ? 1 : 0) >= context.workers)
    throw new RpcFailure(status.RESOURCE_EXHAUSTED, 'run-full', `run ${context.runId} already has its ${context.workers} workers`);
  return admission;
}
