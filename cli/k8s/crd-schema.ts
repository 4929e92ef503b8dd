import { type ZodType, z } from 'zod';
import jobSetCrd from './crds/jobset.x-k8s.io_jobsets.json' with { type: 'json' };
import podGroupCrd from './crds/scheduling.volcano.sh_podgroups.json' with { type: 'json' };

/**
 * Validation of the custom resources against their CRDs' OpenAPI v3 schemas (committed in crds/, see its
 * README), through zod's JSON Schema reader. A CRD's schema is structural: the API server prunes, or with
 * strict field validation refuses, every field it does not declare; so each object node that declares
 * properties is closed here (additionalProperties false) unless it preserves unknown fields, and an unknown
 * field is a problem, as for the core kinds. The CEL rules (x-kubernetes-validations) are not evaluated.
 */

interface CrdSchema {
  readonly source: string;
  readonly apiVersion: string;
  readonly kind: string;
  readonly openAPIV3Schema: unknown;
}

const CRDS: readonly CrdSchema[] = [jobSetCrd, podGroupCrd];

type SchemaNode = Record<string, unknown>;

/** The schema with every declared object closed, as the API server treats a structural schema. */
function closed(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(closed);
  if (node === null || typeof node !== 'object') return node;
  const entries = Object.entries(node as SchemaNode).map(([key, value]): [string, unknown] => {
    if (key === 'properties') return [key, Object.fromEntries(Object.entries(value as SchemaNode).map(([name, child]) => [name, closed(child)]))];
    return [key, key === 'default' || key === 'enum' ? value : closed(value)];
  });
  const result: SchemaNode = Object.fromEntries(entries);
  if (result.properties && result.additionalProperties === undefined && result['x-kubernetes-preserve-unknown-fields'] !== true)
    result.additionalProperties = false;
  return result;
}

/** The kinds these schemas validate, by `apiVersion/kind`. */
export const CRD_KINDS: readonly string[] = CRDS.map((crd) => `${crd.apiVersion}/${crd.kind}`);

/**
 * Compiled validators by `apiVersion/kind`, built on first use: reading JobSet's schema (its Job template
 * is a whole JobSpec) takes about half a second, and most renders need neither kind.
 */
export class CrdValidators {
  private readonly compiled = new Map<string, ZodType>();

  /** The schema's complaints about `object` (one of CRD_KINDS), each with its path; unknown fields among them. */
  problems(object: { apiVersion?: unknown; kind?: unknown }): string[] {
    const key = `${String(object.apiVersion)}/${String(object.kind)}`;
    const crd = CRDS.find((c) => `${c.apiVersion}/${c.kind}` === key);
    if (!crd) return [`apiVersion ${String(object.apiVersion)} kind ${String(object.kind)}: no CRD schema is known for it`];
    let validator = this.compiled.get(key);
    if (!validator) {
      validator = z.fromJSONSchema(closed(crd.openAPIV3Schema) as Parameters<typeof z.fromJSONSchema>[0], { defaultTarget: 'openapi-3.0' });
      this.compiled.set(key, validator);
    }
    const result = validator.safeParse(object);
    if (result.success) return [];
    return result.error.issues.flatMap((issue) => {
      const path = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
      if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => `${path}.${key}: unknown field`);
      return [`${path || '.'}: ${issue.message}`];
    });
  }
}
