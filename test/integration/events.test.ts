import assert from 'node:assert/strict';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { watchCommand } from '../../cli/watch.js';
import { InputError } from '../../shared/errors.js';
import type { EventPublisher, EventSubscription } from '../../shared/events/bus.js';
import { formatRunEvent } from '../../shared/events/format.js';
import { InProcessEventBus } from '../../shared/events/in-process-bus.js';
import { connectNatsEventSource, connectNatsEvents, type NatsEventSource } from '../../shared/events/nats-bus.js';
import { openEventPublisher } from '../../shared/events/open-publisher.js';
import { checkRunId } from '../../shared/events/run-id.js';
import { eventSubject, runEventsSubject } from '../../shared/events/subjects.js';
import { parseRunEvent, RUN_EVENT_NAMES, type RunEvent, type RunEventData, type RunEventName } from '../../shared/events/types.js';
import type { Logger } from '../../shared/logging.js';
import { type NatsServer, natsServerForTests, startNatsServer } from '../helpers/nats-server.js';

/** One valid payload per event kind, varied by `i`. */
const samples: { [E in RunEventName]: (i: number) => RunEventData<E> } = {
  'run.started': (i) => ({ configHash: `hash${i}`, model: 'lenet300', dataset: 'mnist', workers: 4 }),
  'worker.joined': (i) => ({ workerId: `w${i}`, address: `10.0.0.${i % 250}:7000`, generation: i }),
  'worker.left': (i) => ({ workerId: `w${i}`, address: `10.0.0.${i % 250}:7000`, generation: i, reason: 'heartbeat lost' }),
  step: (i) => ({
    phase: 'prune',
    phaseIndex: 1,
    step: i,
    steps: 1000,
    loss: 1 / (i + 1),
    accuracy: 0.5,
    auxLoss: 0.25,
    remaining: 0.1,
    compression: 10,
    imagesPerSecond: 5000 + i,
    workers: 4,
  }),
  eval: (i) => ({ phase: 'prune', phaseIndex: 1, step: i, testAccuracy: 0.981 }),
  phase: (i) => ({ phase: 'finetune', phaseIndex: 2, status: 'completed', steps: i, seconds: 12.5, testAccuracy: 0.98 }),
  'checkpoint.saved': (i) => ({ path: `runs/r/checkpoint-${i}`, phase: 'prune', step: i }),
  'run.finished': () => ({ compression: 12.5, testAccuracy: 0.9812, seconds: 321 }),
  'run.failed': (i) => ({ reason: `worker w${i} crashed` }),
  'failure.detected': (i) => ({ workerId: `w${i}`, how: 'no heartbeat for 5.1 s', detectSeconds: 5.1, generation: i }),
  'recovery.completed': (i) => ({ generation: i + 1, workers: 2, recoverSeconds: 1.5, stepsRedone: 3, from: { phaseIndex: 1, step: 40 } }),
};

function publishSample(publisher: EventPublisher, event: RunEventName, i: number): RunEvent {
  return publisher.publish(event, samples[event](i) as never);
}

/** A logger whose lines the test can read. */
function capturedLogger(): { logger: Logger; lines: () => { level: number; msg: string; subject?: string }[] } {
  const written: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void written.push(line) });
  return { logger, lines: () => written.map((line) => JSON.parse(line)) };
}

/** The next `count` events (fewer if the subscription ends), leaving the subscription open. */
async function take(subscription: EventSubscription, count: number): Promise<RunEvent[]> {
  const events = subscription[Symbol.asyncIterator]();
  const received: RunEvent[] = [];
  while (received.length < count) {
    const next = await events.next();
    if (next.done) break;
    received.push(next.value);
  }
  return received;
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function isInputError(...fragments: string[]) {
  return (error: unknown) => {
    assert.ok(error instanceof InputError, `not an InputError: ${String(error)}`);
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  };
}

describe('run events', () => {
  it('puts each run in one subject token and rejects run ids that are not one', () => {
    assert.equal(eventSubject('r-1_a', 'run.started'), 'autoprune.r-1_a.run.started');
    assert.equal(runEventsSubject('r1'), 'autoprune.r1.>');
    for (const bad of ['', 'a.b', 'a b', 'a*', '>', 'é', 'x'.repeat(129)]) {
      assert.throws(() => checkRunId(bad, '--run'), isInputError('--run', 'not a valid run id'), bad);
    }
  });

  it('validates payloads when publishing, naming the event and field, without using up a seq', async () => {
    const publisher = new InProcessEventBus().publisher('r1');
    assert.throws(() => publisher.publish('step', { ...samples.step(1), accuracy: 2 }), isInputError('run r1 publishing step', 'data.accuracy'));
    assert.equal(publisher.publish('eval', samples.eval(1)).seq, 1);
  });

  it('sends a diverged loss as null, which survives JSON', () => {
    const event = new InProcessEventBus().publisher('r1').publish('step', { ...samples.step(1), loss: Number.NaN, auxLoss: Number.POSITIVE_INFINITY });
    assert.equal(event.data.loss, null);
    assert.deepEqual(parseRunEvent(JSON.parse(JSON.stringify(event)), 'test'), event);
    assert.match(formatRunEvent(event), /loss n\/a aux n\/a/);
  });

  it('rejects malformed envelopes, naming where they came from and what is wrong', () => {
    const good = JSON.parse(JSON.stringify(new InProcessEventBus().publisher('r1').publish('eval', samples.eval(3))));
    assert.throws(() => parseRunEvent({ ...good, seq: 0 }, 'message on x'), isInputError('message on x', 'seq'));
    assert.throws(() => parseRunEvent({ ...good, event: 'nope' }, 'm'), isInputError('unknown event "nope"'));
    assert.throws(() => parseRunEvent({ ...good, data: { phase: 'prune' } }, 'm'), isInputError('invalid eval data', 'data.testAccuracy'));
    assert.throws(() => parseRunEvent('text', 'm'), isInputError('invalid run event'));
  });

  it('formats every kind of event on one line', () => {
    const publisher = new InProcessEventBus().publisher('r1');
    for (const name of RUN_EVENT_NAMES) {
      const line = formatRunEvent(publishSample(publisher, name, 7));
      assert.match(line, new RegExp(`^#\\d+ \\d\\d:\\d\\d:\\d\\d ${name.replace('.', '\\.')} \\S`));
      assert.ok(!line.includes('\n') && !line.includes('undefined'), line);
    }
  });
});

describe('in-process event bus', () => {
  it('delivers a run’s events in order to each of its subscribers, and nothing of other runs', async () => {
    const bus = new InProcessEventBus();
    const first = await bus.subscribe('r1');
    const second = await bus.subscribe('r1');
    const other = await bus.subscribe('r2');
    const publisher = await openEventPublisher({ runId: 'r1', bus });
    const published = Array.from({ length: 50 }, (_, i) => publishSample(publisher, RUN_EVENT_NAMES[i % RUN_EVENT_NAMES.length]!, i));
    assert.deepEqual(await take(first, 50), published);
    assert.deepEqual(await take(second, 50), published);
    assert.deepEqual(
      published.map((e) => e.seq),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    // Events reach a subscriber that is already waiting, too.
    const next = take(other, 1);
    const late = publishSample(bus.publisher('r2'), 'run.failed', 1);
    assert.deepEqual(await next, [late]);
    assert.ok(Object.isFrozen(late) && Object.isFrozen(late.data));
  });

  it('ends a subscription when it is closed', async () => {
    const bus = new InProcessEventBus();
    const subscription = await bus.subscribe('r1');
    const drained = take(subscription, 2);
    bus.publisher('r1').publish('eval', samples.eval(1));
    await subscription.close();
    assert.equal((await drained).length, 1);
  });
});

describe('NATS event bus', () => {
  let server: NatsServer;
  let source: NatsEventSource;
  let log: ReturnType<typeof capturedLogger>;
  let runs = 0;
  const nextRunId = () => `run-${process.pid}-${++runs}`;

  before(async () => {
    server = await natsServerForTests();
  });
  beforeEach(async () => {
    log = capturedLogger();
    source = await connectNatsEventSource({ url: server.url, logger: log.logger });
  });
  afterEach(async () => {
    await source.close();
  });
  after(async () => {
    await server?.stop();
  });

  it('events arrive in order on a real nats-server', async () => {
    const runId = nextRunId();
    const subscription = await source.subscribe(runId);
    const publisher = await openEventPublisher({ runId, natsUrl: server.url, logger: log.logger });
    const received = take(subscription, 200);
    const published = Array.from({ length: 200 }, (_, i) => publishSample(publisher, RUN_EVENT_NAMES[(i * 7) % RUN_EVENT_NAMES.length]!, i));
    await publisher.close();
    const events = await received;
    assert.deepEqual(
      events.map((e) => e.seq),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.deepEqual(events, published);
    assert.ok(new Set(events.map((e) => e.event)).size === RUN_EVENT_NAMES.length);
  });

  it('skips and logs malformed messages on the run’s subjects, then goes on', async () => {
    const runId = nextRunId();
    const subscription = await source.subscribe(runId);
    const raw = await connect({ servers: server.url });
    const valid = JSON.parse(JSON.stringify(new InProcessEventBus().publisher(runId).publish('eval', samples.eval(1))));
    raw.publish(`autoprune.${runId}.step`, 'not json {');
    raw.publish(`autoprune.${runId}.eval`, JSON.stringify({ ...valid, data: { phase: 'prune' } }));
    raw.publish(`autoprune.${runId}.step`, JSON.stringify(valid)); // an eval on the step subject
    raw.publish(`autoprune.${runId}.eval`, JSON.stringify(valid));
    await raw.drain();
    assert.deepEqual(await take(subscription, 1), [valid]);
    const warnings = log.lines().filter((line) => line.level === 40);
    assert.deepEqual(
      warnings.map((w) => w.subject),
      [`autoprune.${runId}.step`, `autoprune.${runId}.eval`, `autoprune.${runId}.step`],
    );
    assert.match(warnings[0]!.msg, new RegExp(`message on autoprune\\.${runId}\\.step: is not JSON`));
    assert.match(warnings[1]!.msg, /invalid eval data: .*data\.step: Invalid input: expected number/);
    assert.match(warnings[2]!.msg, /does not match its subject/);
  });

  it('gives a clear error naming the URL when no server answers, or the URL is no server address', async () => {
    const stopped = await startNatsServer();
    await stopped.stop();
    await assert.rejects(
      connectNatsEvents({ url: stopped.url, runId: 'r1', logger: log.logger }),
      isInputError(`NATS server ${stopped.url}`, 'cannot connect'),
    );
    await assert.rejects(
      connectNatsEventSource({ url: 'http://example.com', logger: log.logger }),
      isInputError('NATS URL', 'not a server address', '"http://example.com"'),
    );
    await assert.rejects(connectNatsEvents({ url: server.url, runId: 'a.b' }), isInputError('not a valid run id'));
  });

  it('rides out a server restart, logging the reconnect', async () => {
    const own = await startNatsServer();
    const publisherLog = capturedLogger();
    const runId = nextRunId();
    const publisher = await connectNatsEvents({ url: own.url, runId, logger: publisherLog.logger });
    const ownSource = await connectNatsEventSource({ url: own.url, logger: log.logger });
    let restarted: NatsServer | undefined;
    try {
      const subscription = await ownSource.subscribe(runId);
      publishSample(publisher, 'run.started', 1);
      assert.equal((await take(subscription, 1))[0]!.seq, 1);
      await own.stop();
      await waitFor(() => publisherLog.lines().some((l) => /disconnected/.test(l.msg)), 'the disconnect to be logged');
      restarted = await startNatsServer({ port: own.port });
      const reconnected = (l: { msg: string }) => /reconnected/.test(l.msg);
      await waitFor(() => publisherLog.lines().some(reconnected) && log.lines().some(reconnected), 'both clients to reconnect');
      publishSample(publisher, 'run.finished', 2);
      assert.deepEqual(
        (await take(subscription, 1)).map((e) => [e.seq, e.event]),
        [[2, 'run.finished']],
      );
    } finally {
      await publisher.close();
      await ownSource.close();
      await restarted?.stop();
    }
  });

  describe('autoprune watch', () => {
    const output = () => {
      let stdout = '';
      let stderr = '';
      return {
        io: { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text) }, logger: log.logger },
        stdout: () => stdout,
        stderr: () => stderr,
      };
    };

    /** Starts watching, publishes `events` once the watcher follows the run, and returns its exit status. */
    async function watchWhilePublishing(
      args: string[],
      runId: string,
      events: RunEventName[],
      out: ReturnType<typeof output>,
    ): Promise<{ status: number; published: RunEvent[] }> {
      const watching = watchCommand([runId, '--nats', server.url, ...args], out.io);
      await waitFor(() => out.stderr().includes('following run'), 'the watcher to subscribe');
      const publisher = await connectNatsEvents({ url: server.url, runId, logger: log.logger });
      const published = events.map((event, i) => publishSample(publisher, event, i));
      await publisher.close();
      return { status: await watching, published };
    }

    it('prints one line per event and exits 0 when the run finishes', async () => {
      const out = output();
      const runId = nextRunId();
      const { status, published } = await watchWhilePublishing(
        [],
        runId,
        ['run.started', 'worker.joined', 'step', 'eval', 'phase', 'checkpoint.saved', 'run.finished'],
        out,
      );
      assert.equal(status, 0, out.stderr());
      assert.deepEqual(out.stdout().trimEnd().split('\n'), published.map(formatRunEvent));
      assert.match(out.stdout(), /run\.finished compression 12\.5×, test accuracy 98\.12%, 321\.0 s\n$/);
      assert.equal(out.stderr(), `autoprune watch: following run ${runId} on ${server.url}\n`);
    });

    it('prints the raw events with --json and exits 1 when the run fails', async () => {
      const out = output();
      const { status, published } = await watchWhilePublishing(['--json'], nextRunId(), ['run.started', 'worker.left', 'run.failed', 'step'], out);
      assert.equal(status, 1);
      // It stops at run.failed: the step after it is not printed.
      assert.deepEqual(
        out
          .stdout()
          .trimEnd()
          .split('\n')
          .map((line) => JSON.parse(line)),
        published.slice(0, 3),
      );
    });

    it('gives up after --timeout seconds with status 1', async () => {
      const out = output();
      const status = await watchCommand([nextRunId(), '--nats', server.url, '--timeout', '0.2'], out.io);
      assert.equal(status, 1);
      assert.match(out.stderr(), /neither finished nor failed within 0\.2 s/);
    });

    it('exits 2 with a clear message on bad arguments or an unreachable server', async () => {
      const stopped = await startNatsServer();
      await stopped.stop();
      const cases: [string[], RegExp][] = [
        [[], /arguments: expected exactly one run id; found 0 arguments/],
        [['r1'], /--nats: is required/],
        [['a.b', '--nats', server.url], /autoprune watch <runId>: is not a valid run id/],
        [['r1', '--nats', server.url, '--timeout', 'soon'], /--timeout: must be a positive number of seconds; found "soon"/],
        [['r1', '--nats', server.url, '--jsno'], /--jsno: is not an option of autoprune watch; expected --json, the nearest option/],
        [['r1', '--nats', 'ftp://host'], /NATS URL: is not a server address/],
        [['r1', '--nats', stopped.url], new RegExp(`NATS server ${stopped.url}: cannot connect`)],
      ];
      for (const [args, message] of cases) {
        const out = output();
        assert.equal(await watchCommand(args, out.io), 2, args.join(' '));
        assert.match(out.stderr(), message);
        // The usage helps with arguments, not with a server that does not answer.
        assert.equal(/usage: autoprune watch <runId> --nats URL/.test(out.stderr()), !args.includes(stopped.url), out.stderr());
        assert.equal(out.stdout(), '');
      }
    });
  });
});
