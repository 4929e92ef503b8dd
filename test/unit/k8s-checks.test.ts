import assert from 'node:assert/strict';
import { manifestProblems } from '../../cli/k8s/checks.js';
import { CrdValidators } from '../../cli/k8s/crd-schema.js';
import { renderManifests } from '../../cli/k8s/manifests.js';
import type { RunSpec, Workload } from '../../cli/k8s/run-spec.js';

/**
 * The manifest checks find what they promise to find: each case breaks one thing in a run's rendered
 * objects and expects exactly the problem that names it, and the unbroken objects pass.
 */

// biome-ignore lint/suspicious/noExplicitAny: objects as parsed YAML, broken field by field below
type Obj = Record<string, any>;

const SPEC: RunSpec = {
  name: 'demo',
  configText: 'seed: 1\n',
  workers: 2,
  minWorkers: 1,
  gpusPerWorker: 1,
  image: 'autoprune:gpu',
  variant: 'webgpu',
  workload: 'jobs',
  tls: false,
  runVolumeSize: '1Gi',
};

/** Fresh plain objects, as they come back from YAML. */
function objects(workload: Workload = 'jobs'): Obj[] {
  return renderManifests({ ...SPEC, workload }).map((model) => JSON.parse(JSON.stringify(model.toJSON())) as Obj);
}

function find(all: Obj[], kind: string, suffix: string): Obj {
  return all.find((o) => o.kind === kind && o.metadata.name === `demo-${suffix}`)!;
}

function workerPod(all: Obj[]): Obj {
  return find(all, 'Job', 'workers').spec.template.spec;
}

const BROKEN: [string, (all: Obj[]) => void, RegExp][] = [
  [
    'a value of the wrong type',
    (all) => (workerPod(all).containers[0].ports[0].containerPort = 'seventy'),
    /Job\/demo-workers: .*containerPort must be integer/,
  ],
  [
    'an unknown field in a container',
    (all) => (workerPod(all).containers[0].imagePullSecret = 'x'),
    /Job\/demo-workers: \.spec\.template\.spec\.containers\[0\]\.imagePullSecret: unknown field/,
  ],
  [
    'an unknown field in a Job spec',
    (all) => (find(all, 'Job', 'coordinator').spec.backoffLimitPerPod = 1),
    /Job\/demo-coordinator: \.spec\.backoffLimitPerPod: unknown field/,
  ],
  [
    'a kind the manifests may not hold',
    (all) => all.push({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' } }),
    /Deployment\/x: .*not a kind these manifests may hold/,
  ],
  [
    'a Service selecting no pod',
    (all) => (find(all, 'Service', 'coordinator').spec.selector['app.kubernetes.io/component'] = 'coordinater'),
    /Service\/demo-coordinator: spec\.selector .* matches the labels of no pod template/,
  ],
  [
    'a Service port no container has',
    (all) => (find(all, 'Service', 'coordinator').spec.ports[0].targetPort = 7000),
    /Service\/demo-coordinator: port grpc: targetPort 7000 is not a container port/,
  ],
  [
    'a NetworkPolicy selecting no pod',
    (all) => (find(all, 'NetworkPolicy', 'workers').spec.podSelector.matchLabels['app.kubernetes.io/instance'] = 'other'),
    /NetworkPolicy\/demo-workers: spec\.podSelector .* matches the labels of no pod template/,
  ],
  [
    'a NetworkPolicy port no container has',
    (all) => (find(all, 'NetworkPolicy', 'coordinator').spec.ingress[0].ports[0].port = 7071),
    /NetworkPolicy\/demo-coordinator: spec\.ingress\[0\]: port 7071 is not a container port of Job\/demo-coordinator/,
  ],
  [
    'a listen address off the container ports',
    (all) => (workerPod(all).containers[0].env.find((v: Obj) => v.name === 'AUTOPRUNE_DATA_LISTEN').value = '0.0.0.0:7079'),
    /AUTOPRUNE_DATA_LISTEN listens on 7079, which is not a container port/,
  ],
  [
    'a coordinator address that is no Service port',
    (all) => (workerPod(all).containers[0].env.find((v: Obj) => v.name === 'AUTOPRUNE_COORDINATOR').value = 'demo-coordinator:7071'),
    /AUTOPRUNE_COORDINATOR's port 7071 is not a port of Service demo-coordinator/,
  ],
  [
    'a probe on a port no container has',
    (all) => (workerPod(all).containers[0].livenessProbe.grpc.port = 7070),
    /livenessProbe probes port 7070, which is not a container port/,
  ],
  [
    'a plaintext gRPC probe on the TLS port',
    (all) => {
      const container = workerPod(all).containers[0];
      container.env.push({ name: 'AUTOPRUNE_TLS_CERT', value: '/tls/tls.crt' });
      container.readinessProbe.grpc.port = 7071;
    },
    /readinessProbe is a plaintext gRPC probe on port 7071, where no plaintext grpc.health.v1 is served/,
  ],
  [
    'a grace period the kubelet cuts short',
    (all) => (find(all, 'Job', 'coordinator').spec.template.spec.terminationGracePeriodSeconds = 60),
    /Job\/demo-coordinator: pod template: container autoprune: AUTOPRUNE_GRACE_PERIOD 90s does not end before terminationGracePeriodSeconds 60/,
  ],
  [
    'a pod failure policy with restartPolicy OnFailure',
    (all) => (find(all, 'Job', 'coordinator').spec.template.spec.restartPolicy = 'OnFailure'),
    /spec\.podFailurePolicy needs spec\.template\.spec\.restartPolicy Never, found OnFailure/,
  ],
  [
    'backoffLimitPerIndex without Indexed',
    (all) => delete find(all, 'Job', 'workers').spec.completionMode,
    /spec\.backoffLimitPerIndex needs spec\.completionMode Indexed/,
  ],
  ['a pod that may run as root', (all) => (workerPod(all).securityContext.runAsNonRoot = false), /container autoprune: runAsNonRoot is not true/],
  [
    'a container that keeps its capabilities',
    (all) => (workerPod(all).containers[0].securityContext.capabilities = { add: ['SYS_ADMIN'] }),
    /capabilities\.drop does not hold ALL.*\n.*adds capability SYS_ADMIN/,
  ],
  ['no seccomp profile', (all) => delete workerPod(all).securityContext.seccompProfile, /seccompProfile is undefined, not RuntimeDefault or Localhost/],
  [
    'a hostPath volume',
    (all) => workerPod(all).volumes.push({ name: 'host', hostPath: { path: '/' } }),
    /volume host is of type hostPath, which the restricted profile forbids/,
  ],
  ['a service-account token', (all) => delete workerPod(all).automountServiceAccountToken, /automountServiceAccountToken is not false/],
  ['a writable root file system', (all) => (workerPod(all).containers[0].securityContext.readOnlyRootFilesystem = false), /readOnlyRootFilesystem is not true/],
  [
    'a config volume naming another ConfigMap',
    (all) => (find(all, 'Job', 'coordinator').spec.template.spec.volumes.find((v: Obj) => v.configMap).configMap.name = 'elsewhere'),
    /names ConfigMap elsewhere, which these manifests do not hold/,
  ],
];

function jobSet(all: Obj[]): Obj {
  return all.find((o) => o.kind === 'JobSet')!;
}

function replicatedPod(all: Obj[], index: number): Obj {
  return jobSet(all).spec.replicatedJobs[index].template.spec.template.spec;
}

function podGroup(all: Obj[]): Obj {
  return all.find((o) => o.kind === 'PodGroup')!;
}

/** Broken JobSets and PodGroups: against their CRDs' schemas, then what the schemas miss. */
const BROKEN_WORKLOADS: [string, Workload, (all: Obj[]) => void, RegExp][] = [
  ['an unknown field in a JobSet', 'jobset', (all) => (jobSet(all).spec.network.subdomains = 'x'), /JobSet\/demo: \.spec\.network\.subdomains: unknown field/],
  [
    'a JobSet field of the wrong type',
    'jobset',
    (all) => (jobSet(all).spec.replicatedJobs[1].replicas = 'one'),
    /JobSet\/demo: \.spec\.replicatedJobs\[1\]\.replicas: .*number/,
  ],
  [
    "an unknown field in a JobSet's Job template",
    'jobset',
    (all) => (jobSet(all).spec.replicatedJobs[0].template.spec.backoffLimitPerPod = 1),
    /JobSet\/demo: \.spec\.replicatedJobs\[0\]\.template\.spec\.backoffLimitPerPod: unknown field/,
  ],
  [
    "an unknown field in a custom resource's metadata",
    'volcano',
    (all) => (podGroup(all).metadata.label = 'x'),
    /PodGroup\/demo: \.metadata\.label: unknown field/,
  ],
  [
    'a failure rule on no Job failure reason',
    'jobset',
    (all) => (jobSet(all).spec.failurePolicy.rules[0].onJobFailureReasons = ['OutOfMemory']),
    /JobSet\/demo: spec\.failurePolicy\.rules\[0\]: OutOfMemory is not a Job failure reason/,
  ],
  [
    'a success policy naming no replicated job',
    'jobset',
    (all) => (jobSet(all).spec.successPolicy.targetReplicatedJobs = ['leader']),
    /spec\.successPolicy: targetReplicatedJobs names leader, no replicated job of this JobSet/,
  ],
  [
    'a coordinator address no JobSet pod has',
    'jobset',
    (all) => (replicatedPod(all, 1).containers[0].env.find((v: Obj) => v.name === 'AUTOPRUNE_COORDINATOR').value = 'demo-coordinator-0-1.demo:7070'),
    /AUTOPRUNE_COORDINATOR names demo-coordinator-0-1\.demo, neither a Service nor a JobSet pod of these manifests/,
  ],
  [
    'workers started before their coordinator',
    'jobset',
    (all) => jobSet(all).spec.replicatedJobs.reverse(),
    /AUTOPRUNE_COORDINATOR names JobSet\/demo replicated job coordinator, which JobSet\/demo starts after these pods \(startupPolicy InOrder\)/,
  ],
  [
    'a JobSet whose pod names outgrow a DNS label',
    'jobset',
    (all) => (jobSet(all).metadata.name = 'a-run-name-long-enough-to-push-pod-names-past-63'),
    /its pods' names \(a-run-name-long-enough-to-push-pod-names-past-63-coordinator-0-0-xxxxx\) would be longer than a DNS label/,
  ],
  [
    'a PodGroup larger than its members',
    'volcano',
    (all) => (podGroup(all).spec.minMember = 4),
    /PodGroup\/demo: spec\.minMember 4 is more than the 3 pods its members run at once: it would never be scheduled/,
  ],
  ['an unknown field in a PodGroup', 'volcano', (all) => (podGroup(all).spec.minMembers = 2), /PodGroup\/demo: \.spec\.minMembers: unknown field/],
  [
    'a gang member the default scheduler places',
    'volcano',
    (all) => delete workerPod(all).schedulerName,
    /Job\/demo-workers: pod template is in PodGroup demo but schedulerName is undefined, not volcano/,
  ],
  [
    'a gang member naming no PodGroup',
    'volcano',
    (all) => (find(all, 'Job', 'workers').spec.template.metadata.annotations['scheduling.k8s.io/group-name'] = 'other'),
    /Job\/demo-workers: pod template names PodGroup other, which these manifests do not hold/,
  ],
];

describe('manifest checks (cli/k8s/checks.ts)', () => {
  // JobSet's schema takes about half a second to compile: once for every case.
  const crds = new CrdValidators();

  for (const workload of ['jobs', 'jobset', 'volcano'] as const)
    it(`pass the rendered objects of a GPU run (${workload})`, () => {
      assert.deepEqual(manifestProblems(objects(workload), crds), []);
    });

  const cases = [...BROKEN.map(([what, breakIt, expected]) => [what, 'jobs', breakIt, expected] as const), ...BROKEN_WORKLOADS];
  for (const [what, workload, breakIt, expected] of cases) {
    it(`find ${what}${workload === 'jobs' ? '' : ` (${workload})`}`, () => {
      const all = objects(workload);
      breakIt(all);
      const problems = manifestProblems(all, crds);
      assert.match(problems.join('\n'), expected, `problems found: ${JSON.stringify(problems)}`);
    });
  }
});
