import type { CollectiveOptions, RingMember } from '../collective/index.js';
import { AllReducer, CollectiveEndpoint, collectiveService, startBulkListener } from '../collective/index.js';
import { serverCredentials } from '../shared/rpc/security.js';
import { startServer } from '../shared/rpc/server.js';

/**
 * One rank of the all-reduce benchmark, in its own process as a worker would be: an endpoint, a gRPC
 * server and a bulk listener on loopback. The parent (bench/allreduce.ts) tells it the ring and what to
 * run over IPC, and gets back the time of each all-reduce.
 */

export interface RunRequest {
  readonly type: 'run';
  readonly generation: number;
  readonly rank: number;
  readonly members: readonly RingMember[];
  readonly sessionKey: string;
  readonly options: CollectiveOptions;
  readonly bytes: number;
  readonly warmup: number;
  readonly iterations: number;
}

export type WorkerMessage =
  | { readonly type: 'ready'; readonly member: RingMember }
  | { readonly type: 'result'; readonly seconds: number[]; readonly correct: boolean }
  | { readonly type: 'failed'; readonly error: string };

async function main(): Promise<void> {
  const workerId = process.argv[2]!;
  const maxMessageBytes = 64 << 20;
  const endpoint = new CollectiveEndpoint({ workerId });
  const server = await startServer({
    bind: '127.0.0.1:0',
    credentials: serverCredentials(undefined),
    maxMessageBytes,
    services: [collectiveService(endpoint)],
  });
  const bulk = await startBulkListener(endpoint, { bind: '127.0.0.1:0', maxFrameBytes: maxMessageBytes });
  const send = (message: WorkerMessage) => process.send!(message);
  send({ type: 'ready', member: { workerId, address: `127.0.0.1:${server.port}`, dataAddress: `127.0.0.1:${bulk.port}` } });
  let values: Float32Array | undefined;
  process.on('message', (request: RunRequest | { type: 'exit' }) => {
    if (request.type === 'exit') {
      void Promise.all([server.close(100), bulk.close()]).then(() => process.exit(0));
      return;
    }
    void (async () => {
      const world = request.members.length;
      const group = { generation: request.generation, rank: request.rank, world, ring: request.members, sessionKey: Buffer.from(request.sessionKey, 'hex') };
      endpoint.setGroup(group);
      const reducer = await AllReducer.open(endpoint, group, request.options);
      if (values?.length !== request.bytes / 4) values = new Float32Array(request.bytes / 4);
      const barrier = new Float32Array(1);
      const seconds: number[] = [];
      let correct = true;
      for (let iteration = 0; iteration < request.warmup + request.iterations; iteration++) {
        // Values whose sums are exact in float32 and float16, refilled outside the timed part; the tiny
        // all-reduce after the fill keeps a rank still filling from slowing the others' timed part.
        values.fill((request.rank + 1) / 4096);
        await reducer.allReduce([barrier], { step: 2 * iteration });
        const start = process.hrtime.bigint();
        await reducer.allReduce([values], { step: 2 * iteration + 1 });
        if (iteration >= request.warmup) seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
        const expected = (world * (world + 1)) / 2 / 4096;
        correct &&= [0, values.length >> 1, values.length - 1].every((index) => values![index] === expected);
      }
      await reducer.close();
      send({ type: 'result', seconds, correct });
    })().catch((error: Error) => send({ type: 'failed', error: error.message }));
  });
}

void main();
