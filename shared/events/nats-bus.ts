import { connect, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { describeValue, InputError } from '../errors.js';
import { createLogger, type Logger } from '../logging.js';
import { type EventPublisher, type EventSource, type EventSubscription, RunEventStamper } from './bus.js';
import { eventNameOfSubject, eventSubject, runEventsSubject } from './subjects.js';
import { parseRunEvent, type RunEvent, type RunEventData, type RunEventName } from './types.js';

/**
 * The run-event bus over NATS core: each event is one JSON message on `autoprune.<runId>.<event>`.
 * NATS keeps the order of one connection's messages to one subscription, and the whole run is one
 * subscription (`autoprune.<runId>.>`), so subscribers see events in publishing order. NATS core keeps
 * no history: a subscriber sees what is published after it subscribed.
 */

export interface NatsEventsOptions {
  /** nats://host:port, tls://host:port, or host:port. */
  readonly url: string;
  /** Client name shown by the server's monitoring. */
  readonly name?: string;
  /** Receives reconnects and rejected messages; a logger on stderr when not given. */
  readonly logger?: Logger;
}

/** The run's publisher on NATS; create one per run, since it numbers the events. */
export async function connectNatsEvents(options: NatsEventsOptions & { readonly runId: string }): Promise<EventPublisher> {
  const stamper = new RunEventStamper(options.runId);
  const connection = await openConnection(options, `autoprune-events-${stamper.runId}`);
  let closing = false;
  return {
    runId: stamper.runId,
    publish<E extends RunEventName>(event: E, data: RunEventData<E>): RunEvent<E> {
      if (closing) throw new Error(`run ${stamper.runId}: cannot publish ${event} after the publisher was closed`);
      const stamped = stamper.stamp(event, data);
      // While reconnecting the client buffers this and sends it, in order, once back.
      connection.nc.publish(eventSubject(stamped.runId, event), JSON.stringify(stamped));
      return stamped;
    },
    flush: () => connection.nc.flush(),
    async close() {
      if (closing) return;
      closing = true;
      await connection.close();
    },
  };
}

/** Subscribers' side: a NATS connection from which any number of runs can be followed. */
export interface NatsEventSource extends EventSource {
  /** Ends every subscription and the connection. */
  close(): Promise<void>;
}

export async function connectNatsEventSource(options: NatsEventsOptions): Promise<NatsEventSource> {
  const connection = await openConnection(options, 'autoprune-events-watch');
  return {
    async subscribe(runId: string): Promise<EventSubscription> {
      const subscription = connection.nc.subscribe(runEventsSubject(runId));
      // The round trip makes sure the server registered the interest before we promise delivery.
      await connection.nc.flush();
      return new NatsSubscription(subscription, runId, connection.logger);
    },
    close: () => connection.close(),
  };
}

class NatsSubscription implements EventSubscription {
  /** One reader for the subscription's life: a loop after a `break` finds it ended, as in-process. */
  private readonly events: AsyncGenerator<RunEvent>;

  constructor(
    private readonly subscription: Subscription,
    private readonly runId: string,
    private readonly logger: Logger,
  ) {
    this.events = this.decodeAll();
  }

  async close(): Promise<void> {
    if (!this.subscription.isClosed()) this.subscription.unsubscribe();
  }

  [Symbol.asyncIterator](): AsyncIterator<RunEvent> {
    return this.events;
  }

  private async *decodeAll(): AsyncGenerator<RunEvent> {
    try {
      for await (const message of this.subscription) {
        const event = this.decode(message);
        if (event) yield event;
      }
    } finally {
      await this.close();
    }
  }

  /** A message that is not a valid event of this run is logged and skipped: one bad publisher must not stop a watcher. */
  private decode(message: Msg): RunEvent | undefined {
    const where = `message on ${message.subject}`;
    try {
      let value: unknown;
      try {
        value = JSON.parse(message.string());
      } catch (error) {
        throw new InputError(where, `is not JSON (${(error as Error).message})`, { found: describeValue(message.string()) });
      }
      const event = parseRunEvent(value, where);
      if (event.runId !== this.runId || eventNameOfSubject(this.runId, message.subject) !== event.event) {
        throw new InputError(where, 'does not match its subject', { found: `run ${describeValue(event.runId)}, event ${event.event}` });
      }
      return event;
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      this.logger.warn({ subject: message.subject }, `ignored: ${error.message}`);
      return undefined;
    }
  }
}

/** How long close() waits for an absent server to come back before dropping what is unsent. */
const CLOSE_TIMEOUT_MS = 10_000;

interface Connection {
  readonly nc: NatsConnection;
  readonly logger: Logger;
  close(): Promise<void>;
}

async function openConnection(options: NatsEventsOptions, defaultName: string): Promise<Connection> {
  const url = checkNatsUrl(options.url);
  const logger = (options.logger ?? createLogger({ name: 'autoprune-events' })).child({ nats: url });
  let nc: NatsConnection;
  try {
    // The first connection must succeed; after that the client reconnects for as long as it takes,
    // buffering what is published meanwhile, so a NATS restart does not end a run.
    nc = await connect({ servers: url, name: options.name ?? defaultName, maxReconnectAttempts: -1 });
  } catch (error) {
    throw new InputError(`NATS server ${url}`, `cannot connect (${(error as Error).message})`);
  }
  const statusLogged = logStatus(nc, logger);
  return {
    nc,
    logger,
    async close() {
      if (nc.isClosed()) return;
      // Drain sends what is still buffered; without a server it would wait for one forever.
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)));
      const drained = nc.drain().then(
        () => true,
        (error: Error) => {
          logger.warn(`NATS: drain failed (${error.message})`);
          return false;
        },
      );
      if (!(await Promise.race([drained, gaveUp.then(() => false)]))) {
        logger.warn(`NATS: closed before everything was sent (no server for ${CLOSE_TIMEOUT_MS / 1000} s or a failed drain); unsent events are lost`);
        if (!nc.isClosed()) await nc.close();
      }
      clearTimeout(timer);
      await statusLogged;
    },
  };
}

async function logStatus(nc: NatsConnection, logger: Logger): Promise<void> {
  for await (const status of nc.status()) {
    switch (status.type) {
      case 'disconnect':
        logger.warn(`NATS: disconnected from ${status.server}; reconnecting`);
        break;
      case 'reconnect':
        logger.info(`NATS: reconnected to ${status.server}`);
        break;
      case 'error':
        logger.warn({ err: status.error }, `NATS: ${status.error.message}`);
        break;
      case 'slowConsumer':
        logger.warn(`NATS: slow consumer on ${status.sub.getSubject()}, ${status.pending} messages pending`);
        break;
      default:
        logger.debug({ status: status.type }, `NATS: ${status.type}`);
    }
  }
}

/** Returns the URL, or throws an InputError when it cannot name a NATS server. */
export function checkNatsUrl(url: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url.includes('://') ? url : `nats://${url}`);
  } catch {
    parsed = undefined;
  }
  if (!parsed || !['nats:', 'tls:'].includes(parsed.protocol) || parsed.hostname === '') {
    throw new InputError('NATS URL', 'is not a server address', { expected: 'nats://host:port, tls://host:port or host:port', found: describeValue(url) });
  }
  return url;
}
