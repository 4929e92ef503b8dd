import type { IService } from 'kubernetes-models/v1/Service';
import { type IJobSet, type IPodGroup, POD_GROUP_ANNOTATION, VOLCANO_SCHEDULER } from './crd-models.js';
import { type Checked, describe, hasPort, type PodTemplate, portOf } from './pod-templates.js';

/**
 * The checks the CRD schemas cannot make for the jobset and volcano workloads, and where the workers'
 * coordinator address leads in any workload. Pure: objects and their pod templates in, problems out.
 */

/** A DNS label's length: the longest name the API server gives a pod or a Service. */
const DNS_LABEL_LENGTH = 63;
/** The random suffix of a Job's pod names, `-abcde`. */
const POD_NAME_SUFFIX_LENGTH = 6;

/** The Job failure reasons the JobSet webhook accepts in a failure rule. */
const JOB_FAILURE_REASONS = ['BackoffLimitExceeded', 'DeadlineExceeded', 'FailedIndexes', 'MaxFailedIndexesExceeded', 'PodFailurePolicy'];

/**
 * AUTOPRUNE_COORDINATOR of `pod`: a Service of these manifests with that port, or a JobSet pod's DNS name
 * (`<jobset>-<replicated job>-<job>-<pod>.<subdomain>`) whose template has that container port and, when
 * the JobSet starts its replicated jobs in order, comes before `pod`'s.
 */
export function coordinatorAddressProblems(value: string, pod: PodTemplate, objects: readonly Checked[], pods: readonly PodTemplate[]): string[] {
  const [host, port] = [value.replace(/:\d+$/, ''), portOf(value)];
  const [label, ...domain] = host.split('.');
  const service = objects.find((o): o is Checked & IService => o.kind === 'Service' && o.metadata.name === label);
  if (service)
    return (service.spec?.ports ?? []).some((p) => p.port === port) ? [] : [`AUTOPRUNE_COORDINATOR's port ${port} is not a port of Service ${label}`];
  const target = pods.find((candidate) => candidate.replicated && jobSetHostnames(candidate).includes(host) && domain.length > 0);
  if (!target) return [`AUTOPRUNE_COORDINATOR names ${host}, neither a Service nor a JobSet pod of these manifests`];
  const problems: string[] = [];
  if (port === undefined || !hasPort(target.spec, port)) problems.push(`AUTOPRUNE_COORDINATOR's port ${port} is not a container port of ${target.owner}`);
  const { jobSet } = target.replicated!;
  if (jobSet.spec.startupPolicy?.startupPolicyOrder === 'InOrder' && pod.replicated?.jobSet === jobSet && pod.replicated.index <= target.replicated!.index)
    problems.push(`AUTOPRUNE_COORDINATOR names ${target.owner}, which JobSet/${jobSet.metadata.name} starts after these pods (startupPolicy InOrder)`);
  return problems;
}

/** The DNS names (`<hostname>.<subdomain>`) of a JobSet template's pods; none where the JobSet gives its pods no DNS names. */
function jobSetHostnames(pod: PodTemplate): string[] {
  const { jobSet, name } = pod.replicated!;
  if (jobSet.spec.network?.enableDNSHostnames === false) return [];
  const subdomain = jobSet.spec.network?.subdomain ?? jobSet.metadata.name!;
  const replicas = jobSet.spec.replicatedJobs.find((r) => r.name === name)!.replicas;
  const completions = pod.job.completionMode === 'NonIndexed' ? 0 : (pod.job.completions ?? 1);
  const names: string[] = [];
  for (let job = 0; job < replicas; job++)
    for (let index = 0; index < completions; index++) names.push(`${jobSet.metadata.name}-${name}-${job}-${index}.${subdomain}`);
  return names;
}

/** What the JobSet webhook refuses, and what would make the set behave otherwise than the run needs. */
export function jobSetProblems(jobSet: IJobSet): string[] {
  const problems: string[] = [];
  const names = jobSet.spec.replicatedJobs.map((r) => r.name);
  for (const [i, name] of names.entries()) if (names.indexOf(name) !== i) problems.push(`spec.replicatedJobs[${i}]: the name ${name} is used twice`);
  const targets = [
    ...(jobSet.spec.successPolicy?.targetReplicatedJobs ?? []).map((target) => ['spec.successPolicy', target] as const),
    ...(jobSet.spec.failurePolicy?.rules ?? []).flatMap((rule, i) =>
      (rule.targetReplicatedJobs ?? []).map((t) => [`spec.failurePolicy.rules[${i}]`, t] as const),
    ),
  ];
  for (const [field, target] of targets)
    if (!names.includes(target)) problems.push(`${field}: targetReplicatedJobs names ${target}, no replicated job of this JobSet`);
  for (const [i, rule] of (jobSet.spec.failurePolicy?.rules ?? []).entries())
    for (const reason of rule.onJobFailureReasons ?? [])
      if (!JOB_FAILURE_REASONS.includes(reason))
        problems.push(`spec.failurePolicy.rules[${i}]: ${reason} is not a Job failure reason (${JOB_FAILURE_REASONS.join(', ')})`);
  for (const [i, replicated] of jobSet.spec.replicatedJobs.entries()) {
    const job = replicated.template.spec!;
    const pods = job.completionMode === 'NonIndexed' ? 1 : (job.completions ?? 1);
    const longest = `${jobSet.metadata.name}-${replicated.name}-${replicated.replicas - 1}-${pods - 1}`;
    if (longest.length + POD_NAME_SUFFIX_LENGTH > DNS_LABEL_LENGTH)
      problems.push(`spec.replicatedJobs[${i}]: its pods' names (${longest}-xxxxx) would be longer than a DNS label (${DNS_LABEL_LENGTH})`);
  }
  return problems;
}

/**
 * Gang scheduling: every pod in a PodGroup is placed by Volcano and names a PodGroup of these manifests, and
 * no group asks for more pods than its members run at once, which would leave it unscheduled forever.
 */
export function podGroupProblems(objects: readonly Checked[], pods: readonly PodTemplate[]): string[] {
  const problems: string[] = [];
  const groups = objects.filter((o): o is Checked & IPodGroup => o.kind === 'PodGroup');
  for (const pod of pods) {
    const group = pod.annotations[POD_GROUP_ANNOTATION];
    if (group === undefined) continue;
    if (!groups.some((g) => g.metadata.name === group)) problems.push(`${pod.owner}: pod template names PodGroup ${group}, which these manifests do not hold`);
    if (pod.spec.schedulerName !== VOLCANO_SCHEDULER)
      problems.push(`${pod.owner}: pod template is in PodGroup ${group} but schedulerName is ${String(pod.spec.schedulerName)}, not ${VOLCANO_SCHEDULER}`);
  }
  for (const group of groups) {
    const members = pods.filter((pod) => pod.annotations[POD_GROUP_ANNOTATION] === group.metadata.name);
    const running = members.reduce((sum, pod) => sum + (pod.job.parallelism ?? 1), 0);
    if (group.spec.minMember > running)
      problems.push(
        `${describe(group)}: spec.minMember ${group.spec.minMember} is more than the ${running} pods its members run at once: it would never be scheduled`,
      );
  }
  return problems;
}
