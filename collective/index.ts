/**
 * The collectives a worker runs with its peers: the ring all-reduce, the endpoint that admits the peers'
 * streams and connections, and the two transports (gRPC streams, the raw TCP/TLS bulk channel). Code
 * outside this folder imports from here only.
 */
export { AllReducer } from './all-reducer.js';
export { CollectiveEndpoint, type PeerClaim } from './endpoint.js';
export { CollectiveError } from './errors.js';
export type { CollectiveOptions, RingGroup, RingMember } from './group.js';
export { collectiveService } from './grpc-service.js';
export { type BulkListener, type BulkListenerOptions, startBulkListener } from './tcp-listener.js';
