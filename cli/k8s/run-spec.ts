import { runLabels } from './contract.js';

/** What one run's manifests are made from: the command line of `autoprune k8s render`, checked. */

/** The image variant the pods run; it decides the GPU runtime's driver capabilities. */
export type ImageVariant = 'cpu' | 'webgpu' | 'tf-gpu';

/**
 * What runs the pods: two Jobs (the default), a JobSet of them (kubernetes-sigs/jobset: stable pod DNS names,
 * the coordinator started first, the whole set ended with the run), or the two Jobs gang-scheduled by Volcano.
 */
export type Workload = 'jobs' | 'jobset' | 'volcano';

export interface RunSpec {
  /** The run id: names every object and the run directory. */
  readonly name: string;
  /** The run config as written (validated by the caller). */
  readonly configText: string;
  readonly workers: number;
  /** Fewest workers the run goes on with (the config's distributed.minWorkers). */
  readonly minWorkers: number;
  readonly gpusPerWorker: number;
  readonly image: string;
  readonly variant: ImageVariant;
  readonly workload: Workload;
  readonly tls: boolean;
  readonly namespace?: string | undefined;
  readonly storageClass?: string | undefined;
  readonly runVolumeSize: string;
  /** A claim holding the dataset, mounted read-only at the config's data.dir. */
  readonly dataset?: { readonly claim: string; readonly mountPath: string } | undefined;
}

/** `<run>-<suffix>`: every object of a run is named so. */
export function objectName(spec: RunSpec, suffix: string): string {
  return `${spec.name}-${suffix}`;
}

export function metadata(spec: RunSpec, name: string, labels: Record<string, string> = runLabels(spec.name)) {
  return { name, labels, ...(spec.namespace === undefined ? {} : { namespace: spec.namespace }) };
}
