import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import type { IJobSet } from './crd-models.js';
import { CRD_KINDS, CrdValidators } from './crd-schema.js';

/**
 * Validation against the Kubernetes OpenAPI schemas, through the kubernetes-models validators, and the
 * unknown fields those validators let through (their schemas do not forbid additional properties, while
 * the API server drops or, with strict field validation, refuses them).
 *
 * The unknown fields are found from the same schemas: the validator reads every property its schema
 * declares (and enumerates the keys of a map), so an object is validated behind a recording proxy and any
 * key of an object that the validator looked into but never read is one the schema does not know.
 *
 * The custom resources (JobSet, PodGroup) are validated against their CRDs' schemas (crd-schema.ts), and
 * the core types inside them (metadata, a JobSet's Job templates) against the core schemas as well.
 */

/** The kinds the manifests may hold, by apiVersion and kind. */
const MODELS: Record<string, { prototype: { validate(): void } }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Service': Service,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

interface Visit {
  readonly path: string;
  readonly value: Record<string, unknown>;
  readonly read: Set<string>;
  enumerated: boolean;
}

/**
 * The schema's complaints about `object`, then (only when it is valid) its unknown fields, each with its path.
 * `crds` compiles the CRD schemas once for all the objects a caller checks.
 */
export function schemaProblems(object: unknown, crds: CrdValidators = new CrdValidators()): string[] {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) return ['is not a mapping'];
  const { apiVersion, kind } = object as { apiVersion?: unknown; kind?: unknown };
  const key = `${String(apiVersion)}/${String(kind)}`;
  if (CRD_KINDS.includes(key)) return customResourceProblems(object as { apiVersion: unknown; kind: unknown; metadata?: unknown }, crds);
  const model = MODELS[key];
  if (!model)
    return [
      `apiVersion ${String(apiVersion)} kind ${String(kind)}: not a kind these manifests may hold (${[...Object.keys(MODELS), ...CRD_KINDS].join(', ')})`,
    ];
  const visits: Visit[] = [];
  try {
    model.prototype.validate.call(recorded(object as Record<string, unknown>, '', visits, new WeakMap()));
  } catch (error) {
    return [(error as Error).message];
  }
  const unknown: string[] = [];
  for (const visit of visits) {
    // Lists are read by index, maps are enumerated, and a value the schema leaves free is never read.
    if (Array.isArray(visit.value) || visit.enumerated || visit.read.size === 0) continue;
    for (const key of Object.keys(visit.value)) if (!visit.read.has(key)) unknown.push(`${visit.path}.${key}: unknown field`);
  }
  return unknown;
}

/** A custom resource: its CRD's schema, then its metadata (which CRD schemas leave open) and a JobSet's Job templates as core objects. */
function customResourceProblems(object: { apiVersion: unknown; kind: unknown; metadata?: unknown }, crds: CrdValidators): string[] {
  const problems = crds.problems(object);
  if (problems.length > 0) return problems;
  problems.push(...schemaProblems({ apiVersion: 'v1', kind: 'ConfigMap', metadata: object.metadata }));
  if (object.kind === 'JobSet')
    (object as unknown as IJobSet).spec.replicatedJobs.forEach((replicated, i) => {
      const asJob = { apiVersion: 'batch/v1', kind: 'Job', metadata: replicated.template.metadata ?? {}, spec: replicated.template.spec };
      problems.push(...schemaProblems(asJob).map((problem) => `.spec.replicatedJobs[${i}].template, as a Job: ${problem}`));
    });
  return problems;
}

function recorded(value: Record<string, unknown>, path: string, visits: Visit[], proxies: WeakMap<object, object>): Record<string, unknown> {
  const known = proxies.get(value);
  if (known) return known as Record<string, unknown>;
  const visit: Visit = { path, value, read: new Set(), enumerated: false };
  visits.push(visit);
  const proxy = new Proxy(value, {
    get(target, key, receiver) {
      const child = Reflect.get(target, key, receiver) as unknown;
      if (typeof key !== 'string') return child;
      visit.read.add(key);
      const own = Object.hasOwn(target, key) && child !== null && typeof child === 'object';
      return own ? recorded(child as Record<string, unknown>, Array.isArray(target) ? `${path}[${key}]` : `${path}.${key}`, visits, proxies) : child;
    },
    has(target, key) {
      if (typeof key === 'string') visit.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      visit.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
  proxies.set(value, proxy);
  return proxy;
}
