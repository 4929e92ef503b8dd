import type { IJobSpec } from 'kubernetes-models/batch/v1/JobSpec';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { IService } from 'kubernetes-models/v1/Service';
import { parseDuration } from '../duration.js';
import type { IJobSet } from './crd-models.js';
import { CrdValidators } from './crd-schema.js';
import { type Checked, describe, hasPort, type PodTemplate, podTemplates, portOf } from './pod-templates.js';
import { schemaProblems } from './schema.js';
import { coordinatorAddressProblems, jobSetProblems, podGroupProblems } from './workload-checks.js';

/**
 * Every check the manifests of a run must pass before anyone applies them: the Kubernetes schemas and
 * unknown fields (schema.ts), then what the schemas cannot say: selectors that select the pods they are
 * meant for, container ports that match the ports the program is told to listen on, pod failure policies
 * only where the API server accepts them, the Pod Security "restricted" profile on every pod, and for the
 * jobset and volcano workloads what their CRD schemas miss (workload-checks.ts).
 * Pure: objects in (as parsed YAML or JSON), problems out, each naming the object and the field.
 */

type LabelSelector = { readonly matchLabels?: Record<string, string>; readonly matchExpressions?: unknown[] } | undefined;

/** `crds` compiles the CRD schemas once for every call that shares it. */
export function manifestProblems(objects: readonly unknown[], crds: CrdValidators = new CrdValidators()): string[] {
  const problems: string[] = [];
  for (const object of objects) for (const problem of schemaProblems(object, crds)) problems.push(`${describe(object)}: ${problem}`);
  if (problems.length > 0) return problems;
  const all = objects as Checked[];
  const pods = podTemplates(all);
  const named = new Map(all.map((o) => [describe(o), o]));
  for (const object of all) {
    const where = describe(object);
    if (object.kind === 'Service') problems.push(...serviceProblems(object as IService, pods).map((p) => `${where}: ${p}`));
    if (object.kind === 'NetworkPolicy') problems.push(...policyProblems(object as INetworkPolicy, pods).map((p) => `${where}: ${p}`));
    if (object.kind === 'JobSet') problems.push(...jobSetProblems(object as Checked & IJobSet).map((p) => `${where}: ${p}`));
  }
  problems.push(...podGroupProblems(all, pods));
  for (const pod of pods) {
    problems.push(...jobProblems(pod.job).map((p) => `${pod.owner}: ${p}`));
    problems.push(...restrictedProblems(pod.spec).map((p) => `${pod.owner}: pod template: ${p}`));
    problems.push(...portProblems(pod, all, pods).map((p) => `${pod.owner}: pod template: ${p}`));
    problems.push(...graceProblems(pod.spec).map((p) => `${pod.owner}: pod template: ${p}`));
    for (const volume of pod.spec.volumes ?? []) {
      if (volume.configMap && !named.has(`ConfigMap/${volume.configMap.name}`))
        problems.push(`${pod.owner}: volume ${volume.name} names ConfigMap ${volume.configMap.name}, which these manifests do not hold`);
    }
  }
  return problems;
}

function jobProblems(spec: IJobSpec): string[] {
  const problems: string[] = [];
  const restartPolicy = spec.template.spec?.restartPolicy;
  if (spec.podFailurePolicy && restartPolicy !== 'Never')
    problems.push(`spec.podFailurePolicy needs spec.template.spec.restartPolicy Never, found ${String(restartPolicy)}`);
  if (spec.podFailurePolicy && spec.podReplacementPolicy !== undefined && spec.podReplacementPolicy !== 'Failed')
    problems.push(`spec.podFailurePolicy needs spec.podReplacementPolicy Failed, found ${String(spec.podReplacementPolicy)}`);
  if (spec.backoffLimitPerIndex !== undefined && spec.completionMode !== 'Indexed')
    problems.push(`spec.backoffLimitPerIndex needs spec.completionMode Indexed, found ${String(spec.completionMode)}`);
  if (spec.selector !== undefined && spec.manualSelector !== true) problems.push('spec.selector is set without spec.manualSelector');
  return problems;
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([key, value]) => labels[key] === value);
}

function serviceProblems(service: IService, pods: readonly PodTemplate[]): string[] {
  const selector = service.spec?.selector;
  if (!selector || Object.keys(selector).length === 0) return ['spec.selector is empty: the Service would select no pod of the run'];
  const selected = pods.filter((pod) => selects(selector, pod.labels));
  if (selected.length === 0) return [`spec.selector ${JSON.stringify(selector)} matches the labels of no pod template`];
  const problems: string[] = [];
  for (const port of service.spec?.ports ?? []) {
    const target = port.targetPort ?? port.port;
    for (const pod of selected)
      if (!hasPort(pod.spec, target)) problems.push(`port ${port.name ?? port.port}: targetPort ${target} is not a container port of ${pod.owner}`);
  }
  return problems;
}

function policyProblems(policy: INetworkPolicy, pods: readonly PodTemplate[]): string[] {
  const problems: string[] = [];
  const spec = policy.spec!;
  const matching = (selector: LabelSelector, field: string): PodTemplate[] => {
    const found = pods.filter((pod) => selects(selector?.matchLabels, pod.labels));
    if (selector?.matchExpressions) problems.push(`${field}.matchExpressions: not checked here; use matchLabels`);
    if (found.length === 0) problems.push(`${field} ${JSON.stringify(selector?.matchLabels ?? {})} matches the labels of no pod template`);
    return found;
  };
  const targets = matching(spec.podSelector, 'spec.podSelector');
  const rules = [
    ...(spec.ingress ?? []).map((rule, i) => ({ rule, field: `spec.ingress[${i}]`, peers: rule.from ?? [], into: true })),
    ...(spec.egress ?? []).map((rule, i) => ({ rule, field: `spec.egress[${i}]`, peers: rule.to ?? [], into: false })),
  ];
  for (const { rule, field, peers, into } of rules) {
    const peerPods = (peers as INetworkPolicyPeer[]).flatMap((peer, j) =>
      peer.podSelector && !peer.namespaceSelector ? matching(peer.podSelector, `${field}.peers[${j}].podSelector`) : [],
    );
    // Ingress ports are the selected pods' own; egress ports to pods of the run are those pods'.
    const owners = into ? targets : peerPods;
    for (const port of rule.ports ?? []) {
      for (const pod of owners)
        if (port.port !== undefined && !hasPort(pod.spec, port.port)) problems.push(`${field}: port ${port.port} is not a container port of ${pod.owner}`);
    }
  }
  return problems;
}

/** The environment variables that name a port the program listens on. */
const LISTEN_VARIABLES = ['AUTOPRUNE_LISTEN', 'AUTOPRUNE_DATA_LISTEN', 'AUTOPRUNE_HEALTH_LISTEN', 'AUTOPRUNE_METRICS_PORT'];

/** A duration setting (`90`, `90s`, `2m`, `1500ms`) in seconds, as the program reads AUTOPRUNE_GRACE_PERIOD. */
/** The program's own reading of a duration setting, in seconds; undefined where the program would refuse it. */
function durationSeconds(value: string): number | undefined {
  try {
    return parseDuration(value, 'AUTOPRUNE_GRACE_PERIOD') / 1000;
  } catch {
    return undefined;
  }
}

/**
 * The ports a native gRPC probe may call: those the program serves grpc.health.v1 on in plaintext, since the
 * kubelet's probes speak nothing else. With TLS on, only the health-only port.
 */
function plaintextHealthPorts(container: IContainer): number[] {
  const env = new Map((container.env ?? []).map((v) => [v.name, v.value]));
  const ports = [env.get('AUTOPRUNE_HEALTH_LISTEN'), env.has('AUTOPRUNE_TLS_CERT') ? undefined : env.get('AUTOPRUNE_LISTEN')];
  return ports.flatMap((value) => (value === undefined ? [] : (portOf(value) ?? [])));
}

/** The program's grace period after SIGTERM must end before the kubelet's, or a SIGKILL cuts the final checkpoint. */
function graceProblems(spec: IPodSpec): string[] {
  const kubelet = spec.terminationGracePeriodSeconds ?? 30;
  return spec.containers.flatMap((container) => {
    const grace = container.env?.find((v) => v.name === 'AUTOPRUNE_GRACE_PERIOD')?.value;
    if (grace === undefined) return [];
    const seconds = durationSeconds(grace);
    if (seconds === undefined) return [`container ${container.name}: AUTOPRUNE_GRACE_PERIOD ${grace} is not a duration`];
    return seconds < kubelet
      ? []
      : [`container ${container.name}: AUTOPRUNE_GRACE_PERIOD ${grace} does not end before terminationGracePeriodSeconds ${kubelet}`];
  });
}

function portProblems(pod: PodTemplate, objects: readonly Checked[], pods: readonly PodTemplate[]): string[] {
  const problems: string[] = [];
  const { spec } = pod;
  for (const container of spec.containers) {
    const where = `container ${container.name}`;
    for (const variable of container.env ?? []) {
      if (LISTEN_VARIABLES.includes(variable.name)) {
        const port = variable.value === undefined ? undefined : portOf(variable.value);
        if (port === undefined) problems.push(`${where}: ${variable.name} names no port (${String(variable.value)})`);
        else if (!hasPort(spec, port)) problems.push(`${where}: ${variable.name} listens on ${port}, which is not a container port`);
      }
      if (variable.name === 'AUTOPRUNE_COORDINATOR' && variable.value !== undefined)
        problems.push(...coordinatorAddressProblems(variable.value, pod, objects, pods).map((p) => `${where}: ${p}`));
    }
    const probes: [string, IProbe | undefined][] = [
      ['startupProbe', container.startupProbe],
      ['readinessProbe', container.readinessProbe],
      ['livenessProbe', container.livenessProbe],
    ];
    for (const [field, probe] of probes) {
      const port = probe?.grpc?.port ?? probe?.tcpSocket?.port ?? probe?.httpGet?.port;
      if (port !== undefined && !hasPort(spec, port)) problems.push(`${where}: ${field} probes port ${port}, which is not a container port`);
      if (probe?.grpc && !plaintextHealthPorts(container).includes(probe.grpc.port))
        problems.push(`${where}: ${field} is a plaintext gRPC probe on port ${probe.grpc.port}, where no plaintext grpc.health.v1 is served`);
    }
  }
  return problems;
}

/** Volume types the restricted profile allows. */
const RESTRICTED_VOLUMES = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];

/**
 * The Pod Security Standards' "restricted" level (Kubernetes 1.32), plus what these pods promise beyond it:
 * a read-only root file system and no service-account token.
 */
export function restrictedProblems(spec: IPodSpec): string[] {
  const problems: string[] = [];
  const pod = spec.securityContext ?? {};
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC'] as const) if (spec[field]) problems.push(`${field} is set`);
  if (spec.automountServiceAccountToken !== false) problems.push('automountServiceAccountToken is not false');
  for (const volume of spec.volumes ?? []) {
    const type = Object.keys(volume).find((key) => key !== 'name');
    if (!type || !RESTRICTED_VOLUMES.includes(type)) problems.push(`volume ${volume.name} is of type ${String(type)}, which the restricted profile forbids`);
  }
  if (pod.runAsUser === 0) problems.push('securityContext.runAsUser is 0');
  const containers: IContainer[] = [...(spec.initContainers ?? []), ...spec.containers];
  for (const container of containers) {
    const where = `container ${container.name}`;
    const own = container.securityContext ?? {};
    if (own.privileged) problems.push(`${where}: privileged`);
    if (own.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation is not false`);
    if ((own.runAsNonRoot ?? pod.runAsNonRoot) !== true) problems.push(`${where}: runAsNonRoot is not true`);
    if ((own.runAsUser ?? pod.runAsUser) === 0) problems.push(`${where}: runAsUser is 0`);
    const seccomp = (own.seccompProfile ?? pod.seccompProfile)?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
      problems.push(`${where}: seccompProfile is ${String(seccomp)}, not RuntimeDefault or Localhost`);
    if (!(own.capabilities?.drop ?? []).includes('ALL')) problems.push(`${where}: capabilities.drop does not hold ALL`);
    for (const added of own.capabilities?.add ?? []) if (added !== 'NET_BIND_SERVICE') problems.push(`${where}: adds capability ${added}`);
    if (own.procMount === 'Unmasked') problems.push(`${where}: procMount is Unmasked`);
    if ((container.ports ?? []).some((port) => port.hostPort !== undefined)) problems.push(`${where}: uses a hostPort`);
    if (own.readOnlyRootFilesystem !== true) problems.push(`${where}: readOnlyRootFilesystem is not true`);
  }
  return problems;
}
