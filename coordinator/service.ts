import * as grpc from '@grpc/grpc-js';
import type { CoordinatorHandlers } from '../shared/proto/generated/autoprune/v1/Coordinator.js';
import { loadCoordinatorProto } from '../shared/proto/load.js';
import { RpcFailure, toServiceError } from '../shared/rpc/failure.js';
import type { Coordinator } from './coordinator.js';

/** The Coordinator gRPC service: decodes calls, hands them to the Coordinator, maps refusals to statuses. */

const STATE_CHUNK_BYTES = 1 << 20;

export function coordinatorService(coordinator: Coordinator, maxStateBytes: number): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation, string] {
  const proto = loadCoordinatorProto();
  const unary =
    <Req, Res>(handle: (request: Req) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      Promise.resolve()
        .then(() => handle(call.request))
        .then(
          (reply) => callback(null, reply),
          (error: unknown) => callback(toServiceError(error)),
        );
    };
  const handlers: CoordinatorHandlers = {
    Register: unary((r) => coordinator.register(r)),
    Heartbeat: unary((r) => coordinator.heartbeat(r.workerId)),
    Rendezvous: unary((r) => coordinator.rendezvous(r.workerId, r.lastGeneration, r.backend)),
    NextTask: unary((r) => coordinator.nextTask(r.workerId, r.generation, r.finishedTask)),
    ReportProgress: unary((r) => {
      coordinator.reportProgress(r);
      return {};
    }),
    ReportEvaluation: unary((r) => {
      coordinator.reportEvaluation(r);
      return {};
    }),
    ReportFailure: unary((r) => {
      coordinator.reportFailure(r.workerId, r.generation, r.reason, r.willRejoin, { phaseIndex: r.phaseIndex, step: r.step }, r.badInput);
      return {};
    }),
    FetchState: (call) => {
      try {
        const state = coordinator.initialState(call.request.workerId, call.request.generation, call.request.phaseIndex);
        for (let offset = 0; offset < state.length; offset += STATE_CHUNK_BYTES) {
          call.write({ totalBytes: offset === 0 ? state.length : 0, data: state.subarray(offset, offset + STATE_CHUNK_BYTES) });
        }
        call.end();
      } catch (error) {
        call.destroy(Object.assign(new Error(), toServiceError(error)));
      }
    },
    UploadState: (call, callback) => {
      let header: { workerId: string; generation: number; totalBytes: number } | undefined;
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
          header = { workerId: chunk.workerId, generation: chunk.generation, totalBytes: chunk.totalBytes };
          if (header.totalBytes > maxStateBytes)
            return refuse(
              new RpcFailure(grpc.status.RESOURCE_EXHAUSTED, 'too-large', `state of ${header.totalBytes} bytes exceeds the limit of ${maxStateBytes}`),
            );
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
        if (!header || received !== header.totalBytes)
          return refuse(
            new RpcFailure(grpc.status.INVALID_ARGUMENT, 'invalid-argument', `state stream ended after ${received} of ${header?.totalBytes ?? '?'} bytes`),
          );
        coordinator.receiveState(header.workerId, header.generation, Buffer.concat(parts)).then(() => callback(null, {}), refuse);
      });
    },
  };
  return [proto.Coordinator.service, handlers, 'autoprune.v1.Coordinator'];
}
