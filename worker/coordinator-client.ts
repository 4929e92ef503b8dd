import * as grpc from '@grpc/grpc-js';
import type { CoordinatorApi, StepPosition } from '../shared/coordinator-api.js';
import type { CoordinatorClient as GeneratedClient } from '../shared/proto/generated/autoprune/v1/Coordinator.js';
import type { EvaluationReport } from '../shared/proto/generated/autoprune/v1/EvaluationReport.js';
import type { HeartbeatReply__Output } from '../shared/proto/generated/autoprune/v1/HeartbeatReply.js';
import type { ProgressReport } from '../shared/proto/generated/autoprune/v1/ProgressReport.js';
import type { RegisterReply__Output } from '../shared/proto/generated/autoprune/v1/RegisterReply.js';
import type { RegisterRequest } from '../shared/proto/generated/autoprune/v1/RegisterRequest.js';
import type { RendezvousReply__Output } from '../shared/proto/generated/autoprune/v1/RendezvousReply.js';
import type { Task__Output } from '../shared/proto/generated/autoprune/v1/Task.js';
import { loadCoordinatorProto } from '../shared/proto/load.js';
import { CoordinatorCallError } from '../shared/rpc/call-error.js';
import { refusalReasonOf } from '../shared/rpc/failure.js';
import { CREDENTIAL_METADATA_KEY } from '../shared/rpc/security.js';
import { channelOptions } from '../shared/rpc/server.js';

/**
 * The worker's side of the Coordinator service over gRPC (CoordinatorApi). Short calls get a deadline; Rendezvous and
 * NextTask wait as long as the coordinator needs (they return when the generation forms or the next task
 * is ready). Errors keep their gRPC status code and name the coordinator.
 */

const CALL_DEADLINE_MS = 10_000;
const STATE_CHUNK_BYTES = 1 << 20;
/** A state download (ResNet-50 with Adam is about 0.5 GB) gets minutes, not forever: a refusal or a lost coordinator must end it. */
const STATE_DEADLINE_MS = 5 * 60_000;

export class CoordinatorConnection implements CoordinatorApi {
  private readonly client: GeneratedClient;
  private credential = '';

  constructor(
    readonly address: string,
    credentials: grpc.ChannelCredentials,
    maxMessageBytes: number,
  ) {
    const proto = loadCoordinatorProto();
    this.client = new proto.Coordinator(address, credentials, channelOptions(maxMessageBytes));
  }

  close(): void {
    this.client.close();
  }

  /** Registers; the reply's credential then goes with every later call (and a re-registration under this id). */
  async register(request: RegisterRequest): Promise<RegisterReply__Output> {
    const reply = await this.unary<RegisterReply__Output>('Register', (cb) => this.client.Register(request, this.metadata(), this.deadline(), cb));
    this.credential = reply.credential;
    return reply;
  }

  /** Presents `credential` from now on: a connection of the same worker that did not register itself (its heartbeat thread). */
  adoptCredential(credential: string): void {
    this.credential = credential;
  }

  heartbeat(workerId: string, generation: number): Promise<HeartbeatReply__Output> {
    return this.unary('Heartbeat', (cb) => this.client.Heartbeat({ workerId, generation }, this.metadata(), this.deadline(), cb));
  }

  rendezvous(workerId: string, lastGeneration: number, backend: string): Promise<RendezvousReply__Output> {
    return this.unary('Rendezvous', (cb) => this.client.Rendezvous({ workerId, lastGeneration, backend }, this.metadata(), cb));
  }

  nextTask(workerId: string, generation: number, finishedTask: number): Promise<Task__Output> {
    return this.unary('NextTask', (cb) => this.client.NextTask({ workerId, generation, finishedTask }, this.metadata(), cb));
  }

  async reportProgress(report: ProgressReport): Promise<void> {
    await this.unary('ReportProgress', (cb) => this.client.ReportProgress(report, this.metadata(), this.deadline(), cb));
  }

  async reportEvaluation(report: EvaluationReport): Promise<void> {
    await this.unary('ReportEvaluation', (cb) => this.client.ReportEvaluation(report, this.metadata(), this.deadline(), cb));
  }

  async reportFailure(
    workerId: string,
    generation: number,
    reason: string,
    willRejoin: boolean,
    reached: StepPosition = { phaseIndex: 0, step: 0 },
    badInput = false,
  ): Promise<void> {
    await this.unary('ReportFailure', (cb) =>
      this.client.ReportFailure({ workerId, generation, reason, willRejoin, badInput, ...reached }, this.metadata(), this.deadline(), cb),
    );
  }

  fetchState(workerId: string, generation: number, phaseIndex: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      const call = this.client.FetchState({ workerId, generation, phaseIndex }, this.metadata(), this.deadline(STATE_DEADLINE_MS));
      call.on('data', (chunk) => parts.push(chunk.data));
      call.on('error', (error: grpc.ServiceError) => reject(this.failure('FetchState', error)));
      call.on('end', () => resolve(Buffer.concat(parts)));
    });
  }

  uploadState(workerId: string, generation: number, phaseIndex: number, step: number, state: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.client.UploadState(this.metadata(), (error) => (error ? reject(this.failure('UploadState', error)) : resolve()));
      void (async () => {
        for (let offset = 0; offset < state.length || offset === 0; offset += STATE_CHUNK_BYTES) {
          const data = state.subarray(offset, offset + STATE_CHUNK_BYTES);
          const first = offset === 0 ? { workerId, generation, phaseIndex, step, totalBytes: state.length } : {};
          if (!call.write({ ...first, data })) await new Promise((drained) => call.once('drain', drained));
          if (state.length === 0) break;
        }
        call.end();
      })();
    });
  }

  /** The credential of this worker's registration, once it has one. */
  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.credential !== '') metadata.set(CREDENTIAL_METADATA_KEY, this.credential);
    return metadata;
  }

  private deadline(ms = CALL_DEADLINE_MS): grpc.CallOptions {
    return { deadline: Date.now() + ms };
  }

  private unary<T>(method: string, start: (callback: (error: grpc.ServiceError | null, value?: T) => void) => void): Promise<T> {
    return new Promise((resolve, reject) => {
      start((error, value) => (error ? reject(this.failure(method, error)) : resolve(value!)));
    });
  }

  private failure(method: string, error: grpc.ServiceError): CoordinatorCallError {
    return new CoordinatorCallError(error.code ?? grpc.status.UNKNOWN, refusalReasonOf(error.metadata), method, this.address, error.details || error.message);
  }
}
