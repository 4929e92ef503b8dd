import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IJobSpec } from 'kubernetes-models/batch/v1/JobSpec';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IJobSet } from './crd-models.js';

/**
 * The pod templates of a run's manifests, wherever they sit (a Job, or a JobSet's replicated job), with
 * the Job spec around each, for the checks (checks.ts, workload-checks.ts). Pure.
 */

/** An object that passed the schemas, seen through the fields the checks read. */
export interface Checked {
  readonly kind: string;
  readonly metadata: { readonly name: string };
}

export interface PodTemplate {
  /** Where it is, for messages: `Job/x`, or `JobSet/x replicated job y`. */
  readonly owner: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly spec: IPodSpec;
  readonly job: IJobSpec;
  /** Its JobSet and replicated job, when a JobSet makes its Jobs. */
  readonly replicated?: { readonly jobSet: IJobSet; readonly name: string; readonly index: number } | undefined;
}

/** `Kind/name`, for messages. */
export function describe(object: unknown): string {
  const { kind, metadata } = (object ?? {}) as { kind?: unknown; metadata?: { name?: unknown } };
  return `${String(kind)}/${String(metadata?.name)}`;
}

function template(owner: string, job: IJobSpec, replicated?: PodTemplate['replicated']): PodTemplate {
  const metadata = job.template.metadata ?? {};
  return { owner, labels: metadata.labels ?? {}, annotations: metadata.annotations ?? {}, spec: job.template.spec!, job, replicated };
}

export function podTemplates(objects: readonly Checked[]): PodTemplate[] {
  return objects.flatMap((object) => {
    if (object.kind === 'Job') return [template(describe(object), (object as Checked & IJob).spec!)];
    if (object.kind !== 'JobSet') return [];
    const jobSet = object as Checked & IJobSet;
    return jobSet.spec.replicatedJobs.map((replicated, index) =>
      template(`${describe(jobSet)} replicated job ${replicated.name}`, replicated.template.spec!, { jobSet, name: replicated.name, index }),
    );
  });
}

export function hasPort(spec: IPodSpec, port: number | string): boolean {
  return spec.containers.flatMap((c) => c.ports ?? []).some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port));
}

/** The port in `host:port` (or a bare port number). */
export function portOf(value: string): number | undefined {
  const match = /(?:^|:)(\d+)$/.exec(value);
  return match ? Number(match[1]) : undefined;
}
