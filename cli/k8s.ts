import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import { defineCommand, formatCommandList, type OptionValues, parseCommand, printHelp } from './command.js';
import { manifestProblems } from './k8s/checks.js';
import { renderManifests } from './k8s/manifests.js';
import type { ImageVariant, RunSpec, Workload } from './k8s/run-spec.js';

/** `autoprune k8s render`: one run's Kubernetes manifests, from typed models, checked before they are written. */

export const K8S_RENDER_COMMAND = defineCommand({
  name: 'k8s render',
  summary: "writes one run's Kubernetes manifests (Jobs, Service, claim, NetworkPolicies), schema-checked",
  usage: ['k8s render <config.yaml> --workers N --gpus-per-worker G --image IMAGE [options]'],
  description:
    'Writes DIR with run.yaml and kustomization.yaml for `kubectl apply -k DIR`: the coordinator Job and Service, the\n' +
    "workers' Indexed Job, the run directory's claim, the config and the NetworkPolicies, checked against the\n" +
    'Kubernetes schemas and the Pod Security "restricted" profile. The overlays pick the image variant, add TLS,\n' +
    'and run the two Jobs as one JobSet (jobset.x-k8s.io) or gang-scheduled by Volcano (a PodGroup); a dataset\n' +
    "claim is mounted read-only at the config's data.dir.",
  arguments: [{ name: '<config.yaml>', description: 'the run config, embedded in a ConfigMap' }],
  options: {
    workers: { type: 'string', value: 'N', description: "worker pods (the Indexed Job's completions; required)" },
    'gpus-per-worker': { type: 'string', value: 'G', description: 'nvidia.com/gpu limit of each worker pod (required)' },
    image: { type: 'string', value: 'IMAGE', description: 'the autoprune image (deploy/image; required)' },
    out: { type: 'string', value: 'DIR', description: 'directory to write', defaultText: 'k8s/<RUN>' },
    name: { type: 'string', value: 'RUN', description: 'run id, naming every object and the run directory', defaultText: "the config file's name" },
    namespace: { type: 'string', value: 'NS', description: 'namespace of every object', defaultText: "none (kubectl's current)" },
    'storage-class': { type: 'string', value: 'SC', description: "storage class of the run directory's claim", defaultText: 'the cluster default' },
    'run-volume-size': { type: 'string', value: 'SIZE', description: "size of the run directory's claim", default: '10Gi' },
    'dataset-claim': { type: 'string', value: 'CLAIM', description: 'claim holding the dataset, mounted read-only at data.dir', defaultText: 'none' },
    overlay: {
      type: 'string',
      value: 'NAME',
      multiple: true,
      description: 'cpu, webgpu or tf-gpu (the image variant), tls, and jobset or volcano (what runs the Jobs)',
      defaultText: 'cpu, or webgpu with GPUs; two plain Jobs',
    },
  },
  examples: ['k8s render examples/resnet50-imagenet.yaml --workers 4 --gpus-per-worker 1 --image registry.example.com/autoprune:gpu --dataset-claim imagenet'],
});

const VARIANTS: readonly ImageVariant[] = ['cpu', 'webgpu', 'tf-gpu'];
const WORKLOADS: readonly Workload[] = ['jobset', 'volcano'];
/** Object names are `<run>-<suffix>` and must stay DNS labels (63 characters); the longest suffix is 12. */
const RUN_NAME = /^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$/;
/** A DNS label's length, which a JobSet's pod names (`<run>-<replicated job>-0-<index>-<5 random>`) must keep. */
const DNS_LABEL_LENGTH = 63;
const QUANTITY = /^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;

export async function k8s(args: string[]): Promise<void> {
  const [subcommand, ...rest] = args;
  if (subcommand === undefined || subcommand === '--help' || subcommand === '-h') {
    process.stdout.write(`${formatCommandList([K8S_RENDER_COMMAND], 'k8s')}\n`);
    return;
  }
  if (subcommand !== 'render') throw new InputError('autoprune k8s', 'expects the subcommand render', { found: JSON.stringify(subcommand) });
  const parsed = parseCommand(K8S_RENDER_COMMAND, rest);
  if (parsed.help) return printHelp(K8S_RENDER_COMMAND);
  const { spec, out } = await renderParsed(parsed.values, parsed.positionals);
  process.stdout.write(
    `wrote ${join(out, 'run.yaml')} and ${join(out, 'kustomization.yaml')}; before kubectl apply -k ${out}, create the Secrets:\n` +
      `  kubectl create secret generic ${spec.name}-join-token --from-literal=token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n')"\n` +
      (spec.tls ? `  kubectl create secret generic ${spec.name}-tls --from-file=tls.crt --from-file=tls.key --from-file=ca.crt\n` : ''),
  );
}

/** `render`'s work without its message: the run's manifests, checked, written to their directory. */
export async function renderRun(args: readonly string[]): Promise<{ spec: RunSpec; out: string }> {
  const parsed = parseCommand(K8S_RENDER_COMMAND, args);
  if (parsed.help) throw new InputError('autoprune k8s render', 'was asked for its help, not a render');
  return renderParsed(parsed.values, parsed.positionals);
}

async function renderParsed(values: RenderValues, positionals: readonly string[]): Promise<{ spec: RunSpec; out: string }> {
  const { spec, out } = await renderSpec(values, positionals);
  const manifests = renderManifests(spec).map((model) => model.toJSON() as unknown);
  const problems = manifestProblems(manifests);
  // The models are typed, so a problem here is a bug in the renderer, never the user's to fix.
  if (problems.length > 0) throw new Error(`the rendered manifests fail their checks:\n${problems.join('\n')}`);
  await writeManifests(out, manifests);
  return { spec, out };
}

type RenderValues = OptionValues<(typeof K8S_RENDER_COMMAND)['options']>;

async function renderSpec(values: RenderValues, positionals: readonly string[]): Promise<{ spec: RunSpec; out: string }> {
  if (positionals.length !== 1) throw new InputError('autoprune k8s render', 'expects exactly one config file', { found: `${positionals.length} arguments` });
  const configPath = positionals[0]!;
  const config = await loadConfig(configPath);
  const configText = await readFile(configPath, 'utf8');
  const workers = count(values.workers, '--workers', 1);
  const gpusPerWorker = count(values['gpus-per-worker'], '--gpus-per-worker', 0);
  if (!values.image) throw new InputError('--image', 'is required', { expected: 'the image to run, e.g. registry.example.com/autoprune:gpu' });
  const name =
    values.name ??
    configPath
      .replace(/^.*\//, '')
      .replace(/\.ya?ml$/, '')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-');
  if (!RUN_NAME.test(name))
    throw new InputError('--name', 'is not a run name Kubernetes can use', {
      expected: 'lowercase letters, digits and -, at most 50, starting and ending alphanumeric',
      found: JSON.stringify(name),
    });
  const overlays = values.overlay;
  for (const overlay of overlays)
    if (overlay !== 'tls' && !VARIANTS.includes(overlay as ImageVariant) && !WORKLOADS.includes(overlay as Workload))
      throw new InputError('--overlay', 'is not an overlay', { expected: [...VARIANTS, 'tls', ...WORKLOADS].join(', '), found: JSON.stringify(overlay) });
  const variants = overlays.filter((o) => VARIANTS.includes(o as ImageVariant)) as ImageVariant[];
  if (variants.length > 1) throw new InputError('--overlay', 'names more than one image variant', { found: variants.join(', ') });
  const workloads = overlays.filter((o) => WORKLOADS.includes(o as Workload)) as Workload[];
  if (workloads.length > 1) throw new InputError('--overlay', 'names both jobset and volcano; pick one', { found: workloads.join(', ') });
  const workload = workloads[0] ?? 'jobs';
  const longestPodName = [`${name}-coordinator-0-0-abcde`, `${name}-workers-0-${workers - 1}-abcde`].sort((a, b) => b.length - a.length)[0]!;
  if (workload === 'jobset' && longestPodName.length > DNS_LABEL_LENGTH)
    throw new InputError('--name', `is too long for a JobSet of ${workers} workers, whose pod names must stay DNS labels`, {
      expected: `at most ${DNS_LABEL_LENGTH - (longestPodName.length - name.length)} characters`,
      found: `${name.length} (${JSON.stringify(name)})`,
    });
  const variant = variants[0] ?? (gpusPerWorker > 0 ? 'webgpu' : 'cpu');
  if ((variant === 'cpu') !== (gpusPerWorker === 0))
    throw new InputError('--gpus-per-worker', variant === 'cpu' ? 'must be 0 with the cpu overlay' : `must be at least 1 with the ${variant} overlay`, {
      found: String(gpusPerWorker),
    });
  const size = values['run-volume-size'];
  if (!QUANTITY.test(size)) throw new InputError('--run-volume-size', 'is not a Kubernetes quantity', { expected: 'e.g. 10Gi', found: JSON.stringify(size) });
  const dataDir = config.data.dir;
  const datasetClaim = values['dataset-claim'];
  if (dataDir !== undefined && datasetClaim === undefined)
    throw new InputError('--dataset-claim', `is required: the config reads data.dir ${dataDir}, which a pod only has from a volume`);
  if (datasetClaim !== undefined && (dataDir === undefined || !isAbsolute(dataDir)))
    throw new InputError('data.dir', 'must be an absolute path for --dataset-claim to be mounted there', { found: JSON.stringify(dataDir ?? 'nothing') });
  const spec: RunSpec = {
    name,
    configText,
    workers,
    minWorkers: config.distributed.minWorkers,
    gpusPerWorker,
    image: values.image,
    variant,
    workload,
    tls: overlays.includes('tls'),
    namespace: values.namespace,
    storageClass: values['storage-class'],
    runVolumeSize: size,
    dataset: datasetClaim === undefined ? undefined : { claim: datasetClaim, mountPath: dataDir! },
  };
  return { spec, out: values.out ?? join('k8s', name) };
}

function count(text: string | undefined, flag: string, least: number): number {
  if (text === undefined) throw new InputError(flag, 'is required');
  if (!/^\d+$/.test(text) || Number(text) < least) throw new InputError(flag, `is not a whole number of at least ${least}`, { found: JSON.stringify(text) });
  return Number(text);
}

/** run.yaml (every object) and a kustomization.yaml naming it; refuses a directory that holds anything else. */
async function writeManifests(out: string, manifests: readonly unknown[]): Promise<void> {
  await mkdir(out, { recursive: true });
  const foreign = (await readdir(out)).filter((file) => file !== 'run.yaml' && file !== 'kustomization.yaml');
  if (foreign.length > 0) throw new InputError(out, 'holds other files; render into a new directory', { found: foreign.slice(0, 3).join(', ') });
  await writeFile(join(out, 'run.yaml'), manifests.map((manifest) => stringify(manifest, { lineWidth: 0 })).join('---\n'));
  await writeFile(
    join(out, 'kustomization.yaml'),
    stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['run.yaml'] }),
  );
}
