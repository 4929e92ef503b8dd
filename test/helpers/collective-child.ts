import { createHash } from 'node:crypto';
import { AllReducer } from '../../collective/all-reducer.js';
import type { CollectiveOptions, RingMember } from '../../collective/group.js';
import { firstWrongSum, patternArrays, startRank } from './collective-ring.js';

/**
 * One rank of a ring in its own process (the test's child-process case): starts its endpoint, gRPC
 * server and bulk listener, reports its addresses, then runs the all-reduces it is told to over IPC and
 * reports whether the sums were right, with a digest of the results to compare across ranks.
 */

export type ChildRequest =
  | {
      readonly type: 'run';
      readonly generation: number;
      readonly rank: number;
      readonly members: readonly RingMember[];
      readonly sessionKey: string;
      readonly options: CollectiveOptions;
      readonly sizes: readonly number[];
      readonly steps: readonly number[];
    }
  | { readonly type: 'exit' };

export type ChildReply =
  | { readonly type: 'ready'; readonly member: RingMember }
  | { readonly type: 'done'; readonly wrong: string | undefined; readonly digest: string }
  | { readonly type: 'failed'; readonly error: string };

async function main(): Promise<void> {
  const rank = await startRank(process.argv[2]!);
  const reply = (message: ChildReply) => process.send!(message);
  reply({ type: 'ready', member: rank.member });
  process.on('message', (request: ChildRequest) => {
    if (request.type === 'exit') {
      void Promise.all([rank.server.close(100), rank.bulk.close()]).then(() => process.exit(0));
      return;
    }
    void (async () => {
      const world = request.members.length;
      const group = { generation: request.generation, rank: request.rank, world, ring: request.members, sessionKey: Buffer.from(request.sessionKey, 'hex') };
      rank.endpoint.setGroup(group);
      const reducer = await AllReducer.open(rank.endpoint, group, request.options);
      let wrong: string | undefined;
      const digest = createHash('sha256');
      for (const step of request.steps) {
        const arrays = patternArrays(request.rank, request.sizes, step);
        await reducer.allReduce(arrays, { step });
        wrong ??= firstWrongSum(arrays, world, step);
        for (const array of arrays) digest.update(new Uint8Array(array.buffer));
      }
      await reducer.close();
      reply({ type: 'done', wrong, digest: digest.digest('hex') });
    })().catch((error: Error) => reply({ type: 'failed', error: error.message }));
  });
}

void main();
