import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * A worker's Prometheus series (`autoprune_worker_*`) in a registry of its own (injected, never the global
 * one). Default labels: `worker_id`, and once known the `run_id` and the `rank` the worker holds in its
 * current generation (a re-formed run may give it another). The agent, its task runner and its all-reduce
 * exchange report here.
 */
export class WorkerMetrics {
  private readonly labels: Record<string, string>;
  private readonly generationGauge: Gauge;
  private readonly step: Gauge<'phase'>;
  private readonly stepSeconds: Histogram;
  private readonly imagesPerSecond: Gauge;
  private readonly inputWait: Counter;
  private readonly allReduceSeconds: Histogram;
  private readonly allReduceBytes: Counter;
  private readonly busBandwidth: Gauge;
  private readonly kept: Gauge<'group'>;
  private readonly interrupts: Counter<'kind'>;

  constructor(
    readonly registry: Registry,
    workerId: string,
  ) {
    this.labels = { worker_id: workerId };
    registry.setDefaultLabels(this.labels);
    collectDefaultMetrics({ register: registry });
    const registers = [registry];
    this.generationGauge = new Gauge({ name: 'autoprune_worker_generation', help: 'The generation this worker trains in (0: none yet)', registers });
    this.step = new Gauge({ name: 'autoprune_worker_step', help: 'Steps done in the current phase', labelNames: ['phase'], registers });
    this.stepSeconds = new Histogram({
      name: 'autoprune_worker_step_seconds',
      help: "Seconds per training step (W and M updates, all-reduces included), this worker's view",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.imagesPerSecond = new Gauge({ name: 'autoprune_worker_images_per_second', help: "This worker's share of images per second", registers });
    this.inputWait = new Counter({ name: 'autoprune_worker_input_wait_seconds_total', help: 'Seconds the steps waited for their input', registers });
    this.allReduceSeconds = new Histogram({
      name: 'autoprune_worker_allreduce_seconds',
      help: 'Seconds per all-reduce of a gradient set',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.allReduceBytes = new Counter({ name: 'autoprune_worker_allreduce_bytes_total', help: 'Gradient bytes all-reduced (float32 payload)', registers });
    this.busBandwidth = new Gauge({
      name: 'autoprune_worker_allreduce_bus_bandwidth_bytes_per_second',
      help: 'Bus bandwidth of the last all-reduce: bytes / seconds x 2(n-1)/n, comparable across ring sizes (as nccl-tests)',
      registers,
    });
    this.kept = new Gauge({
      name: 'autoprune_worker_kept_fraction',
      help: 'Fraction of prunable weights kept, per layer group (conv, fc) and all',
      labelNames: ['group'],
      registers,
    });
    this.interrupts = new Counter({
      name: 'autoprune_worker_interrupts_total',
      help: "Interrupts that broke this worker's generation off, by kind",
      labelNames: ['kind'],
      registers,
    });
  }

  /** Registered with run `runId`. */
  joinedRun(runId: string): void {
    this.labels.run_id = runId;
    this.registry.setDefaultLabels(this.labels);
  }

  /** In generation `generation` at rank `rank`. */
  enteredGeneration(generation: number, rank: number): void {
    this.labels.rank = String(rank);
    this.registry.setDefaultLabels(this.labels);
    this.generationGauge.set(generation);
  }

  interrupted(kind: string): void {
    this.interrupts.inc({ kind });
  }

  stepDone(seconds: number): void {
    this.stepSeconds.observe(seconds);
  }

  progress(progress: { readonly phase: string; readonly step: number; readonly imagesPerSecond: number; readonly inputWaitSeconds: number }): void {
    this.step.reset();
    this.step.set({ phase: progress.phase }, progress.step);
    this.imagesPerSecond.set(progress.imagesPerSecond);
    this.inputWait.inc(progress.inputWaitSeconds);
  }

  keptFractions(byGroup: ReadonlyMap<string, number>): void {
    for (const [group, fraction] of byGroup) this.kept.set({ group }, fraction);
  }

  /** One all-reduce of `bytes` among `world` ranks took `seconds`. */
  allReduced(seconds: number, bytes: number, world: number): void {
    this.allReduceSeconds.observe(seconds);
    this.allReduceBytes.inc(bytes);
    if (world > 1 && seconds > 0) this.busBandwidth.set(((bytes / seconds) * 2 * (world - 1)) / world);
  }
}
