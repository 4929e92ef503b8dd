import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IJobTemplateSpec } from 'kubernetes-models/batch/v1/JobTemplateSpec';

/**
 * Typed models of the two custom resources the jobset and volcano workloads use, for the fields the
 * renderer sets: kubernetes-models has only the core kinds. Like its models they serialise with toJSON;
 * they are checked against the CRDs' own OpenAPI schemas (crd-schema.ts, from crds/).
 */

type ObjectMeta = NonNullable<IJob['metadata']>;

/** kubernetes-sigs/jobset: a group of Jobs with a headless Service, a startup order and failure rules. */
export interface IJobSet {
  readonly apiVersion: 'jobset.x-k8s.io/v1alpha2';
  readonly kind: 'JobSet';
  readonly metadata: ObjectMeta;
  readonly spec: {
    readonly replicatedJobs: readonly IReplicatedJob[];
    /** Pods get the DNS names `<jobset>-<replicatedJob>-<job index>-<pod index>.<subdomain>`. */
    readonly network?: { readonly enableDNSHostnames?: boolean; readonly publishNotReadyAddresses?: boolean; readonly subdomain?: string };
    /** InOrder: a replicated job's Jobs are created once those of the ones before it are ready. */
    readonly startupPolicy?: { readonly startupPolicyOrder: 'AnyOrder' | 'InOrder' };
    /** When the JobSet has succeeded; it then deletes its Jobs that still run. */
    readonly successPolicy?: { readonly operator: 'All' | 'Any'; readonly targetReplicatedJobs?: readonly string[] };
    readonly failurePolicy?: {
      /** Restarts of the whole JobSet (every Job recreated) before it fails. */
      readonly maxRestarts?: number;
      readonly rules?: readonly IJobSetFailureRule[];
    };
  };
}

export interface IReplicatedJob {
  readonly name: string;
  /** Jobs made from the template. */
  readonly replicas: number;
  readonly template: IJobTemplateSpec;
}

/** The Job conditions' reasons a rule may match (the JobSet webhook accepts these only). */
export type JobFailureReason = 'BackoffLimitExceeded' | 'DeadlineExceeded' | 'FailedIndexes' | 'MaxFailedIndexesExceeded' | 'PodFailurePolicy';

export interface IJobSetFailureRule {
  readonly name: string;
  readonly action: 'FailJobSet' | 'RestartJobSet' | 'RestartJobSetAndIgnoreMaxRestarts';
  readonly onJobFailureReasons?: readonly JobFailureReason[];
  readonly targetReplicatedJobs?: readonly string[];
}

/** Volcano: pods that carry the group-name annotation and the volcano scheduler are placed all at once or not at all. */
export interface IPodGroup {
  readonly apiVersion: 'scheduling.volcano.sh/v1beta1';
  readonly kind: 'PodGroup';
  readonly metadata: ObjectMeta;
  readonly spec: {
    /** Pods that must fit together before any of them is bound. */
    readonly minMember: number;
    /** Their requests together: Volcano admits the group only where they fit, so half a gang never holds resources. */
    readonly minResources?: Readonly<Record<string, string>>;
    readonly queue?: string;
  };
}

/** The annotation that puts a pod into a PodGroup. */
export const POD_GROUP_ANNOTATION = 'scheduling.k8s.io/group-name';
export const VOLCANO_SCHEDULER = 'volcano';

export class JobSet {
  static readonly apiVersion = 'jobset.x-k8s.io/v1alpha2';
  static readonly kind = 'JobSet';
  constructor(private readonly data: Omit<IJobSet, 'apiVersion' | 'kind'>) {}
  toJSON(): IJobSet {
    return { apiVersion: JobSet.apiVersion, kind: JobSet.kind, ...this.data };
  }
}

export class PodGroup {
  static readonly apiVersion = 'scheduling.volcano.sh/v1beta1';
  static readonly kind = 'PodGroup';
  constructor(private readonly data: Omit<IPodGroup, 'apiVersion' | 'kind'>) {}
  toJSON(): IPodGroup {
    return { apiVersion: PodGroup.apiVersion, kind: PodGroup.kind, ...this.data };
  }
}
