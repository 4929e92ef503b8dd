import { cpus, hostname, totalmem } from 'node:os';
import { status } from '@grpc/grpc-js';
import type { CoordinatorApi } from '../shared/coordinator-api.js';
import type { Logger } from '../shared/logging.js';
import type { RegisterReply__Output } from '../shared/proto/generated/autoprune/v1/RegisterReply.js';
import type { RegisterRequest } from '../shared/proto/generated/autoprune/v1/RegisterRequest.js';
import { PROTOCOL_VERSION } from '../shared/proto/load.js';
import { CoordinatorCallError } from '../shared/rpc/call-error.js';
import { backoffDelay } from './backoff.js';
import { coordinatorStopping, coordinatorUnreachable } from './interrupts.js';

/**
 * Registration with the coordinator, retried with jittered exponential backoff while no coordinator
 * answers (it is not up yet, stops or restarts), for at most `connectTimeoutMs`; any other refusal is final.
 */

export interface RegistrationOptions {
  readonly workerId: string;
  readonly address: string;
  readonly dataAddress: string;
  readonly joinToken: string;
  /** Hash of the config the worker was started with, or '' to take the run's. */
  readonly configHash: string;
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
  /** Uniform in [0, 1): the backoff's jitter. */
  readonly random: () => number;
}

export async function registerWithBackoff(coordinator: CoordinatorApi, options: RegistrationOptions): Promise<RegisterReply__Output> {
  const deadline = Date.now() + options.connectTimeoutMs;
  const request = registerRequest(options);
  for (let attempt = 0; ; attempt++) {
    try {
      return await coordinator.register(request);
    } catch (error) {
      const delay = backoffDelay(attempt, options.random);
      const retryable = coordinatorUnreachable(error) || coordinatorStopping(error) || cutOff(error);
      if (!retryable || Date.now() + delay > deadline) throw error;
      options.logger.info(
        { event: 'register.retry', coordinator: coordinator.address, attempt, delayMs: Math.round(delay) },
        'coordinator not reachable yet; retrying',
      );
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/**
 * No answer in time, or a call cut off without a refusal: a coordinator busy writing its final checkpoint, or
 * going away as a pod stops. The next one may answer.
 */
function cutOff(error: unknown): boolean {
  return error instanceof CoordinatorCallError && error.reason === undefined && (error.code === status.DEADLINE_EXCEEDED || error.code === status.CANCELLED);
}

function registerRequest(options: RegistrationOptions): RegisterRequest {
  return {
    workerId: options.workerId,
    address: options.address,
    dataAddress: options.dataAddress,
    capabilities: { hostname: hostname(), cpus: cpus().length, memoryBytes: totalmem(), engineVersion: `autoprune-protocol/${PROTOCOL_VERSION}` },
    joinToken: options.joinToken,
    configHash: options.configHash,
    protocolVersion: PROTOCOL_VERSION,
    generation: 0,
  };
}
