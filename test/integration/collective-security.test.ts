import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AllReducer, CollectiveError, CollectiveTimeoutError } from '../../collective/all-reducer.js';
import type { CollectiveOptions, RingMember } from '../../collective/group.js';
import { encodeHello, type Reply, ReplyReader } from '../../collective/tcp-frames.js';
import { loadCollectiveProto } from '../../shared/proto/load.js';
import { readTlsMaterial, type TlsMaterial } from '../../shared/rpc/security.js';
import { firstWrongSum, groupOf, openRing, patternArrays, type Rank, startRank, startRanks, stopRanks, TEST_OPTIONS } from '../helpers/collective-ring.js';
import { issueTestCertificates } from '../helpers/tls.js';

const QUICK: CollectiveOptions = { ...TEST_OPTIONS, timeoutMs: 500, chunkBytes: 64 * 1024 };

/** Puts `ranks` into generation `generation` with `key` (the same for all unless `keys` says otherwise). */
function enter(ranks: readonly Rank[], generation: number, keys: readonly Uint8Array[]) {
  const members = ranks.map((rank) => rank.member);
  return ranks.map((rank, index) => {
    const group = groupOf(members, index, generation, keys[index % keys.length]!);
    rank.endpoint.setGroup(group);
    return group;
  });
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.ok(outcome instanceof Error, `expected a rejection, got ${String(outcome)}`);
  return outcome;
}

/** Opens an Exchange call as `claim` says and waits for the first thing the receiver answers. */
function exchange(address: string, claim: { worker: string; generation: number; key: Uint8Array }) {
  const client = new (loadCollectiveProto().Collective)(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
  const metadata = new grpc.Metadata();
  metadata.set('x-autoprune-worker', claim.worker);
  metadata.set('x-autoprune-generation', String(claim.generation));
  metadata.set('x-autoprune-session', Buffer.from(claim.key).toString('hex'));
  const call = client.Exchange(metadata);
  const answer = new Promise<'admitted' | grpc.ServiceError>((resolve) => {
    call.once('metadata', () => resolve('admitted'));
    call.once('error', (error: grpc.ServiceError) => resolve(error));
  });
  const status = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
  return { call, answer, status, close: () => client.close() };
}

/** Says hello to a bulk listener as `claim` says and reads its reply. */
async function hello(port: number, claim: { worker: string; generation: number; key: Uint8Array }): Promise<Reply> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(encodeHello({ workerId: claim.worker, generation: claim.generation, sessionKey: claim.key, nonce: randomBytes(32) }));
  const replies = new ReplyReader();
  try {
    return await new Promise<Reply>((resolve, reject) => {
      socket.on('data', (data: Buffer) => {
        const done = replies.push(data);
        if (done !== undefined) resolve(done.reply);
      });
      socket.on('error', reject);
    });
  } finally {
    socket.destroy();
  }
}

describe('collective: refusals', () => {
  let ranks: Rank[] = [];
  const key = randomBytes(32);

  before(async () => {
    // Only w1 limits messages and frames to 64 KiB, so that only chunks towards w1 are too large.
    ranks = [await startRank('w0', { maxMessageBytes: 1 << 20 }), await startRank('w1', { maxMessageBytes: 64 * 1024 })];
  });
  after(async () => {
    await stopRanks(ranks);
  });

  it('gRPC: refuses a wrong session key (UNAUTHENTICATED), a stale generation (FAILED_PRECONDITION), a stranger (PERMISSION_DENIED)', async () => {
    enter(ranks, 1, [key]);
    enter(ranks, 2, [key]);
    const address = ranks[1]!.member.address;
    const cases = [
      {
        claim: { worker: 'w0', generation: 2, key: randomBytes(32) },
        code: grpc.status.UNAUTHENTICATED,
        message: /worker w0 did not present generation 2's session key/,
      },
      {
        claim: { worker: 'w0', generation: 1, key },
        code: grpc.status.FAILED_PRECONDITION,
        message: /worker w0 presented generation 1 but worker w1 is at generation 2; older generations are refused/,
      },
      {
        claim: { worker: 'w0', generation: 3, key },
        code: grpc.status.FAILED_PRECONDITION,
        message: /worker w0 presented generation 3 but worker w1 is at generation 2/,
      },
      {
        claim: { worker: 'w7', generation: 2, key },
        code: grpc.status.PERMISSION_DENIED,
        message: /worker w7 is not the predecessor of worker w1 in generation 2 \(expected w0\)/,
      },
    ];
    for (const { claim, code, message } of cases) {
      const call = exchange(address, claim);
      const answer = await call.answer;
      call.close();
      assert.notEqual(answer, 'admitted', `${JSON.stringify(claim)} was admitted`);
      if (answer === 'admitted') continue;
      assert.equal(answer.code, code, answer.details);
      assert.match(answer.details, message);
    }
  });

  it('gRPC: refuses a chunk over the message limit (RESOURCE_EXHAUSTED)', async () => {
    enter(ranks, 3, [key]);
    const call = exchange(ranks[1]!.member.address, { worker: 'w0', generation: 3, key });
    assert.equal(await call.answer, 'admitted');
    call.call.write({
      generation: 3,
      sequence: 0,
      step: 0,
      bucket: 0,
      round: 0,
      offset: 0,
      elements: 17_000,
      encoding: 'ENCODING_FLOAT32',
      data: Buffer.alloc(68_000),
    });
    const status = await call.status;
    call.close();
    assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(status.details, /larger than max \(\d+ vs\.? 65536\)/);
  });

  it('TCP: refuses a wrong session key, a stale or future generation and a stranger, saying why', async () => {
    enter(ranks, 4, [key]);
    enter(ranks, 5, [key]);
    const port = ranks[0]!.bulk.port; // w0's listener serves its successor, w1
    const cases = [
      {
        claim: { worker: 'w1', generation: 5, key: randomBytes(32) },
        reason: 'unauthenticated',
        message: /worker w1 did not present generation 5's session key/,
      },
      {
        claim: { worker: 'w1', generation: 4, key },
        reason: 'stale-generation',
        message: /worker w1 presented generation 4 but worker w0 is at generation 5; older generations are refused/,
      },
      {
        claim: { worker: 'w1', generation: 6, key },
        reason: 'future-generation',
        message: /worker w1 presented generation 6 but worker w0 is at generation 5/,
      },
      {
        claim: { worker: 'w9', generation: 5, key },
        reason: 'not-successor',
        message: /worker w9 is not the successor of worker w0 in generation 5 \(expected w1\)/,
      },
    ];
    for (const { claim, reason, message } of cases) {
      const reply = await hello(port, claim);
      assert.equal(reply.accepted, false, `${JSON.stringify(claim)} was accepted`);
      if (reply.accepted) continue;
      assert.equal(reply.refusal.reason, reason);
      assert.match(reply.refusal.message, message);
    }
  });

  it('TCP: ranks with different session keys cannot open a ring', async () => {
    const groups = enter(ranks, 6, [key, randomBytes(32)]);
    const errors = await Promise.all(ranks.map((rank, index) => rejection(AllReducer.open(rank.endpoint, groups[index]!, QUICK))));
    assert.ok(errors[1] instanceof CollectiveError);
    assert.match(
      errors[1].message,
      /predecessor worker w0 \(127\.0\.0\.1:\d+, rank 0\) refused the bulk connection: worker w1 did not present generation 6's session key/,
    );
    assert.equal(errors[1].peer?.workerId, 'w0');
  });

  for (const transport of ['tcp', 'grpc'] as const) {
    it(`${transport}: a chunk over the receiver's limit is refused and fails the all-reduce on both ends, naming each other`, async () => {
      const groups = enter(ranks, transport === 'tcp' ? 7 : 8, [key]);
      const options: CollectiveOptions = { ...QUICK, transport, chunkBytes: 256 * 1024, maxMessageBytes: 1 << 20 };
      const reducers = await Promise.all(ranks.map((rank, index) => AllReducer.open(rank.endpoint, groups[index]!, options)));
      const errors = await Promise.all(reducers.map((reducer, rank) => rejection(reducer.allReduce(patternArrays(rank, [200_000], 0), { step: 0 }))));
      errors.forEach((error, rank) => {
        assert.ok(error instanceof CollectiveError, error.message);
        assert.equal(error.peer?.workerId, `w${1 - rank}`, error.message);
      });
      // The receiver fails first; in a ring of two its failure reaches the sender both ways, in either order.
      // (grpc-js ends the refused call without telling the service why: the raw test above checks the status.)
      const refusal =
        transport === 'tcp'
          ? 'sent a chunk that was refused: frame of 262144 bytes exceeds the limit of 65536 bytes'
          : 'cancelled its collective stream \\(it gave up, or sent a message over the size limit\\)';
      assert.match(errors[1]!.message, new RegExp(`^predecessor worker w0 \\(127\\.0\\.0\\.1:\\d+, rank 0\\) ${refusal}`));
      await Promise.all(reducers.map((reducer) => reducer.close()));
    });
  }
});

describe('collective: peers that do not answer', () => {
  let ranks: Rank[] = [];
  let generation = 0;

  before(async () => {
    ranks = await startRanks(2);
  });
  after(async () => {
    await stopRanks(ranks);
  });

  for (const transport of ['tcp', 'grpc'] as const) {
    it(`${transport}: an all-reduce that a rank never joins fails after the timeout, naming it and what was awaited`, async () => {
      const reducers = await openRing(ranks, ++generation, { ...QUICK, transport });
      const started = Date.now();
      const error = await rejection(reducers[0]!.allReduce(patternArrays(0, [1000, 300_000], 7), { step: 7 }));
      const waited = Date.now() - started;
      assert.ok(error instanceof CollectiveTimeoutError, error.message);
      assert.equal(error.peer.workerId, 'w1');
      const address = transport === 'tcp' ? ranks[1]!.member.dataAddress : ranks[1]!.member.address;
      assert.ok(error.message.includes(`worker w1 (${address}, rank 1)`), error.message);
      assert.match(error.message, new RegExp(`sent nothing for 500 ms; awaiting generation ${generation}, sequence 0, step 7, bucket 0, round 0`));
      assert.ok(waited >= 450 && waited < 5000, `rejected after ${waited} ms`);
      assert.equal(await rejection(reducers[0]!.allReduce(patternArrays(0, [10], 8), { step: 8 })), error, 'unusable after a failure');
      await Promise.all(reducers.map((reducer) => reducer.close()));
    });
  }

  for (const transport of ['tcp', 'grpc'] as const) {
    it(`${transport}: a peer that accepts connections and stays silent fails the open after the timeout, naming it`, async () => {
      const sockets: net.Socket[] = [];
      const silent = net.createServer((socket) => sockets.push(socket));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const at = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const members: RingMember[] = [ranks[0]!.member, { workerId: 'silent', address: at, dataAddress: at }];
      const group = groupOf(members, 0, ++generation, randomBytes(32));
      ranks[0]!.endpoint.setGroup(group);
      const started = Date.now();
      const error = await rejection(AllReducer.open(ranks[0]!.endpoint, group, { ...QUICK, transport }));
      const waited = Date.now() - started;
      assert.ok(error instanceof CollectiveTimeoutError, error.message);
      assert.equal(error.peer.workerId, 'silent');
      assert.ok(error.message.includes(`worker silent (${at}, rank 1)`), error.message);
      assert.ok(waited >= 450 && waited < 5000, `rejected after ${waited} ms`);
      for (const socket of sockets) socket.destroy();
      silent.close();
    });
  }

  it('gRPC: a successor that refuses connections fails the open after the timeout, naming it', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const at = `127.0.0.1:${(closed.address() as net.AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const members: RingMember[] = [ranks[0]!.member, { workerId: 'gone', address: at, dataAddress: at }];
    const group = groupOf(members, 0, ++generation, randomBytes(32));
    ranks[0]!.endpoint.setGroup(group);
    const error = await rejection(AllReducer.open(ranks[0]!.endpoint, group, { ...QUICK, transport: 'grpc' }));
    assert.ok(error instanceof CollectiveTimeoutError, error.message);
    assert.match(
      error.message,
      new RegExp(`successor worker gone \\(${at.replace(/\./g, '\\.')}, rank 1\\) did not admit a collective stream within 500 ms \\(last: UNAVAILABLE`),
    );
  });
});

describe('collective: mutual TLS', () => {
  let dir: string;
  let tls: TlsMaterial;
  let foreign: TlsMaterial;

  const issue = (name: string): TlsMaterial => readTlsMaterial(issueTestCertificates(dir, name));

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'collective-tls-'));
    tls = issue('cluster');
    foreign = issue('foreign');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const transport of ['tcp', 'grpc'] as const) {
    it(`runs a 2-rank all-reduce over ${transport} with mutual TLS`, async () => {
      const ranks = await startRanks(2, { tls });
      try {
        const reducers = await openRing(ranks, 1, { ...TEST_OPTIONS, transport, chunkBytes: 64 * 1024, streams: 2 }, tls);
        const arrays = ranks.map((_, rank) => patternArrays(rank, [5, 100_003], 3));
        await Promise.all(reducers.map((reducer, rank) => reducer.allReduce(arrays[rank]!, { step: 3 })));
        arrays.forEach((mine, rank) => assert.equal(firstWrongSum(mine, 2, 3), undefined, `rank ${rank}`));
        await Promise.all(reducers.map((reducer) => reducer.close()));
      } finally {
        await stopRanks(ranks);
      }
    });

    it(`refuses a ${transport} peer whose certificate another CA signed`, async () => {
      const ranks = [await startRank('w0', { tls }), await startRank('w1', { tls: foreign })];
      try {
        const groups = enter(ranks, 1, [randomBytes(32)]);
        const errors = await Promise.all(
          ranks.map((rank, index) => rejection(AllReducer.open(rank.endpoint, groups[index]!, { ...QUICK, transport }, index === 0 ? tls : foreign))),
        );
        for (const error of errors) assert.ok(error instanceof CollectiveError, error.message);
        assert.equal((errors[0] as CollectiveError).peer?.workerId, 'w1');
      } finally {
        await stopRanks(ranks);
      }
    });
  }
});
