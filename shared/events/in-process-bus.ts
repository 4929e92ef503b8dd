import { type EventPublisher, type EventSource, type EventSubscription, RunEventStamper } from './bus.js';
import { checkRunId } from './run-id.js';
import type { RunEvent, RunEventData, RunEventName } from './types.js';

/**
 * The run-event bus when no NATS URL is given: the publisher hands each event straight to the
 * subscribers of the same process, in order. Nothing is serialised; events are frozen, so one
 * subscriber cannot change what another sees.
 */
export class InProcessEventBus implements EventSource {
  private readonly subscribers = new Map<string, Set<InProcessSubscription>>();

  /** The run's publisher; create one per run, since it numbers the events. */
  publisher(runId: string): EventPublisher {
    const stamper = new RunEventStamper(runId);
    let closed = false;
    return {
      runId: stamper.runId,
      publish: <E extends RunEventName>(event: E, data: RunEventData<E>): RunEvent<E> => {
        if (closed) throw new Error(`run ${stamper.runId}: cannot publish ${event} after the publisher was closed`);
        const stamped = stamper.stamp(event, data);
        for (const subscription of this.subscribers.get(stamped.runId) ?? []) subscription.deliver(stamped as RunEvent);
        return stamped;
      },
      flush: async () => {},
      close: async () => {
        closed = true;
      },
    };
  }

  async subscribe(runId: string): Promise<EventSubscription> {
    checkRunId(runId);
    let forRun = this.subscribers.get(runId);
    if (!forRun) {
      forRun = new Set();
      this.subscribers.set(runId, forRun);
    }
    const subscription = new InProcessSubscription(() => {
      forRun.delete(subscription);
      if (forRun.size === 0) this.subscribers.delete(runId);
    });
    forRun.add(subscription);
    return subscription;
  }
}

/** An unbounded queue read by one async iterator; a publisher never waits for a slow reader. */
class InProcessSubscription implements EventSubscription {
  private readonly queued: RunEvent[] = [];
  private waiting: ((result: IteratorResult<RunEvent>) => void) | undefined;
  private closed = false;

  constructor(private readonly onClose: () => void) {}

  deliver(event: RunEvent): void {
    if (this.closed) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      resolve({ value: event, done: false });
    } else {
      this.queued.push(event);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queued.length = 0;
    this.onClose();
    this.waiting?.({ value: undefined, done: true });
    this.waiting = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<RunEvent> {
    return {
      next: () => {
        const event = this.queued.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiting = resolve));
      },
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }
}
