import { Job } from 'kubernetes-models/batch/v1';
import type { IJobSetFailureRule } from './crd-models.js';
import { JobSet, POD_GROUP_ANNOTATION, PodGroup, VOLCANO_SCHEDULER } from './crd-models.js';
import { metadata, type RunSpec } from './run-spec.js';

/**
 * The coordinator's and the workers' Jobs (manifests.ts) as the jobset and volcano workloads run them
 * (pure). The run's own elasticity replaces lost pods one at a time, so neither workload ever restarts or
 * holds back the whole run for one pod: the JobSet never recreates its Jobs while the run goes on, and the
 * PodGroup waits only for the pods the run cannot start without.
 */

/** The replicated jobs of a run's JobSet, by role; the coordinator's comes first (it starts first). */
export const REPLICATED_JOBS = { coordinator: 'coordinator', workers: 'workers' } as const;

/** The coordinator's stable DNS name in a JobSet: pod 0 of job 0 of its replicated job, under the JobSet's headless Service. */
export function jobSetCoordinatorHost(spec: RunSpec): string {
  return `${spec.name}-${REPLICATED_JOBS.coordinator}-0-0.${spec.name}`;
}

/**
 * A JobSet's failure rules. A lost pod never fails a Job (the Jobs replace their pods), so a Job that fails
 * has run out of restarts or met bad input, and the JobSet fails with it (maxRestarts 0): recreating every
 * Job would only resume the same run. One exception: a workers Job fails with FailedIndexes only once
 * every index has ended, which workers do with success only when the run has completed, and while a fenced
 * or crashed index has failed for good. Failures are read before successes, so the JobSet restarts once
 * instead: its coordinator finds the run completed (`--resume-or-start`), exits 0, and the JobSet succeeds
 * before any worker starts again (startupPolicy InOrder).
 */
const FAILURE_RULES: readonly IJobSetFailureRule[] = [
  { name: 'bad-input', action: 'FailJobSet', onJobFailureReasons: ['PodFailurePolicy'] },
  {
    name: 'completed-with-failed-indexes',
    action: 'RestartJobSetAndIgnoreMaxRestarts',
    targetReplicatedJobs: [REPLICATED_JOBS.workers],
    onJobFailureReasons: ['FailedIndexes'],
  },
];

/**
 * The two Jobs as one JobSet: pods with stable DNS names on a headless Service, the coordinator's Job created
 * first and the workers' once it is ready, and the run's end (the coordinator's Job) ending the set, which
 * then deletes the workers' Job: no worker is left waiting for a coordinator that is gone.
 */
export function jobSet(spec: RunSpec, coordinator: Job, workers: Job): JobSet {
  const template = (job: Job) => ({ metadata: { labels: job.metadata!.labels! }, spec: job.spec! });
  return new JobSet({
    metadata: metadata(spec, spec.name),
    spec: {
      // The coordinator's name resolves before it is ready: workers retry until it answers.
      network: { enableDNSHostnames: true, publishNotReadyAddresses: true, subdomain: spec.name },
      startupPolicy: { startupPolicyOrder: 'InOrder' },
      successPolicy: { operator: 'All', targetReplicatedJobs: [REPLICATED_JOBS.coordinator] },
      failurePolicy: { maxRestarts: 0, rules: FAILURE_RULES },
      replicatedJobs: [
        { name: REPLICATED_JOBS.coordinator, replicas: 1, template: template(coordinator) },
        { name: REPLICATED_JOBS.workers, replicas: 1, template: template(workers) },
      ],
    },
  });
}

/** The pod template of `job` in the run's PodGroup, placed by Volcano. */
export function gangScheduled(spec: RunSpec, job: Job): Job {
  const { metadata: jobMetadata, spec: jobSpec } = job.toJSON();
  const template = jobSpec!.template;
  return new Job({
    metadata: jobMetadata!,
    spec: {
      ...jobSpec!,
      template: {
        metadata: { ...template.metadata, annotations: { ...template.metadata?.annotations, [POD_GROUP_ANNOTATION]: spec.name } },
        spec: { ...template.spec!, schedulerName: VOLCANO_SCHEDULER },
      },
    },
  });
}

/**
 * The run's PodGroup: the coordinator and minWorkers workers are placed together or not at all, and only
 * where their requests fit together (minResources), so that two runs never each hold half of what both need.
 * Workers past minWorkers join the run as they are placed.
 */
export function podGroup(spec: RunSpec, coordinator: Job, workers: Job): PodGroup {
  const least = Math.min(spec.minWorkers, spec.workers);
  const totals = new Map<string, number>();
  for (const [job, count] of [
    [coordinator, 1],
    [workers, least],
  ] as const)
    for (const [resource, quantity] of Object.entries(podRequests(job))) totals.set(resource, (totals.get(resource) ?? 0) + count * amount(quantity));
  return new PodGroup({
    metadata: metadata(spec, spec.name),
    spec: {
      minMember: 1 + least,
      minResources: Object.fromEntries([...totals].map(([resource, total]) => [resource, formatAmount(resource, total)])),
    },
  });
}

/** A pod's requests as the scheduler counts them: a resource with a limit and no request requests its limit. */
function podRequests(job: Job): Record<string, string> {
  const totals: Record<string, string> = {};
  for (const container of job.spec!.template.spec!.containers) {
    const { limits = {}, requests = {} } = container.resources ?? {};
    Object.assign(totals, limits, requests);
  }
  return totals;
}

const SCALE: Readonly<Record<string, number>> = { m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

/** A Kubernetes quantity (`500m`, `2`, `16Gi`) as a number. */
function amount(quantity: string | number): number {
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(quantity));
  if (!match) throw new Error(`not a quantity this renderer writes: ${quantity}`);
  return Number(match[1]) * SCALE[match[2] ?? '']!;
}

function formatAmount(resource: string, total: number): string {
  if (resource === 'cpu') return Number.isInteger(total) ? String(total) : `${Math.round(total * 1000)}m`;
  if (resource === 'memory') return total % 2 ** 30 === 0 ? `${total / 2 ** 30}Gi` : `${Math.ceil(total / 2 ** 20)}Mi`;
  return String(total);
}
