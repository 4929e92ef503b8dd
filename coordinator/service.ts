import * as grpc from '@grpc/grpc-js';
import type { CoordinatorHandlers } from '../shared/proto/generated/autoprune/v1/Coordinator.js';
import { loadCoordinatorProto } from '../shared/proto/load.js';
import { RpcFailure, toServiceError } from '../shared/rpc/failure.js';
import { presentedCredential } from '../shared/rpc/security.js';
import type { Coordinator } from './coordinator.js';
import { refusals } from './refusals.js';

/**
 * The Coordinator gRPC service: decodes calls, checks the caller's credential (every call but Register),
 * hands them to the Coordinator, maps refusals to statuses.
 */

const STATE_CHUNK_BYTES = 1 << 20;

export function coordinatorService(coordinator: Coordinator, maxStateBytes: number): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation, string] {
  const proto = loadCoordinatorProto();
  const unary =
    <Req, Res>(handle: (request: Req, metadata: grpc.Metadata) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      Promise.resolve()
        .then(() => handle(call.request, call.metadata))
        .then(
          (reply) => callback(null, reply),
          (error: unknown) => callback(toServiceError(error)),
        );
    };
  /** A call of a registered worker: refused unless it presents the credential of the id it names. */
  const authenticated = <Req extends { readonly workerId: string }, Res>(handle: (request: Req) => Res | Promise<Res>) =>
    unary<Req, Res>((request, metadata) => {
      coordinator.authenticate(request.workerId, presentedCredential(metadata));
      return handle(request);
    });
  const handlers: CoordinatorHandlers = {
    Register: unary((r, metadata) => coordinator.register(r, presentedCredential(metadata))),
    Heartbeat: authenticated((r) => coordinator.heartbeat(r.workerId)),
    Rendezvous: authenticated((r) => coordinator.rendezvous(r.workerId, r.lastGeneration, r.backend)),
    NextTask: authenticated((r) => coordinator.nextTask(r.workerId, r.generation, r.finishedTask)),
    ReportProgress: authenticated((r) => {
      coordinator.reportProgress(r);
      return {};
    }),
    ReportEvaluation: authenticated((r) => {
      coordinator.reportEvaluation(r);
      return {};
    }),
    ReportFailure: authenticated((r) => {
      coordinator.reportFailure(r.workerId, r.generation, r.reason, r.willRejoin, { phaseIndex: r.phaseIndex, step: r.step }, r.badInput);
      return {};
    }),
    FetchState: (call) => {
      try {
        const { workerId, generation, phaseIndex } = call.request;
        coordinator.authenticate(workerId, presentedCredential(call.metadata));
        const state = coordinator.initialState(workerId, generation, phaseIndex);
        for (let offset = 0; offset < state.length; offset += STATE_CHUNK_BYTES) {
          call.write({ totalBytes: offset === 0 ? state.length : 0, data: state.subarray(offset, offset + STATE_CHUNK_BYTES) });
        }
        call.end();
      } catch (error) {
        // A server stream ends with a status (and the refusal's metadata) when it emits 'error'; destroying it would send none.
        call.emit('error', toServiceError(error));
      }
    },
    UploadState: (call, callback) => {
      let header: { workerId: string; generation: number; position: { phaseIndex: number; step: number }; totalBytes: number } | undefined;
      const parts: Buffer[] = [];
      let received = 0;
      let refused = false;
      const refuse = (error: unknown) => {
        if (refused) return;
        refused = true;
        callback(toServiceError(error));
      };
      call.on('data', (chunk) => {
        if (refused) return;
        if (!header) {
          header = {
            workerId: chunk.workerId,
            generation: chunk.generation,
            position: { phaseIndex: chunk.phaseIndex, step: chunk.step },
            totalBytes: chunk.totalBytes,
          };
          // Who sends, and whether it may send this state here, is settled before a byte of it is kept.
          try {
            coordinator.authenticate(header.workerId, presentedCredential(call.metadata));
            if (header.totalBytes > maxStateBytes)
              throw new RpcFailure(grpc.status.RESOURCE_EXHAUSTED, 'too-large', `state of ${header.totalBytes} bytes exceeds the limit of ${maxStateBytes}`);
            coordinator.admitState(header.workerId, header.generation, header.position);
          } catch (error) {
            return refuse(error);
          }
        }
        received += chunk.data.length;
        if (received > header.totalBytes)
          return refuse(
            new RpcFailure(grpc.status.INVALID_ARGUMENT, 'invalid-argument', `state stream is longer than the announced ${header.totalBytes} bytes`),
          );
        parts.push(chunk.data);
      });
      call.on('error', refuse);
      call.on('end', () => {
        if (refused) return;
        // A stream without a first chunk names no worker, so it presents no worker's credential either.
        if (!header) return refuse(refusals.unauthenticated());
        if (received !== header.totalBytes)
          return refuse(new RpcFailure(grpc.status.INVALID_ARGUMENT, 'invalid-argument', `state stream ended after ${received} of ${header.totalBytes} bytes`));
        coordinator.receiveState(header.workerId, header.generation, header.position, Buffer.concat(parts)).then(() => callback(null, {}), refuse);
      });
    },
  };
  return [proto.Coordinator.service, handlers, 'autoprune.v1.Coordinator'];
}
