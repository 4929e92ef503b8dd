import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry } from 'prom-client';
import type { EventSubscription } from '../shared/events/bus.js';
import type { RunEvent } from '../shared/events/types.js';
import type { Coordinator } from './coordinator.js';
import type { RunStatus } from './run-state.js';

/**
 * The coordinator's Prometheus series (`autoprune_run_*`), one per run, in a registry of its own (injected,
 * never the global one) whose default label is the run id. The run's progress comes from its events (the
 * same `step`, `eval`, failure and recovery events that `autoprune watch` shows); the generation, the
 * workers and the run's status are read from the coordinator at each scrape.
 */

const STATUSES: readonly RunStatus[] = ['pending', 'running', 'recovering', 'stopping', 'completed', 'failed'];

export class CoordinatorMetrics {
  private readonly step: Gauge<'phase'>;
  private readonly stepSeconds: Gauge;
  private readonly imagesPerSecond: Gauge;
  private readonly inputWait: Gauge;
  private readonly kept: Gauge<'group'>;
  private readonly loss: Gauge<'objective'>;
  private readonly testAccuracy: Gauge<'phase'>;
  private readonly failures: Counter;
  private readonly recoverySeconds: Histogram;
  private readonly stepsRedone: Counter;
  private readonly checkpoints: Counter;
  /** The last step event, to turn the time between two into seconds per step. */
  private last: { phaseIndex: number; step: number; time: number } | undefined;

  constructor(
    readonly registry: Registry,
    runId: string,
  ) {
    registry.setDefaultLabels({ run_id: runId });
    collectDefaultMetrics({ register: registry });
    const registers = [registry];
    this.step = new Gauge({ name: 'autoprune_run_step', help: 'Steps done in the current phase (last step event)', labelNames: ['phase'], registers });
    this.stepSeconds = new Gauge({ name: 'autoprune_run_step_seconds', help: 'Seconds per step over the last logging interval', registers });
    this.imagesPerSecond = new Gauge({ name: 'autoprune_run_images_per_second', help: 'Training images per second, all workers together', registers });
    this.inputWait = new Gauge({
      name: 'autoprune_run_input_wait_seconds',
      help: 'Seconds the slowest rank waited for its input over the last logging interval',
      registers,
    });
    this.kept = new Gauge({ name: 'autoprune_run_kept_fraction', help: 'Fraction of prunable weights kept', labelNames: ['group'], registers });
    this.loss = new Gauge({
      name: 'autoprune_run_loss',
      help: "Training loss of the last step: W's objective (w), M's (m)",
      labelNames: ['objective'],
      registers,
    });
    this.testAccuracy = new Gauge({ name: 'autoprune_run_test_accuracy', help: 'Test-set accuracy at the last evaluation', labelNames: ['phase'], registers });
    this.failures = new Counter({ name: 'autoprune_run_failures_detected_total', help: 'Worker failures detected', registers });
    this.recoverySeconds = new Histogram({
      name: 'autoprune_run_recovery_seconds',
      help: 'Seconds from a failure detected to the next generation training',
      buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.stepsRedone = new Counter({ name: 'autoprune_run_steps_redone_total', help: 'Steps redone after recoveries', registers });
    this.checkpoints = new Counter({ name: 'autoprune_run_checkpoints_total', help: 'Checkpoints written', registers });
  }

  /** Series read from `coordinator` at each scrape: its generation, registered workers and run status. */
  watch(coordinator: Coordinator): void {
    const registers = [this.registry];
    new Gauge({
      name: 'autoprune_run_generation',
      help: 'The newest generation formed (0 before the first)',
      registers,
      collect() {
        this.set(coordinator.generation);
      },
    });
    new Gauge({
      name: 'autoprune_run_workers',
      help: 'Workers registered with the coordinator',
      registers,
      collect() {
        this.set(coordinator.registeredWorkers);
      },
    });
    new Gauge({
      name: 'autoprune_run_status',
      help: "The run's state: 1 for the current one",
      labelNames: ['status'],
      registers,
      collect() {
        for (const status of STATUSES) this.set({ status }, coordinator.lifecycle.status === status ? 1 : 0);
      },
    });
  }

  /** Takes the run's events until it finishes or fails (or the subscription ends). */
  async follow(subscription: EventSubscription): Promise<void> {
    for await (const event of subscription) {
      this.record(event);
      if (event.event === 'run.finished' || event.event === 'run.failed') return;
    }
  }

  /** One event's share of the series. */
  record(event: RunEvent): void {
    switch (event.event) {
      case 'step': {
        const d = event.data;
        const time = Date.parse(event.time);
        const last = this.last;
        if (last && last.phaseIndex === d.phaseIndex && d.step > last.step) this.stepSeconds.set((time - last.time) / 1000 / (d.step - last.step));
        this.last = { phaseIndex: d.phaseIndex, step: d.step, time };
        this.step.reset();
        this.step.set({ phase: d.phase }, d.step);
        this.imagesPerSecond.set(d.imagesPerSecond);
        if (d.inputWaitSeconds !== undefined) this.inputWait.set(d.inputWaitSeconds);
        this.kept.set({ group: 'all' }, d.remaining);
        if (d.loss !== null) this.loss.set({ objective: 'w' }, d.loss);
        if (d.auxLoss !== undefined && d.auxLoss !== null) this.loss.set({ objective: 'm' }, d.auxLoss);
        return;
      }
      case 'eval':
        this.testAccuracy.set({ phase: event.data.phase }, event.data.testAccuracy);
        return;
      case 'failure.detected':
        this.failures.inc();
        return;
      case 'recovery.completed':
        this.recoverySeconds.observe(event.data.recoverSeconds);
        this.stepsRedone.inc(event.data.stepsRedone);
        // The next step event starts a new interval: the time spent recovering is not a step's.
        this.last = undefined;
        return;
      case 'checkpoint.saved':
        this.checkpoints.inc();
        return;
    }
  }
}
