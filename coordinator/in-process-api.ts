import { status } from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type { CoordinatorApi, StepPosition } from '../shared/coordinator-api.js';
import type { EvaluationReport } from '../shared/proto/generated/autoprune/v1/EvaluationReport.js';
import type { HeartbeatReply__Output } from '../shared/proto/generated/autoprune/v1/HeartbeatReply.js';
import type { ProgressReport } from '../shared/proto/generated/autoprune/v1/ProgressReport.js';
import type { RegisterReply__Output } from '../shared/proto/generated/autoprune/v1/RegisterReply.js';
import type { RegisterRequest } from '../shared/proto/generated/autoprune/v1/RegisterRequest.js';
import type { RendezvousReply__Output } from '../shared/proto/generated/autoprune/v1/RendezvousReply.js';
import type { Task__Output } from '../shared/proto/generated/autoprune/v1/Task.js';
import { loadCoordinatorProto } from '../shared/proto/load.js';
import { CoordinatorCallError } from '../shared/rpc/call-error.js';
import { RpcFailure } from '../shared/rpc/failure.js';
import type { Coordinator } from './coordinator.js';

/**
 * The worker's CoordinatorApi for a worker in the coordinator's own process (`autoprune train`): each call
 * goes straight to the Coordinator's method. Messages pass through the protobuf codec on the way, as
 * over gRPC, so that both sides see exactly what the wire would deliver (defaults filled in, 64-bit
 * numbers, oneof names); a refusal becomes the CoordinatorCallError a gRPC client raises, with its reason.
 */

const ADDRESS = 'in this process';

export class InProcessCoordinatorApi implements CoordinatorApi {
  readonly address = ADDRESS;
  private readonly service = loadCoordinatorProto().Coordinator.service;
  private closed = false;

  constructor(private readonly coordinator: Coordinator) {}

  register(request: RegisterRequest): Promise<RegisterReply__Output> {
    return this.unary(this.service.Register, request, (r) => this.coordinator.register(r));
  }

  heartbeat(workerId: string, generation: number): Promise<HeartbeatReply__Output> {
    return this.unary(this.service.Heartbeat, { workerId, generation }, (r) => this.coordinator.heartbeat(r.workerId));
  }

  rendezvous(workerId: string, lastGeneration: number, backend: string): Promise<RendezvousReply__Output> {
    return this.unary(this.service.Rendezvous, { workerId, lastGeneration, backend }, (r) =>
      this.coordinator.rendezvous(r.workerId, r.lastGeneration, r.backend),
    );
  }

  nextTask(workerId: string, generation: number, finishedTask: number): Promise<Task__Output> {
    return this.unary(this.service.NextTask, { workerId, generation, finishedTask }, (r) =>
      this.coordinator.nextTask(r.workerId, r.generation, r.finishedTask),
    );
  }

  async reportProgress(report: ProgressReport): Promise<void> {
    await this.unary(this.service.ReportProgress, report, (r) => {
      this.coordinator.reportProgress(r);
      return {};
    });
  }

  async reportEvaluation(report: EvaluationReport): Promise<void> {
    await this.unary(this.service.ReportEvaluation, report, (r) => {
      this.coordinator.reportEvaluation(r);
      return {};
    });
  }

  async reportFailure(
    workerId: string,
    generation: number,
    reason: string,
    willRejoin: boolean,
    reached: StepPosition = { phaseIndex: 0, step: 0 },
    badInput = false,
  ): Promise<void> {
    await this.unary(this.service.ReportFailure, { workerId, generation, reason, willRejoin, badInput, ...reached }, (r) => {
      this.coordinator.reportFailure(r.workerId, r.generation, r.reason, r.willRejoin, { phaseIndex: r.phaseIndex, step: r.step }, r.badInput);
      return {};
    });
  }

  /** A copy, as a stream of chunks would deliver: the coordinator keeps its own. */
  fetchState(workerId: string, generation: number, phaseIndex: number): Promise<Buffer> {
    return this.call('FetchState', () => Buffer.from(this.coordinator.initialState(workerId, generation, phaseIndex)));
  }

  uploadState(workerId: string, generation: number, _phaseIndex: number, _step: number, state: Buffer): Promise<void> {
    return this.call('UploadState', () => this.coordinator.receiveState(workerId, generation, state));
  }

  close(): void {
    this.closed = true;
  }

  private unary<Request, Reply, RequestOut, ReplyOut>(
    method: MethodDefinition<Request, Reply, RequestOut, ReplyOut>,
    request: Request,
    handle: (request: RequestOut) => Reply | Promise<Reply>,
  ): Promise<ReplyOut> {
    const name = method.path.slice(method.path.lastIndexOf('/') + 1);
    return this.call(name, async () => {
      const reply = await handle(method.requestDeserialize(method.requestSerialize(request)));
      return method.responseDeserialize(method.responseSerialize(reply));
    });
  }

  private async call<T>(method: string, handle: () => T | Promise<T>): Promise<T> {
    if (this.closed) throw new Error(`${method}: the in-process coordinator API was closed`);
    try {
      return await handle();
    } catch (error) {
      // As the gRPC service answers: a refusal keeps its status and reason, anything else is INTERNAL.
      if (error instanceof RpcFailure) throw new CoordinatorCallError(error.code, error.reason, method, ADDRESS, error.message);
      throw new CoordinatorCallError(status.INTERNAL, undefined, method, ADDRESS, error instanceof Error ? error.message : String(error));
    }
  }
}
