import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';

/**
 * Validation against the Kubernetes OpenAPI schemas, through the kubernetes-models validators, and the
 * unknown fields those validators let through (their schemas do not forbid additional properties, while
 * the API server drops or, with strict field validation, refuses them).
 *
 * The unknown fields are found from the same schemas: the validator reads every property its schema
 * declares (and enumerates the keys of a map), so an object is validated behind a recording proxy and any
 * key of an object that the validator looked into but never read is one the schema does not know.
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

/** The schema's complaints about `object`, then (only when it is valid) its unknown fields, each with its path. */
export function schemaProblems(object: unknown): string[] {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) return ['is not a mapping'];
  const { apiVersion, kind } = object as { apiVersion?: unknown; kind?: unknown };
  const model = MODELS[`${String(apiVersion)}/${String(kind)}`];
  if (!model) return [`apiVersion ${String(apiVersion)} kind ${String(kind)}: not a kind these manifests may hold (${Object.keys(MODELS).join(', ')})`];
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
