import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { RunEvent } from '../../shared/events/types.js';
import { PROTOCOL_VERSION } from '../../shared/proto/load.js';
import { REFUSAL_METADATA_KEY } from '../../shared/rpc/failure.js';
import { CREDENTIAL_METADATA_KEY } from '../../shared/rpc/security.js';
import { type CliProcess, type CliResult, startCli } from '../helpers/cli.js';
import { type NatsServer, natsServerForTests } from '../helpers/nats-server.js';
import { pythonVenv } from '../helpers/python-venv.js';
import { RunEvents } from '../helpers/run-events.js';
import { skipBecause } from '../helpers/skip.js';
import { type AttackOutcome, PythonAttacker } from './python-attacker.js';

/**
 * The hardening review's attacks, made with a second gRPC implementation (Python grpcio, its stubs
 * compiled from the proto at run time) on a real run: an `autoprune coordinator` process with two
 * `autoprune worker` processes (w0, w1) training on loopback, its events followed on a real nats-server.
 * The attacker, "mallory", holds the join token and registered before the run started (the run takes up
 * to 3 workers and starts with the 2 at its rendezvous), so it has a credential of its own to misuse.
 * Every attack must be refused with its status and reason, and the run must complete with no failure,
 * recovery or departure. About a minute: the 30 s wait for the third worker, then 1500 short steps.
 */

const TOKEN = 'adversarial-join-token-0123456789';
const RUN_ID = 'adversarial';
const STEPS = 1500;
/** grpcio and protoc for Python, pinned by nothing: any recent release speaks the same protocol. */
const REQUIREMENTS = ['grpcio', 'grpcio-tools', 'protobuf'];

/** A LeNet-300-100 run long enough on any machine for the attacks to land while it trains. */
const CONFIG = {
  seed: 11,
  backend: 'wasm',
  model: { name: 'lenet300', dropout: 0 },
  data: { dataset: 'mnist', trainSubset: 1200, testSubset: 300 },
  batchSize: 64,
  phases: [{ phase: 'dense', steps: STEPS, weights: { lr: 1e-3 } }],
  evaluation: { every: 0, batchSize: 300 },
  logging: { every: 50 },
  // Up to 3 workers (mallory has the third place); the 2 real ones start it once this has passed.
  distributed: { minWorkers: 2, rendezvousTimeoutSeconds: 30 },
};

/** What an attack must end with: the status, our refusal reason (trailing metadata) if any, and the details. */
interface Expected {
  readonly code: string;
  readonly reason: string | undefined;
  readonly details?: string | RegExp;
}

const unauthenticated: Expected = {
  code: 'UNAUTHENTICATED',
  reason: 'unauthenticated',
  details: `the call needs the credential of a current registration in the ${CREDENTIAL_METADATA_KEY} metadata entry: register first`,
};
/** Over the coordinator's --max-message-mb 4: refused by gRPC before any handler, so without a reason. */
const oversized: Expected = { code: 'RESOURCE_EXHAUSTED', reason: undefined, details: /^Received message larger than max \(\d+ vs 4194304\)$/ };

const MEMBER_CALLS = ['heartbeat', 'report-failure', 'fetch-state', 'upload-state', 'rendezvous', 'next-task', 'report-progress', 'report-evaluation'];

describe('attacks on a running coordinator from Python grpcio', function () {
  this.timeout(900_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-attacks-'));
  let nats: NatsServer | undefined;
  let outcomes: ReadonlyMap<string, AttackOutcome>;
  let events: RunEvent[];
  let finishedDuringAttacks: boolean;
  let results: { coordinator: CliResult; workers: CliResult[]; attacker: { code: number | null; stderr: string } };

  before(async function () {
    // Made once per machine (minutes the first time); skipped only where this machine cannot make it.
    const venv = await pythonVenv(REQUIREMENTS);
    if ('missing' in venv) skipBecause(this, `the Python attack client cannot run: ${venv.missing}`);
    nats = await natsServerForTests();
    const configPath = join(root, 'attacks.yaml');
    writeFileSync(configPath, toYaml(CONFIG));
    const env = { AUTOPRUNE_JOIN_TOKEN: TOKEN };
    const followed = await RunEvents.follow(nats.url, RUN_ID);
    const processes: CliProcess[] = [];
    let attacker: PythonAttacker | undefined;
    try {
      const coordinator = startCli(
        [
          'coordinator',
          configPath,
          '--workers',
          '3',
          '--listen',
          '127.0.0.1:0',
          '--out',
          join(root, 'run'),
          '--run-id',
          RUN_ID,
          '--nats',
          nats.url,
          '--max-message-mb',
          '4',
        ],
        { env },
      );
      processes.push(coordinator);
      followed.publishedBy(coordinator);
      const address = `127.0.0.1:${(await coordinator.waitForLogLine('coordinator.listening')).port}`;
      attacker = new PythonAttacker(venv.python, address, PROTOCOL_VERSION, TOKEN);
      await attacker.waitFor('registered', 120_000);
      for (const id of ['w0', 'w1']) processes.push(startCli(['worker', '--coordinator', address, '--id', id], { env }));
      await followed.waitFor('step');
      attacker.attack();
      await attacker.waitFor('done', 120_000);
      finishedDuringAttacks = followed.received.some((e) => e.event === 'run.finished' || e.event === 'run.failed');
      outcomes = attacker.outcomes;
      const [coordinatorResult, ...workerResults] = await Promise.all(processes.map((p) => p.waitForExit()));
      await followed.waitFor('run.finished');
      results = { coordinator: coordinatorResult!, workers: workerResults, attacker: await attacker.finish() };
      events = followed.received;
    } finally {
      attacker?.kill();
      for (const p of processes) p.kill();
      await followed.close();
    }
  });
  after(async () => {
    await nats?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  /** The outcome of `attack`, checked against what is expected of it. */
  const expectOutcome = (attack: string, expected: Expected) => {
    const outcome = outcomes.get(attack);
    assert.ok(outcome, `no outcome for ${attack}; got ${[...outcomes.keys()].join(', ')}`);
    assert.equal(outcome.code, expected.code, `${attack} ended ${outcome.code} (${outcome.details}), expected ${expected.code}`);
    assert.equal(outcome.trailing[REFUSAL_METADATA_KEY], expected.reason, `${attack}: the refusal reason`);
    if (typeof expected.details === 'string') assert.equal(outcome.details, expected.details, attack);
    else if (expected.details) assert.match(outcome.details, expected.details, attack);
  };

  it('lands while the run trains', () => {
    assert.equal(finishedDuringAttacks, false, 'the run ended before the attacks were over: lengthen it');
    assert.equal(results.attacker.code, 0, results.attacker.stderr);
  });

  it('answers Heartbeat for an unknown id and for w0 without a credential alike: no id oracle', () => {
    expectOutcome('heartbeat-unknown-id', unauthenticated);
    expectOutcome('heartbeat-as-w0', unauthenticated);
  });

  it('refuses every call of a member made as w0, without a credential or with mallory’s, FetchState with a status', () => {
    for (const call of MEMBER_CALLS) {
      expectOutcome(`${call}-as-w0`, unauthenticated);
      expectOutcome(`${call}-as-w0-with-mallorys-credential`, unauthenticated);
    }
  });

  it('checks the join token before the protocol version, and takes no live id without its credential nor a fourth worker', () => {
    expectOutcome('register-wrong-token-and-protocol', {
      code: 'UNAUTHENTICATED',
      reason: 'unauthenticated',
      details: 'join token refused',
    });
    expectOutcome('register-live-id-without-credential', {
      code: 'ALREADY_EXISTS',
      reason: 'already-registered',
      details: /^worker id w0 is already registered: registering again under it needs its credential$/,
    });
    expectOutcome('register-live-id-with-mallorys-credential', {
      code: 'ALREADY_EXISTS',
      reason: 'already-registered',
      details: /^worker id w0 is already registered: registering again under it needs its credential$/,
    });
    expectOutcome('register-beyond-the-maximum', { code: 'RESOURCE_EXHAUSTED', reason: 'run-full', details: /^run adversarial already has its 3 workers$/ });
  });

  it('lets mallory, registered but in no generation, neither fail the run nor send its state', () => {
    expectOutcome('report-failure-as-mallory', { code: 'FAILED_PRECONDITION', reason: 'not-a-member', details: /^worker mallory is not in generation 1$/ });
    expectOutcome('upload-state-as-mallory', { code: 'FAILED_PRECONDITION', reason: 'not-a-member', details: /^worker mallory is not in generation 1$/ });
    expectOutcome('upload-state-announcing-1-tib-as-mallory', {
      code: 'RESOURCE_EXHAUSTED',
      reason: 'too-large',
      details: /^state of 1099511627776 bytes exceeds the limit of \d+$/,
    });
  });

  it('refuses messages over the size limit before reading them', () => {
    expectOutcome('oversized-heartbeat', oversized);
    expectOutcome('oversized-register', oversized);
  });

  it('then completes the run normally: no failure, recovery or departure, every step in order, one checkpoint at the end', () => {
    assert.equal(results.coordinator.status, 0, results.coordinator.stderr.slice(-3000));
    results.workers.forEach((worker, index) => assert.equal(worker.status, 0, `w${index}: ${worker.stderr.slice(-3000)}`));
    const kinds = events.map((e) => e.event);
    for (const disruption of ['failure.detected', 'recovery.completed', 'run.failed', 'worker.left'] as const)
      assert.ok(!kinds.includes(disruption), `a ${disruption} event: ${JSON.stringify(events.find((e) => e.event === disruption))}`);
    const joined = events.filter((e): e is RunEvent<'worker.joined'> => e.event === 'worker.joined');
    assert.deepEqual(joined.map((e) => e.data.workerId).sort(), ['mallory', 'w0', 'w1'], 'only the three registrations joined');
    assert.ok(kinds.indexOf('run.started') > kinds.lastIndexOf('worker.joined'), 'nobody joined once it ran');
    assert.equal((events.find((e) => e.event === 'run.started') as RunEvent<'run.started'>).data.workers, 2);
    const steps = events.filter((e): e is RunEvent<'step'> => e.event === 'step').map((e) => e.data.step);
    assert.deepEqual(
      steps,
      Array.from({ length: STEPS / 50 }, (_, i) => (i + 1) * 50),
    );
    const saved = events.filter((e): e is RunEvent<'checkpoint.saved'> => e.event === 'checkpoint.saved').map((e) => e.data.step);
    assert.deepEqual(saved, [STEPS], 'no checkpoint but the run’s own');
    assert.equal(kinds[kinds.length - 1], 'run.finished');
  });
});
