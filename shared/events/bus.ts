import { checkRunId } from './run-id.js';
import { parseRunEventData, type RunEvent, type RunEventData, type RunEventName } from './types.js';

/**
 * The two ends of the run-event bus. A run has exactly one publisher (the coordinator), which numbers
 * its events; any number of subscribers follow it. Implementations: in-process-bus.ts (the default,
 * no server needed) and nats-bus.ts.
 */

export interface EventPublisher {
  readonly runId: string;
  /**
   * Validates `data`, stamps the next seq and the time, and sends the event without waiting for it to
   * be delivered. Returns the event as subscribers will see it. Throws when `data` does not match the
   * event's schema (a bug in the caller), naming the event and the fields at fault.
   */
  publish<E extends RunEventName>(event: E, data: RunEventData<E>): RunEvent<E>;
  /** Resolves once everything published so far has reached the bus. */
  flush(): Promise<void>;
  /** Flushes, then releases the connection; publishing afterwards is an error. */
  close(): Promise<void>;
}

/**
 * A run's events in publishing order, as an async iterator (`for await (const e of subscription)`).
 * Leaving the loop early, or close(), ends the subscription.
 */
export interface EventSubscription extends AsyncIterable<RunEvent> {
  close(): Promise<void>;
}

export interface EventSource {
  /** Resolves once the subscription is in place: every event published after that is delivered. */
  subscribe(runId: string): Promise<EventSubscription>;
}

/** Numbers and timestamps a run's events, validating each payload; shared by the publishers. */
export class RunEventStamper {
  readonly runId: string;
  private lastSeq = 0;

  constructor(runId: string) {
    this.runId = checkRunId(runId);
  }

  stamp<E extends RunEventName>(event: E, data: RunEventData<E>): RunEvent<E> {
    const checked = parseRunEventData(event, data, `run ${this.runId} publishing ${event}`);
    this.lastSeq += 1;
    return Object.freeze({ runId: this.runId, event, seq: this.lastSeq, time: new Date().toISOString(), data: checked }) as RunEvent<E>;
  }
}
