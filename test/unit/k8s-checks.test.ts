import assert from 'node:assert/strict';
import { manifestProblems } from '../../cli/k8s/checks.js';
import { type RunSpec, renderManifests } from '../../cli/k8s/manifests.js';

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
  tls: false,
  runVolumeSize: '1Gi',
};

/** Fresh plain objects, as they come back from YAML. */
function objects(): Obj[] {
  return renderManifests(SPEC).map((model) => JSON.parse(JSON.stringify(model.toJSON())) as Obj);
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

describe('manifest checks (cli/k8s/checks.ts)', () => {
  it('pass the rendered objects of a GPU run', () => {
    assert.deepEqual(manifestProblems(objects()), []);
  });

  for (const [what, breakIt, expected] of BROKEN) {
    it(`find ${what}`, () => {
      const all = objects();
      breakIt(all);
      const problems = manifestProblems(all);
      assert.match(problems.join('\n'), expected, `problems found: ${JSON.stringify(problems)}`);
    });
  }
});
