import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { encodeHello, ReplyReader } from '../../collective/tcp-frames.js';
import { HELLO_TIMEOUT_MS } from '../../collective/tcp-listener.js';
import { readTlsMaterial, type TlsMaterial } from '../../shared/rpc/security.js';
import { channelOptions } from '../../shared/rpc/server.js';
import { firstWrongSum, openRing, patternArrays, type Rank, startRank, startRanks, stopRanks, TEST_OPTIONS } from '../helpers/collective-ring.js';
import { issueTestCertificates } from '../helpers/tls.js';
import { announceOversizedMessage, type ProbeBehaviour, type ProbeOutcome, probe } from './socket-probe.js';

/**
 * A worker's two listening ports under hostile connections on loopback: its bulk data port
 * (collective/tcp-listener.ts, plain and with mutual TLS) and its gRPC port (Collective and Health). The
 * bounds: a malformed hello or TLS record is refused and closed at once; a connection that says no hello
 * (or finishes no TLS handshake) is closed HELLO_TIMEOUT_MS (30 s) after it was accepted, however it
 * trickles; on the gRPC port, garbage is closed at once and a peer that answers no HTTP/2 ping is closed
 * after the keepalive time and timeout (10 s + 5 s). A length prefix is checked before anything of the
 * size it announces is allocated. Afterwards the same ranks still all-reduce. About forty seconds, mostly
 * waiting for the deadlines, with every probe running at once.
 */

/** How late past its bound a close may come on a loaded machine. */
const SLACK_MS = 10_000;
/** A refusal is answered and the connection closed at once (the listener cuts it after 1 s at most). */
const AT_ONCE_MS = 5_000;
const keepalive = channelOptions(TEST_OPTIONS.maxMessageBytes);
const GRPC_DEADLINE_MS = keepalive['grpc.keepalive_time_ms']! + keepalive['grpc.keepalive_timeout_ms']!;

/** 4 KiB that are neither a bulk-channel hello, nor a TLS record, nor the HTTP/2 preface. */
const GARBAGE = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 151 + 17) & 0xff));
/** The hello a successor would send: trickled a byte a second, it takes 86 s, far past the deadline. */
const HELLO = encodeHello({ workerId: 'w1', generation: 1, sessionKey: randomBytes(32), nonce: randomBytes(32) });
/** A hello header announcing a worker id and a session key of 64 KiB each. */
const HUGE_HELLO = Buffer.from(HELLO.subarray(0, 52));
HUGE_HELLO.writeUInt16LE(0xffff, 6);
HUGE_HELLO.writeUInt16LE(0xffff, 8);
/** The start of a TLS ClientHello record that announces 512 bytes. */
const CLIENT_HELLO = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), randomBytes(100)]);
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

const sending = (bytes: Buffer): ProbeBehaviour => ({ kind: 'send', bytes });
const SILENT: ProbeBehaviour = { kind: 'silent' };
const trickling = (bytes: Buffer): ProbeBehaviour => ({ kind: 'trickle', bytes, everyMs: 1000 });

/** The refusal a bulk listener sent, as "reason: message". */
function refusalIn(received: Buffer): string {
  const reply = new ReplyReader().push(received)?.reply;
  assert.ok(reply && !reply.accepted, `expected a refusal, got ${received.length} bytes`);
  return `${reply.refusal.reason}: ${reply.refusal.message}`;
}

function assertClosedAtDeadline(outcome: ProbeOutcome, deadlineMs: number, what: string): void {
  assert.ok(outcome.afterMs >= deadlineMs - 1000, `${what} was closed after ${outcome.afterMs} ms, before the ${deadlineMs} ms deadline`);
  assert.ok(outcome.afterMs <= deadlineMs + SLACK_MS, `${what} was closed after ${outcome.afterMs} ms`);
}

describe('raw-socket probes of a worker’s data and gRPC ports', function () {
  this.timeout(240_000);
  const dir = mkdtempSync(join(tmpdir(), 'autoprune-probes-'));
  let tls: TlsMaterial;
  let plain: Rank[] = [];
  let secured: Rank[] = [];
  const probes = new Map<string, Promise<ProbeOutcome>>();
  let memoryGrowth = 0;
  let oversized: { status: number; message: string };

  /** Starts a probe now; its test awaits it. */
  const launch = (name: string, port: number, behaviour: ProbeBehaviour, boundMs: number) => {
    const running = probe(port, behaviour, boundMs + SLACK_MS);
    running.catch(() => {}); // awaited (and reported) by its test
    probes.set(name, running);
  };
  const outcome = (name: string) => probes.get(name)!;

  before(async () => {
    tls = readTlsMaterial(issueTestCertificates(dir, 'cluster'));
    plain = await startRanks(2);
    secured = [await startRank('t0', { tls }), await startRank('t1', { tls })];
    const data = plain[0]!.bulk.port;
    const rpc = plain[0]!.server.port;
    // The length prefixes first and alone, so that the memory they might take is theirs.
    const before = process.memoryUsage().arrayBuffers;
    launch('data: huge hello', data, sending(HUGE_HELLO), AT_ONCE_MS);
    await outcome('data: huge hello');
    oversized = await announceOversizedMessage(rpc, '/grpc.health.v1.Health/Check', 0xfffffff0, 64 * 1024, AT_ONCE_MS + SLACK_MS);
    memoryGrowth = process.memoryUsage().arrayBuffers - before;

    launch('data: garbage', data, sending(GARBAGE), AT_ONCE_MS);
    launch('data: half-open', data, SILENT, HELLO_TIMEOUT_MS);
    launch('data: slowloris', data, trickling(HELLO), HELLO_TIMEOUT_MS);
    const tlsData = secured[0]!.bulk.port;
    launch('tls: garbage', tlsData, sending(GARBAGE), AT_ONCE_MS);
    launch('tls: half-open', tlsData, SILENT, HELLO_TIMEOUT_MS);
    launch('tls: slowloris', tlsData, trickling(CLIENT_HELLO), HELLO_TIMEOUT_MS);
    launch('grpc: garbage', rpc, sending(GARBAGE), AT_ONCE_MS);
    launch('grpc: half-open', rpc, SILENT, GRPC_DEADLINE_MS);
    launch('grpc: slowloris', rpc, trickling(HTTP2_PREFACE), GRPC_DEADLINE_MS);
  });
  after(async () => {
    await Promise.allSettled(probes.values());
    await stopRanks([...plain, ...secured]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('data port: refuses garbage and a hello announcing 64 KiB fields at once, saying why', async () => {
    const garbage = await outcome('data: garbage');
    assert.ok(garbage.afterMs < AT_ONCE_MS, `closed after ${garbage.afterMs} ms`);
    assert.equal(refusalIn(garbage.received), 'protocol: not an autoprune bulk-channel hello');
    const huge = await outcome('data: huge hello');
    assert.ok(huge.afterMs < AT_ONCE_MS, `closed after ${huge.afterMs} ms`);
    assert.equal(refusalIn(huge.received), 'protocol: hello fields too long');
  });

  it('gRPC port: refuses a message announced at 4 GiB before reading it, and memory does not grow', () => {
    assert.deepEqual(oversized, {
      status: grpc.status.RESOURCE_EXHAUSTED,
      message: `Received message larger than max (4294967280 vs ${TEST_OPTIONS.maxMessageBytes})`,
    });
    assert.ok(memoryGrowth < 64 << 20, `array buffers grew by ${memoryGrowth} bytes`);
  });

  it(`data port: closes a half-open connection and a slowloris at the hello deadline (${HELLO_TIMEOUT_MS / 1000} s)`, async () => {
    assertClosedAtDeadline(await outcome('data: half-open'), HELLO_TIMEOUT_MS, 'the half-open connection');
    const slow = await outcome('data: slowloris');
    assertClosedAtDeadline(slow, HELLO_TIMEOUT_MS, 'the slowloris');
    assert.ok(slow.sent >= HELLO_TIMEOUT_MS / 1000 - 5 && slow.sent < HELLO.length, `it had trickled ${slow.sent} bytes`);
    assert.equal(slow.received.length, 0, 'nothing answered');
  });

  it('data port with TLS: closes garbage at once, a silent or trickling handshake at the deadline', async () => {
    assert.ok((await outcome('tls: garbage')).afterMs < AT_ONCE_MS);
    assertClosedAtDeadline(await outcome('tls: half-open'), HELLO_TIMEOUT_MS, 'the half-open connection');
    const slow = await outcome('tls: slowloris');
    assertClosedAtDeadline(slow, HELLO_TIMEOUT_MS, 'the trickled handshake');
    assert.ok(slow.sent >= HELLO_TIMEOUT_MS / 1000 - 5, `it had trickled ${slow.sent} bytes`);
  });

  it(`gRPC port: closes garbage at once, a half-open connection and a slowloris at the keepalive deadline (${GRPC_DEADLINE_MS / 1000} s)`, async () => {
    assert.ok((await outcome('grpc: garbage')).afterMs < AT_ONCE_MS);
    assertClosedAtDeadline(await outcome('grpc: half-open'), GRPC_DEADLINE_MS, 'the half-open connection');
    const slow = await outcome('grpc: slowloris');
    assertClosedAtDeadline(slow, GRPC_DEADLINE_MS, 'the slowloris');
    assert.ok(slow.sent < HTTP2_PREFACE.length, `it had trickled ${slow.sent} bytes`);
  });

  it('the same ranks then all-reduce correctly over tcp and grpc, and over tcp with TLS', async () => {
    await Promise.allSettled(probes.values());
    const rings = [
      { ranks: plain, generation: 1, options: { ...TEST_OPTIONS, transport: 'tcp' as const }, tls: undefined },
      { ranks: plain, generation: 2, options: { ...TEST_OPTIONS, transport: 'grpc' as const }, tls: undefined },
      { ranks: secured, generation: 1, options: { ...TEST_OPTIONS, transport: 'tcp' as const }, tls },
    ];
    for (const ring of rings) {
      const reducers = await openRing(ring.ranks, ring.generation, ring.options, ring.tls);
      const arrays = ring.ranks.map((_, rank) => patternArrays(rank, [7, 300_003], ring.generation));
      await Promise.all(reducers.map((reducer, rank) => reducer.allReduce(arrays[rank]!, { step: ring.generation })));
      arrays.forEach((mine, rank) => assert.equal(firstWrongSum(mine, 2, ring.generation), undefined, `${ring.options.transport} rank ${rank}`));
      await Promise.all(reducers.map((reducer) => reducer.close()));
    }
  });
});
