import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { manifestProblems } from '../../cli/k8s/checks.js';
import { renderRun } from '../../cli/k8s.js';
import { InputError } from '../../shared/errors.js';
import { runCli } from '../helpers/cli.js';
import { kubectlMissing, kustomize } from '../helpers/kustomize.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * `autoprune k8s render` as a real process, and deploy/ as committed: every manifest built with
 * `kubectl kustomize`, then validated against the Kubernetes schemas (kubernetes-models), for unknown
 * fields, and by the project's checks (cli/k8s/checks.ts). The committed base must be exactly what render
 * writes, and each committed overlay must build to the objects render makes for that overlay.
 */

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, each field checked by the assertion that reads it
type Obj = Record<string, any>;

const MNIST = 'examples/quickstart-mnist.yaml';
/** The arguments deploy/base was rendered with, and those each committed overlay stands for. */
const BASE_ARGS = [MNIST, '--workers', '2', '--name', 'mnist-demo'];
const OVERLAY_ARGS: Record<string, string[]> = {
  cpu: ['--gpus-per-worker', '0', '--image', 'autoprune:cpu'],
  webgpu: ['--gpus-per-worker', '1', '--image', 'autoprune:gpu', '--overlay', 'webgpu'],
  'tf-gpu': ['--gpus-per-worker', '1', '--image', 'autoprune:tf-gpu', '--overlay', 'tf-gpu'],
  tls: ['--gpus-per-worker', '0', '--image', 'autoprune:cpu', '--overlay', 'tls'],
  volcano: ['--gpus-per-worker', '0', '--image', 'autoprune:cpu', '--overlay', 'volcano'],
};
/** The arguments deploy/jobset was rendered with (after BASE_ARGS). */
const JOBSET_ARGS = [...OVERLAY_ARGS.cpu!, '--overlay', 'jobset'];

function byName(objects: readonly Obj[], kind: string, name: string): Obj {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind}/${name} is missing`);
  return found;
}

function containerOf(job: Obj): Obj {
  return job.spec.template.spec.containers[0];
}

describe('autoprune k8s render and deploy/', () => {
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'autoprune-k8s-'));
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  let renders = 0;
  async function render(...args: string[]): Promise<string> {
    return (await renderRun([...args, '--out', join(scratch, `render-${++renders}`)])).out;
  }

  function renderedObjects(out: string): Obj[] {
    return parseAllDocuments(readFileSync(join(out, 'run.yaml'), 'utf8')).map((document) => document.toJS() as Obj);
  }

  describe('rendered manifests', () => {
    it('cpu: the coordinator Job, its Service, the Indexed worker Job, the claim and the policies, all checks passing', async () => {
      const objects = renderedObjects(await render(...BASE_ARGS, ...OVERLAY_ARGS.cpu!, '--namespace', 'prune', '--storage-class', 'fast'));
      assert.deepEqual(manifestProblems(objects), []);
      assert.deepEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
        'ConfigMap/mnist-demo-config',
        'Job/mnist-demo-coordinator',
        'Job/mnist-demo-workers',
        'NetworkPolicy/mnist-demo-coordinator',
        'NetworkPolicy/mnist-demo-workers',
        'PersistentVolumeClaim/mnist-demo-runs',
        'Service/mnist-demo-coordinator',
      ]);
      for (const object of objects) assert.equal(object.metadata.namespace, 'prune');
      assert.equal(byName(objects, 'ConfigMap', 'mnist-demo-config').data['config.yaml'], readFileSync(MNIST, 'utf8'));
      assert.equal(byName(objects, 'PersistentVolumeClaim', 'mnist-demo-runs').spec.storageClassName, 'fast');

      const coordinator = byName(objects, 'Job', 'mnist-demo-coordinator');
      assert.equal(coordinator.spec.completions, 1);
      assert.equal(coordinator.spec.podReplacementPolicy, 'Failed');
      assert.equal(coordinator.spec.template.spec.restartPolicy, 'Never');
      assert.deepEqual(
        coordinator.spec.podFailurePolicy.rules.map((rule: Obj) => [rule.action, rule.onExitCodes?.values ?? rule.onPodConditions[0].type]),
        [
          ['FailJob', [2]],
          ['Ignore', 'DisruptionTarget'],
        ],
      );
      assert.deepEqual(containerOf(coordinator).args, [
        'coordinator',
        '/etc/autoprune/config.yaml',
        '--resume-or-start',
        '--out',
        '/runs/mnist-demo',
        '--workers',
        '2',
        '--run-id',
        'mnist-demo',
      ]);
      // Native gRPC probes on the plaintext health-only port, which both pods serve.
      assert.deepEqual(containerOf(coordinator).readinessProbe.grpc, { port: 7073 });
      assert.equal(coordinator.spec.template.spec.terminationGracePeriodSeconds, 120);

      const workers = byName(objects, 'Job', 'mnist-demo-workers');
      assert.equal(workers.spec.completionMode, 'Indexed');
      assert.equal(workers.spec.completions, 2);
      assert.equal(workers.spec.backoffLimitPerIndex, 6);
      const env = Object.fromEntries(containerOf(workers).env.map((v: Obj) => [v.name, v.value ?? v.valueFrom.fieldRef.fieldPath]));
      assert.equal(env.AUTOPRUNE_ADVERTISE, 'status.podIP');
      assert.equal(env.AUTOPRUNE_COORDINATOR, 'mnist-demo-coordinator:7070');
      assert.equal(env.AUTOPRUNE_HEALTH_LISTEN, '0.0.0.0:7073');
      // The program's final checkpoint ends before the kubelet's SIGKILL.
      assert.equal(env.AUTOPRUNE_GRACE_PERIOD, '90s');
      // A worker waits out a coordinator's reschedule (minutes) before it gives up.
      assert.deepEqual(containerOf(workers).args, ['worker', '--connect-timeout', '1200']);
      assert.equal(containerOf(workers).resources.limits['nvidia.com/gpu'], undefined);
      assert.equal(workers.spec.template.spec.tolerations, undefined);
      // Only the coordinator mounts the run directory: one writer.
      assert.deepEqual(
        workers.spec.template.spec.volumes.map((v: Obj) => v.name),
        ['tmp', 'join-token'],
      );
    });

    it('webgpu with a dataset claim and TLS: GPUs, toleration, read-only dataset, TLS files and gRPC probes on the plaintext health port', async () => {
      const config = join(scratch, 'cifar.yaml');
      writeFileSync(config, readFileSync('examples/vgg-cifar10.yaml', 'utf8').replace(/dir: .*/, 'dir: /data/cifar-10-batches-bin'));
      const out = await render(
        config,
        '--workers',
        '4',
        '--gpus-per-worker',
        '2',
        '--image',
        'registry.example/autoprune:gpu',
        '--overlay',
        'webgpu',
        '--overlay',
        'tls',
        '--dataset-claim',
        'cifar10',
      );
      const objects = renderedObjects(out);
      assert.deepEqual(manifestProblems(objects), []);
      const workers = byName(objects, 'Job', 'cifar-workers');
      const container = containerOf(workers);
      assert.equal(container.resources.limits['nvidia.com/gpu'], '2');
      assert.deepEqual(workers.spec.template.spec.tolerations, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
      assert.deepEqual(
        container.volumeMounts.find((m: Obj) => m.name === 'dataset'),
        { name: 'dataset', mountPath: '/data/cifar-10-batches-bin', readOnly: true },
      );
      assert.ok(container.env.some((v: Obj) => v.name === 'NVIDIA_DRIVER_CAPABILITIES' && v.value === 'compute,utility,graphics'));
      assert.ok(container.env.some((v: Obj) => v.name === 'AUTOPRUNE_TLS_CA' && v.value === '/var/run/autoprune/tls/ca.crt'));
      assert.deepEqual(container.livenessProbe.grpc, { port: 7073 });
      assert.ok(container.env.some((v: Obj) => v.name === 'AUTOPRUNE_HEALTH_LISTEN' && v.value === '0.0.0.0:7073'));
      // The run goes on down to minWorkers (1 by default): three of the four indexes may fail for good.
      assert.equal(workers.spec.maxFailedIndexes, 3);
      if (!kubectlMissing()) assert.deepEqual(manifestProblems(await kustomize(out)), []);
    });

    it('as a command: writes run.yaml and kustomization.yaml, and says which Secrets to create', async () => {
      const out = join(scratch, 'command');
      const result = await runCli(['k8s', 'render', ...BASE_ARGS, ...OVERLAY_ARGS.tls!, '--out', out]);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, /kubectl create secret generic mnist-demo-join-token/);
      assert.match(result.stdout, /kubectl create secret generic mnist-demo-tls --from-file=tls.crt/);
      assert.deepEqual(readdirSync(out).sort(), ['kustomization.yaml', 'run.yaml']);
      const refused = await runCli(['k8s', 'render', MNIST, '--workers', 'two', '--gpus-per-worker', '0', '--image', 'i', '--out', join(scratch, 'refused')]);
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, /--workers: is not a whole number of at least 1; found "two"/);
    });

    it("jobset: one JobSet, the coordinator first at a stable DNS name, the run's end ending the set", async () => {
      const objects = renderedObjects(await render(...BASE_ARGS, ...JOBSET_ARGS));
      assert.deepEqual(manifestProblems(objects), []);
      // No Service of its own: the JobSet's headless Service gives the coordinator's pod its name.
      assert.deepEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
        'ConfigMap/mnist-demo-config',
        'JobSet/mnist-demo',
        'NetworkPolicy/mnist-demo-coordinator',
        'NetworkPolicy/mnist-demo-workers',
        'PersistentVolumeClaim/mnist-demo-runs',
      ]);
      const { spec } = byName(objects, 'JobSet', 'mnist-demo');
      assert.deepEqual(
        spec.replicatedJobs.map((r: Obj) => [r.name, r.replicas]),
        [
          ['coordinator', 1],
          ['workers', 1],
        ],
      );
      assert.deepEqual(spec.startupPolicy, { startupPolicyOrder: 'InOrder' });
      assert.deepEqual(spec.successPolicy, { operator: 'All', targetReplicatedJobs: ['coordinator'] });
      // The Jobs replace lost pods themselves: the set is never recreated while the run goes on.
      assert.equal(spec.failurePolicy.maxRestarts, 0);
      const [coordinator, workers] = spec.replicatedJobs.map((r: Obj) => r.template.spec);
      assert.equal(coordinator.completionMode, 'Indexed');
      assert.equal(workers.backoffLimitPerIndex, 6);
      const env = Object.fromEntries(workers.template.spec.containers[0].env.map((v: Obj) => [v.name, v.value]));
      assert.equal(env.AUTOPRUNE_COORDINATOR, 'mnist-demo-coordinator-0-0.mnist-demo:7070');
    });

    it('volcano with GPUs: the coordinator and minWorkers workers as one PodGroup with their requests', async () => {
      const objects = renderedObjects(
        await render(MNIST, '--workers', '4', '--gpus-per-worker', '2', '--image', 'i', '--overlay', 'volcano', '--name', 'gang'),
      );
      assert.deepEqual(manifestProblems(objects), []);
      const group = byName(objects, 'PodGroup', 'gang');
      // minWorkers is 1 in the MNIST example: the coordinator and one worker start the run.
      assert.deepEqual(group.spec, { minMember: 2, minResources: { cpu: '4500m', memory: '17Gi', 'nvidia.com/gpu': '2' } });
      for (const job of ['gang-coordinator', 'gang-workers']) {
        const template = byName(objects, 'Job', job).spec.template;
        assert.equal(template.metadata.annotations['scheduling.k8s.io/group-name'], 'gang');
        assert.equal(template.spec.schedulerName, 'volcano');
      }
    });

    it('refuses bad input with an InputError naming the flag or key', async () => {
      const cases: [string[], RegExp][] = [
        [[MNIST, '--workers', '0', '--gpus-per-worker', '0', '--image', 'i'], /--workers: is not a whole number of at least 1/],
        [[MNIST, '--workers', '2', '--gpus-per-worker', '1', '--image', 'i', '--overlay', 'cpu'], /--gpus-per-worker: must be 0 with the cpu overlay/],
        [
          [MNIST, '--workers', '2', '--gpus-per-worker', '0', '--image', 'i', '--overlay', 'webgpu'],
          /--gpus-per-worker: must be at least 1 with the webgpu overlay/,
        ],
        [[MNIST, '--workers', '2', '--gpus-per-worker', '0', '--image', 'i', '--overlay', 'helm'], /--overlay: is not an overlay/],
        [
          [MNIST, '--workers', '2', '--gpus-per-worker', '0', '--image', 'i', '--overlay', 'jobset', '--overlay', 'volcano'],
          /--overlay: names both jobset and volcano/,
        ],
        [
          [
            MNIST,
            '--workers',
            '1000000',
            '--gpus-per-worker',
            '0',
            '--image',
            'i',
            '--overlay',
            'jobset',
            '--name',
            'a-run-name-of-forty-one-characters-for-it',
          ],
          /--name: is too long for a JobSet of 1000000 workers, whose pod names must stay DNS labels; expected at most 40 characters/,
        ],
        [
          [MNIST, '--workers', '2', '--gpus-per-worker', '1', '--image', 'i', '--overlay', 'webgpu', '--overlay', 'tf-gpu'],
          /--overlay: names more than one image variant/,
        ],
        [[MNIST, '--workers', '2', '--gpus-per-worker', '0'], /--image: is required/],
        [[MNIST, '--workers', '2', '--gpus-per-worker', '0', '--image', 'i', '--name', 'Has_Caps'], /--name: is not a run name/],
        [[MNIST, '--workers', '2', '--gpus-per-worker', '0', '--image', 'i', '--run-volume-size', 'lots'], /--run-volume-size: is not a Kubernetes quantity/],
        [['examples/vgg-cifar10.yaml', '--workers', '2', '--gpus-per-worker', '1', '--image', 'i'], /--dataset-claim: is required/],
        [
          ['examples/vgg-cifar10.yaml', '--workers', '2', '--gpus-per-worker', '1', '--image', 'i', '--dataset-claim', 'c'],
          /data\.dir: must be an absolute path/,
        ],
        [['no-such.yaml', '--workers', '2', '--gpus-per-worker', '0', '--image', 'i'], /no-such\.yaml: cannot read the config file/],
      ];
      for (const [args, message] of cases)
        await assert.rejects(
          renderRun([...args, '--out', join(scratch, 'refused')]),
          (error: Error) => error instanceof InputError && message.test(error.message),
        );
      const occupied = join(scratch, 'occupied');
      mkdirSync(occupied);
      writeFileSync(join(occupied, 'notes.txt'), 'mine');
      await assert.rejects(renderRun([...BASE_ARGS, ...OVERLAY_ARGS.cpu!, '--out', occupied]), /occupied: holds other files; render into a new directory/);
    });
  });

  describe('deploy/ as committed', () => {
    before(function () {
      const missing = kubectlMissing();
      if (missing) skipBecause(this, missing);
    });

    for (const [directory, args] of [
      ['deploy/base', OVERLAY_ARGS.cpu!],
      ['deploy/jobset', JOBSET_ARGS],
    ] as const)
      it(`${directory} is exactly what render writes for the MNIST demo, and builds passing every check`, async () => {
        const out = await render(...BASE_ARGS, ...args);
        for (const file of ['run.yaml', 'kustomization.yaml']) {
          assert.equal(readFileSync(join(directory, file), 'utf8'), readFileSync(join(out, file), 'utf8'), `${directory}/${file} differs from a fresh render`);
        }
        assert.deepEqual(manifestProblems(await kustomize(directory)), []);
      });

    for (const overlay of readdirSync('deploy/overlays')) {
      it(`overlays/${overlay} builds, passes every check and holds the objects render makes for it`, async () => {
        const built = await kustomize(join('deploy/overlays', overlay));
        assert.deepEqual(manifestProblems(built), []);
        const args = OVERLAY_ARGS[overlay];
        assert.ok(args, `no render arguments are known for deploy/overlays/${overlay}: add them to OVERLAY_ARGS`);
        assert.deepEqual(built, await kustomize(await render(...BASE_ARGS, ...args)));
      });
    }
  });
});
