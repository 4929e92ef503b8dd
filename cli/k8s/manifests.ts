import { Job } from 'kubernetes-models/batch/v1';
import type { IPodFailurePolicyRule } from 'kubernetes-models/batch/v1/PodFailurePolicyRule';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import type { INetworkPolicyEgressRule } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyEgressRule';
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer';
import type { INetworkPolicyPort } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPort';
import { ConfigMap, PersistentVolumeClaim, Service } from 'kubernetes-models/v1';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import { FENCED_OUT_EXIT_STATUS } from '../../coordinator/local-workers.js';
import {
  BAD_INPUT_EXIT_STATUS,
  CONFIG_FILE,
  CONTAINER,
  type Component,
  componentLabels,
  IMAGE_UID,
  JOIN_TOKEN_KEY,
  MOUNTS,
  NATS_PORT,
  PORTS,
  TLS_KEYS,
} from './contract.js';
import type { JobSet, PodGroup } from './crd-models.js';
import { type ImageVariant, metadata, objectName, type RunSpec } from './run-spec.js';
import { gangScheduled, jobSet, jobSetCoordinatorHost, podGroup } from './workloads.js';

/**
 * One run's Kubernetes objects, as typed models (pure): the coordinator as a Job of one pod behind a
 * ClusterIP Service, the workers as an Indexed Job, the run directory's claim, the config, and the
 * NetworkPolicies that let only the run's own traffic through; the jobset and volcano workloads run the
 * same two Jobs their way (workloads.ts). Pods that die come back into the same run: the coordinator
 * resumes the run directory (`--resume-or-start`), workers wait for it (`--connect-timeout`) and register again.
 */

export type Manifest = ConfigMap | PersistentVolumeClaim | Service | Job | NetworkPolicy | JobSet | PodGroup;

/**
 * Seconds a worker keeps registering while no coordinator answers. A coordinator pod that is replaced comes
 * back only once the old one has stopped (podReplacementPolicy Failed), the run directory's volume has moved
 * to the new node and the run has been resumed: minutes after a drain, more when a node dies. A worker that
 * gives up exits 1 and its index starts again (backoffLimitPerIndex), so the run outlasts an outage several
 * times this long, and a run whose coordinator is gone for good is given up within hours, not days.
 */
export const WORKER_CONNECT_TIMEOUT_SECONDS = 1200;
/** Seconds the kubelet waits after SIGTERM before it kills the container. */
export const TERMINATION_GRACE_SECONDS = 120;
/**
 * The program's own grace period after SIGTERM (AUTOPRUNE_GRACE_PERIOD): the coordinator collects the
 * workers' states and writes a final checkpoint, a worker offers its last step's state, then each exits
 * (143). Shorter than the kubelet's wait, so that the program, not a SIGKILL, ends the pod.
 */
export const STOP_GRACE_SECONDS = 90;
/** Restarts of the coordinator's pod (and of each worker index) before the Job gives up. */
const COORDINATOR_BACKOFF_LIMIT = 6;
const WORKER_BACKOFF_LIMIT_PER_INDEX = 6;

const VARIANT_CAPABILITIES: Record<ImageVariant, string | undefined> = {
  cpu: undefined,
  // Dawn needs the Vulkan driver, which the NVIDIA runtime mounts only for `graphics`.
  webgpu: 'compute,utility,graphics',
  'tf-gpu': 'compute,utility',
};

export function renderManifests(spec: RunSpec): Manifest[] {
  const shared = [configMap(spec), runClaim(spec)];
  const policies = [coordinatorPolicy(spec), workerPolicy(spec)];
  switch (spec.workload) {
    case 'jobs':
      return [...shared, coordinatorService(spec), coordinatorJob(spec), workerJob(spec), ...policies];
    case 'volcano': {
      const [coordinator, workers] = [coordinatorJob(spec), workerJob(spec)];
      const gang = [podGroup(spec, coordinator, workers), gangScheduled(spec, coordinator), gangScheduled(spec, workers)];
      return [...shared, coordinatorService(spec), ...gang, ...policies];
    }
    case 'jobset':
      return [...shared, jobSet(spec, coordinatorJob(spec), workerJob(spec)), ...policies];
  }
}

/** Where workers reach the coordinator: its Service, or in a JobSet its pod's stable DNS name. */
function coordinatorAddress(spec: RunSpec): string {
  return `${spec.workload === 'jobset' ? jobSetCoordinatorHost(spec) : objectName(spec, 'coordinator')}:${PORTS.coordinator}`;
}

function configMap(spec: RunSpec): ConfigMap {
  return new ConfigMap({ metadata: metadata(spec, objectName(spec, 'config')), data: { [CONFIG_FILE]: spec.configText } });
}

function runClaim(spec: RunSpec): PersistentVolumeClaim {
  return new PersistentVolumeClaim({
    metadata: metadata(spec, objectName(spec, 'runs')),
    spec: {
      // One writer: only the coordinator's pod mounts it.
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: spec.runVolumeSize } },
      ...(spec.storageClass === undefined ? {} : { storageClassName: spec.storageClass }),
    },
  });
}

function coordinatorService(spec: RunSpec): Service {
  return new Service({
    metadata: metadata(spec, objectName(spec, 'coordinator'), componentLabels(spec.name, 'coordinator')),
    spec: {
      type: 'ClusterIP',
      selector: componentLabels(spec.name, 'coordinator'),
      ports: [
        { name: 'grpc', port: PORTS.coordinator, targetPort: 'grpc', protocol: 'TCP' },
        { name: 'metrics', port: PORTS.metrics, targetPort: 'metrics', protocol: 'TCP' },
      ],
    },
  });
}

/** A failed pod is replaced only once it has stopped, and bad input fails the Job at once; disruptions do not count. */
function failurePolicy(extra: IPodFailurePolicyRule[] = []) {
  return {
    podReplacementPolicy: 'Failed' as const,
    podFailurePolicy: {
      rules: [
        { action: 'FailJob' as const, onExitCodes: { containerName: CONTAINER, operator: 'In' as const, values: [BAD_INPUT_EXIT_STATUS] } },
        ...extra,
        { action: 'Ignore' as const, onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
      ],
    },
  };
}

function coordinatorJob(spec: RunSpec): Job {
  const container: IContainer = {
    ...baseContainer(spec),
    args: [
      'coordinator',
      `${MOUNTS.config}/${CONFIG_FILE}`,
      // The same command line starts the run and resumes it in every pod that replaces this one.
      '--resume-or-start',
      '--out',
      `${MOUNTS.runs}/${spec.name}`,
      '--workers',
      String(spec.workers),
      '--run-id',
      spec.name,
    ],
    env: [...overlayEnv(spec, false), { name: 'AUTOPRUNE_LISTEN', value: `0.0.0.0:${PORTS.coordinator}` }, ...commonEnv()],
    ports: [
      { name: 'grpc', containerPort: PORTS.coordinator, protocol: 'TCP' },
      { name: 'health', containerPort: PORTS.health, protocol: 'TCP' },
      { name: 'metrics', containerPort: PORTS.metrics, protocol: 'TCP' },
    ],
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { memory: '4Gi' } },
    volumeMounts: [...commonMounts(spec), { name: 'config', mountPath: MOUNTS.config, readOnly: true }, { name: 'runs', mountPath: MOUNTS.runs }],
    ...probes(),
  };
  const volumes: IVolume[] = [
    ...commonVolumes(spec),
    { name: 'config', configMap: { name: objectName(spec, 'config') } },
    { name: 'runs', persistentVolumeClaim: { claimName: objectName(spec, 'runs') } },
  ];
  return new Job({
    metadata: metadata(spec, objectName(spec, 'coordinator'), componentLabels(spec.name, 'coordinator')),
    spec: {
      // Indexed in a JobSet, whose pods' DNS names come from their index.
      ...(spec.workload === 'jobset' ? { completionMode: 'Indexed' as const } : {}),
      completions: 1,
      parallelism: 1,
      backoffLimit: COORDINATOR_BACKOFF_LIMIT,
      ...failurePolicy(),
      template: {
        metadata: { labels: componentLabels(spec.name, 'coordinator') },
        spec: podSpec(container, volumes, false),
      },
    },
  });
}

function workerJob(spec: RunSpec): Job {
  const gpus = spec.gpusPerWorker;
  const container: IContainer = {
    ...baseContainer(spec),
    args: ['worker', '--connect-timeout', String(WORKER_CONNECT_TIMEOUT_SECONDS)],
    env: [
      ...overlayEnv(spec, gpus > 0),
      { name: 'AUTOPRUNE_COORDINATOR', value: coordinatorAddress(spec) },
      { name: 'AUTOPRUNE_WORKER_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      // The address peers dial; the servers listen on every interface of the pod's own network namespace.
      { name: 'AUTOPRUNE_ADVERTISE', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'AUTOPRUNE_LISTEN', value: `0.0.0.0:${PORTS.worker}` },
      { name: 'AUTOPRUNE_DATA_LISTEN', value: `0.0.0.0:${PORTS.data}` },
      ...commonEnv(),
    ],
    ports: [
      { name: 'grpc', containerPort: PORTS.worker, protocol: 'TCP' },
      { name: 'data', containerPort: PORTS.data, protocol: 'TCP' },
      { name: 'health', containerPort: PORTS.health, protocol: 'TCP' },
      { name: 'metrics', containerPort: PORTS.metrics, protocol: 'TCP' },
    ],
    resources:
      gpus > 0
        ? { requests: { cpu: '4', memory: '16Gi' }, limits: { memory: '32Gi', 'nvidia.com/gpu': String(gpus) } }
        : { requests: { cpu: '2', memory: '2Gi' }, limits: { memory: '4Gi' } },
    volumeMounts: [...commonMounts(spec), ...(spec.dataset ? [{ name: 'dataset', mountPath: spec.dataset.mountPath, readOnly: true }] : [])],
    ...probes(),
  };
  const volumes: IVolume[] = [
    ...commonVolumes(spec),
    ...(spec.dataset ? [{ name: 'dataset', persistentVolumeClaim: { claimName: spec.dataset.claim, readOnly: true } }] : []),
  ];
  return new Job({
    metadata: metadata(spec, objectName(spec, 'workers'), componentLabels(spec.name, 'worker')),
    spec: {
      completionMode: 'Indexed',
      completions: spec.workers,
      parallelism: spec.workers,
      // Each worker restarts on its own; the run fails once fewer than minWorkers could still come back.
      backoffLimitPerIndex: WORKER_BACKOFF_LIMIT_PER_INDEX,
      maxFailedIndexes: spec.workers - Math.min(spec.minWorkers, spec.workers),
      // A worker fenced out of a run that goes on without it must not come back as the same index.
      ...failurePolicy([{ action: 'FailIndex', onExitCodes: { containerName: CONTAINER, operator: 'In', values: [FENCED_OUT_EXIT_STATUS] } }]),
      template: {
        metadata: { labels: componentLabels(spec.name, 'worker') },
        spec: podSpec(container, volumes, gpus > 0),
      },
    },
  });
}

function baseContainer(spec: RunSpec): IContainer {
  return {
    name: CONTAINER,
    image: spec.image,
    imagePullPolicy: 'IfNotPresent',
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
  };
}

function commonEnv(): IEnvVar[] {
  return [
    { name: 'AUTOPRUNE_JOIN_TOKEN_FILE', value: `${MOUNTS.joinToken}/${JOIN_TOKEN_KEY}` },
    { name: 'AUTOPRUNE_HEALTH_LISTEN', value: `0.0.0.0:${PORTS.health}` },
    { name: 'AUTOPRUNE_METRICS_PORT', value: String(PORTS.metrics) },
    { name: 'AUTOPRUNE_GRACE_PERIOD', value: `${STOP_GRACE_SECONDS}s` },
  ];
}

/**
 * What the variant and TLS add, first: kustomize's strategic merge puts a patch's new list entries before
 * the base's, and deploy/overlays must build to exactly these objects.
 */
function overlayEnv(spec: RunSpec, gpus: boolean): IEnvVar[] {
  const capabilities = VARIANT_CAPABILITIES[spec.variant];
  return [
    ...(capabilities === undefined || !gpus ? [] : [{ name: 'NVIDIA_DRIVER_CAPABILITIES', value: capabilities }]),
    ...(spec.tls
      ? [
          { name: 'AUTOPRUNE_TLS_CERT', value: `${MOUNTS.tls}/${TLS_KEYS.cert}` },
          { name: 'AUTOPRUNE_TLS_KEY', value: `${MOUNTS.tls}/${TLS_KEYS.key}` },
          { name: 'AUTOPRUNE_TLS_CA', value: `${MOUNTS.tls}/${TLS_KEYS.ca}` },
        ]
      : []),
  ];
}

function commonMounts(spec: RunSpec): IVolumeMount[] {
  return [
    ...(spec.tls ? [{ name: 'tls', mountPath: MOUNTS.tls, readOnly: true }] : []),
    { name: 'tmp', mountPath: MOUNTS.tmp },
    { name: 'join-token', mountPath: MOUNTS.joinToken, readOnly: true },
  ];
}

function commonVolumes(spec: RunSpec): IVolume[] {
  return [
    ...(spec.tls ? [{ name: 'tls', secret: { secretName: objectName(spec, 'tls'), defaultMode: 0o440 } }] : []),
    { name: 'tmp', emptyDir: {} },
    { name: 'join-token', secret: { secretName: objectName(spec, 'join-token'), defaultMode: 0o440 } },
  ];
}

/**
 * Native gRPC probes on the health-only port, which speaks plaintext with TLS on or off (the probes cannot
 * speak TLS) and reports the gRPC server's own health.
 */
function probes(): Pick<IContainer, 'startupProbe' | 'readinessProbe' | 'livenessProbe'> {
  const action: Pick<IProbe, 'grpc'> = { grpc: { port: PORTS.health } };
  return {
    // Loading a backend and a dataset can take minutes before the server answers.
    startupProbe: { ...action, periodSeconds: 10, failureThreshold: 60 },
    readinessProbe: { ...action, periodSeconds: 10, failureThreshold: 3 },
    // The health server shares the main thread with training: two minutes of silence, not one slow step, restart the pod.
    livenessProbe: { ...action, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 6 },
  };
}

/** The Pod Security "restricted" profile, no service-account token, and a GPU toleration where GPUs are asked for. */
function podSpec(container: IContainer, volumes: IVolume[], gpus: boolean): IPodSpec {
  return {
    restartPolicy: 'Never',
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: IMAGE_UID,
      runAsGroup: IMAGE_UID,
      fsGroup: IMAGE_UID,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    containers: [container],
    volumes,
    ...(gpus ? { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] } : {}),
  };
}

function podsOf(spec: RunSpec, component: Component): INetworkPolicyPeer {
  return { podSelector: { matchLabels: componentLabels(spec.name, component) } };
}

function on(protocol: 'TCP' | 'UDP', ...ports: number[]): INetworkPolicyPort[] {
  return ports.map((port) => ({ protocol, port }));
}

function tcp(...ports: number[]): INetworkPolicyPort[] {
  return on('TCP', ...ports);
}

/** DNS anywhere (the cluster's resolver) and NATS for the run's events. */
const SHARED_EGRESS: INetworkPolicyEgressRule[] = [{ ports: [...tcp(53), ...on('UDP', 53)] }, { ports: tcp(NATS_PORT) }];

/** Prometheus may scrape from any namespace, on the metrics port only. */
const METRICS_INGRESS = { from: [{ namespaceSelector: {} }], ports: tcp(PORTS.metrics) };

function coordinatorPolicy(spec: RunSpec): NetworkPolicy {
  return new NetworkPolicy({
    metadata: metadata(spec, objectName(spec, 'coordinator'), componentLabels(spec.name, 'coordinator')),
    spec: {
      podSelector: { matchLabels: componentLabels(spec.name, 'coordinator') },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [podsOf(spec, 'worker')], ports: tcp(PORTS.coordinator) }, METRICS_INGRESS],
      egress: SHARED_EGRESS,
    },
  });
}

function workerPolicy(spec: RunSpec): NetworkPolicy {
  return new NetworkPolicy({
    metadata: metadata(spec, objectName(spec, 'workers'), componentLabels(spec.name, 'worker')),
    spec: {
      podSelector: { matchLabels: componentLabels(spec.name, 'worker') },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [podsOf(spec, 'worker')], ports: tcp(PORTS.worker, PORTS.data) }, METRICS_INGRESS],
      egress: [
        { to: [podsOf(spec, 'coordinator')], ports: tcp(PORTS.coordinator) },
        { to: [podsOf(spec, 'worker')], ports: tcp(PORTS.worker, PORTS.data) },
        ...SHARED_EGRESS,
      ],
    },
  });
}
