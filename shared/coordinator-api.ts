import type { EvaluationReport } from './proto/generated/autoprune/v1/EvaluationReport.js';
import type { HeartbeatReply__Output } from './proto/generated/autoprune/v1/HeartbeatReply.js';
import type { ProgressReport } from './proto/generated/autoprune/v1/ProgressReport.js';
import type { RegisterReply__Output } from './proto/generated/autoprune/v1/RegisterReply.js';
import type { RegisterRequest } from './proto/generated/autoprune/v1/RegisterRequest.js';
import type { RendezvousReply__Output } from './proto/generated/autoprune/v1/RendezvousReply.js';
import type { Task__Output } from './proto/generated/autoprune/v1/Task.js';

/**
 * The worker's view of the coordinator: the Coordinator service's calls as promises, in the wire
 * contract's types. The gRPC client implements it for a worker process, a direct adapter for the worker
 * that lives in the coordinator's process (`train`). Every failure is a CoordinatorCallError
 * (shared/rpc/call-error.ts) that keeps the gRPC status code and the coordinator's refusal reason.
 */
export interface CoordinatorApi {
  /** Where the coordinator is, for messages. */
  readonly address: string;
  register(request: RegisterRequest): Promise<RegisterReply__Output>;
  heartbeat(workerId: string, generation: number): Promise<HeartbeatReply__Output>;
  /** Returns once the next generation forms, with this worker's place in its ring. */
  rendezvous(workerId: string, lastGeneration: number, backend: string): Promise<RendezvousReply__Output>;
  /** Returns the next task, or once the run ends, its Finish; `finishedTask` is the id of the last task done (0: none). */
  nextTask(workerId: string, generation: number, finishedTask: number): Promise<Task__Output>;
  reportProgress(report: ProgressReport): Promise<void>;
  reportEvaluation(report: EvaluationReport): Promise<void>;
  /** This worker cannot go on in `generation`; `reached` is the step it was in. */
  reportFailure(workerId: string, generation: number, reason: string, willRejoin: boolean, reached?: StepPosition, badInput?: boolean): Promise<void>;
  /** The safetensors snapshot a task with restoreState loads. */
  fetchState(workerId: string, generation: number, phaseIndex: number): Promise<Buffer>;
  /** Sends a state snapshot (rank 0's at a checkpoint, or any survivor's committed state during a recovery). */
  uploadState(workerId: string, generation: number, phaseIndex: number, step: number, state: Buffer): Promise<void>;
  /** Releases the connection; no call may follow. */
  close(): void;
}

/** A point in a run: the phase index and a step within that phase. */
export interface StepPosition {
  readonly phaseIndex: number;
  readonly step: number;
}
