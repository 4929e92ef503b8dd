/**
 * What the pods and the program agree on: the fixed ports (so that NetworkPolicies and probes can name
 * them), where each volume is mounted, the image's user and the labels that tie a run's objects together.
 * The manifests (manifests.ts) and their checks (checks.ts) both read it.
 */

/** Container ports, by the name each has in the pod spec. */
export const PORTS = {
  /** The coordinator's gRPC server (Coordinator service and grpc.health.v1). */
  coordinator: 7070,
  /** A worker's gRPC server (Collective service and grpc.health.v1). */
  worker: 7071,
  /** A worker's raw TCP bulk channel for the ring all-reduce. */
  data: 7072,
  /**
   * The plaintext port serving only grpc.health.v1 (`--health-listen`, AUTOPRUNE_HEALTH_LISTEN) that the
   * kubelet's native gRPC probes call, in both pods: they speak plaintext only, and the gRPC port may be TLS.
   * No NetworkPolicy opens it: probes come from the pod's own node, which NetworkPolicies always let through.
   */
  health: 7073,
  /** The Prometheus endpoint of every process (`--metrics-port`, AUTOPRUNE_METRICS_PORT). */
  metrics: 9464,
} as const;

/** NATS's client port, the one egress besides DNS that the pods may use outside the run. */
export const NATS_PORT = 4222;

export const MOUNTS = {
  /** The run config, from a ConfigMap; the coordinator starts a new run from it. */
  config: '/etc/autoprune',
  /** Run directories and checkpoints, on the PersistentVolumeClaim only the coordinator mounts. */
  runs: '/runs',
  joinToken: '/var/run/autoprune/join-token',
  tls: '/var/run/autoprune/tls',
  /** The only writable path on the read-only root: an emptyDir. */
  tmp: '/tmp',
} as const;

export const CONFIG_FILE = 'config.yaml';
export const JOIN_TOKEN_KEY = 'token';
/** The keys of the TLS Secret, as `kubectl create secret generic --from-file` names them. */
export const TLS_KEYS = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

/** The uid and gid deploy/image/Containerfile gives the program's user. */
export const IMAGE_UID = 10001;

/** The container's name in both pods: the pod failure policies name it. */
export const CONTAINER = 'autoprune';

/** The program's exit status for bad input (config, data, checkpoints): retrying cannot help. */
export const BAD_INPUT_EXIT_STATUS = 2;

export type Component = 'coordinator' | 'worker';

/** The labels of every object of a run; pods add their component. */
export function runLabels(run: string): Record<string, string> {
  return { 'app.kubernetes.io/name': 'autoprune', 'app.kubernetes.io/instance': run };
}

export function componentLabels(run: string, component: Component): Record<string, string> {
  return { ...runLabels(run), 'app.kubernetes.io/component': component };
}
