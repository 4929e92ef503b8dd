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
 * Like the gRPC client, it holds the credential its register() received and presents it on every later
 * call, which the coordinator checks as the gRPC service does.
 */

const ADDRESS = 'in this process';

export class InProcessCoordinatorApi implements CoordinatorApi {
  readonly address = ADDRESS;
  private readonly service = loadCoordinatorProto().Coordinator.service;
  private closed = false;
  /** The credential of this worker's registration, once it has one. */
  private credential: string | undefined;

  constructor(private readonly coordinator: Coordinator) {}

  async register(request: RegisterRequest): Promise<RegisterReply__Output> {
    const reply = await this.unary(this.service.Register, request, (r) => this.coordinator.register(r, this.credential));
    this.credential = reply.credential;
    return reply;
  }

  heartbeat(workerId: string, generation: number): Promise<HeartbeatReply__Output> {
    return this.authenticated(this.service.Heartbeat, { workerId, generation }, (r) => this.coordinator.heartbeat(r.workerId));
  }

  rendezvous(workerId: string, lastGeneration: number, backend: string): Promise<RendezvousReply__Output> {
    return this.authenticated(this.service.Rendezvous, { workerId, lastGeneration, backend }, (r) =>
      this.coordinator.rendezvous(r.workerId, r.lastGeneration, r.backend),
    );
  }

  nextTask(workerId: string, generation: number, finishedTask: number): Promise<Task__Output> {
    return this.authenticated(this.service.NextTask, { workerId, generation, finishedTask }, (r) =>
      this.coordinator.nextTask(r.workerId, r.generation, r.finishedTask),
    );
  }

  async reportProgress(report: ProgressReport): Promise<void> {
    await this.authenticated(this.service.ReportProgress, report, (r) => {
      this.coordinator.reportProgress(r);
      return {};
    });
  }

  async reportEvaluation(report: EvaluationReport): Promise<void> {
    await this.authenticated(this.service.ReportEvaluation, report, (r) => {
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
    await this.authenticated(this.service.ReportFailure, { workerId, generation, reason, willRejoin, badInput, ...reached }, (r) => {
      this.coordinator.reportFailure(r.workerId, r.generation, r.reason, r.willRejoin, { phaseIndex: r.phaseIndex, step: r.step }, r.badInput);
      return {};
    });
  }

  /** A copy, as a stream of chunks would deliver: the coordinator keeps its own. */
  fetchState(workerId: string, generation: number, phaseIndex: number): Promise<Buffer> {
    return this.call('FetchState', () => {
      this.coordinator.authenticate(workerId, this.credential);
      return Buffer.from(this.coordinator.initialState(workerId, generation, phaseIndex));
    });
  }

  uploadState(workerId: string, generation: number, phaseIndex: number, step: number, state: Buffer): Promise<void> {
    return this.call('UploadState', () => {
      this.coordinator.authenticate(workerId, this.credential);
      return this.coordinator.receiveState(workerId, generation, { phaseIndex, step }, state);
    });
  }

  close(): void {
    this.closed = true;
  }

  /** A call of a registered worker: the coordinator checks the credential this API holds against the id the request names. */
  private authenticated<Request, Reply, RequestOut extends { readonly workerId: string }, ReplyOut>(
    method: MethodDefinition<Request, Reply, RequestOut, ReplyOut>,
    request: Request,
    handle: (request: RequestOut) => Reply | Promise<Reply>,
  ): Promise<ReplyOut> {
    return this.unary(method, request, (r) => {
      this.coordinator.authenticate(r.workerId, this.credential);
      return handle(r);
    });
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
