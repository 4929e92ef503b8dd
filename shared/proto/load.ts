import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as CollectiveProto } from './generated/collective.js';
import type { ProtoGrpcType as CoordinatorProto } from './generated/coordinator.js';

/**
 * The wire contract, loaded from proto/ at run time with the same options the TypeScript types were
 * generated with (`npm run proto`), so that types and runtime agree: 64-bit integers as numbers, enums
 * as their names, defaults filled in, oneofs named.
 */

export const PROTOCOL_VERSION = 1;

export const PROTO_DIR = process.env.AUTOPRUNE_PROTO_DIR ?? fileURLToPath(new URL('../../../proto', import.meta.url));

const LOADER_OPTIONS: protoLoader.Options = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

function load<T>(file: string): T {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, LOADER_OPTIONS)) as unknown as T;
}

export function loadCoordinatorProto(): CoordinatorProto['autoprune']['v1'] {
  return load<CoordinatorProto>('autoprune/v1/coordinator.proto').autoprune.v1;
}

export function loadCollectiveProto(): CollectiveProto['autoprune']['v1'] {
  return load<CollectiveProto>('autoprune/v1/collective.proto').autoprune.v1;
}
