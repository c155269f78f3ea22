import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { classify, kustomizationPatches, workloadKind } from './workloads.ts';

const container = { name: 'app', image: 'registry.example/app:1' };
const template = { spec: { containers: [container] } };

describe('workloadKind and classify', () => {
  test.each([
    ['apps/v1', 'Deployment', { template }],
    ['extensions/v1beta1', 'Deployment', { template }],
    ['apps/v1beta1', 'StatefulSet', { template }],
    ['apps/v1', 'DaemonSet', { template }],
    ['apps/v1', 'ReplicaSet', { template }],
    ['v1', 'ReplicationController', { template }],
    ['batch/v1', 'Job', { template }],
    ['argoproj.io/v1alpha1', 'Rollout', { template }],
    ['apps.kruise.io/v1alpha1', 'CloneSet', { template }],
  ])('%s %s: the pod spec at spec.template.spec', (apiVersion, kind, spec) => {
    const c = classify({ apiVersion, kind, metadata: { name: 'x' }, spec }, false);
    expect(c).toMatchObject({ kind: 'Workload', podSpec: { containers: [container] } });
  });

  test('a Pod, a PodTemplate and a CronJob: their own paths', () => {
    expect(classify({ apiVersion: 'v1', kind: 'Pod', spec: template.spec }, false)).toMatchObject({
      kind: 'Workload',
    });
    expect(classify({ apiVersion: 'v1', kind: 'PodTemplate', template }, false)).toMatchObject({
      kind: 'Workload',
    });
    const cron = classify(
      { apiVersion: 'batch/v1beta1', kind: 'CronJob', spec: { jobTemplate: { spec: { template } } } },
      false,
    );
    expect(cron).toMatchObject({ kind: 'Workload', workload: { serves: false } });
  });

  test('kinds without a pod template, and unknown apiVersions of known kinds, are Other', () => {
    expect(classify({ apiVersion: 'v1', kind: 'Service', spec: {} }, false)).toEqual({ kind: 'Other' });
    // Knative's Service has a spec.template too, but it is not a pod template gsp reads.
    expect(
      classify({ apiVersion: 'serving.knative.dev/v1', kind: 'Service', spec: { template } }, false),
    ).toEqual({ kind: 'Other' });
    expect(workloadKind({ apiVersion: 'example.com/v1', kind: 'Deployment' })).toBeUndefined();
  });

  test('a patch fragment (no containers, or a container without an image) is Partial, not judged whole', () => {
    const replicasOnly = { apiVersion: 'apps/v1', kind: 'Deployment', spec: { replicas: 3 } };
    expect(classify(replicasOnly, false)).toMatchObject({
      kind: 'Partial',
      reason: 'no spec.template.spec.containers: part of an object (a patch?)',
    });
    const resources = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      spec: { template: { spec: { containers: [{ name: 'app', resources: { limits: { cpu: '1' } } }] } } },
    };
    expect(classify(resources, false)).toMatchObject({
      kind: 'Partial',
      reason: expect.stringContaining('app has no image'),
    });
    // Named by a kustomization: Partial whatever it holds.
    expect(classify({ apiVersion: 'apps/v1', kind: 'Deployment', spec: { template } }, true)).toMatchObject({
      kind: 'Partial',
      reason: 'a patch named by a kustomization',
    });
  });

  test('a malformed pod template names its field, partial or whole', () => {
    const mapping = {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      spec: { template: { spec: { containers: { app: container } } } },
    };
    expect(classify(mapping, false)).toMatchObject({
      kind: 'Malformed',
      field: 'spec.template.spec.containers',
    });
    const cron = {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      spec: {
        jobTemplate: {
          spec: { template: { spec: { containers: [{ ...container, ports: { http: 80 } }] } } },
        },
      },
    };
    expect(classify(cron, true)).toMatchObject({
      kind: 'Malformed',
      field: 'spec.jobTemplate.spec.template.spec.containers[0].ports',
    });
    expect(classify({ apiVersion: 'apps/v1', kind: 'Deployment', spec: 'x' }, false)).toMatchObject({
      kind: 'Malformed',
      field: 'spec',
    });
  });

  test('an Argo Rollout with workloadRef has no template of its own', () => {
    const rollout = {
      apiVersion: 'argoproj.io/v1alpha1',
      kind: 'Rollout',
      spec: { workloadRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'rollout-ref-deployment' } },
    };
    expect(classify(rollout, false)).toMatchObject({
      kind: 'NoTemplate',
      reason: expect.stringContaining('Deployment rollout-ref-deployment is audited where it is defined'),
    });
  });
});

describe('kustomizationPatches', () => {
  test('every form that names a patch file; inline patches are not files', () => {
    const kustomization = parse(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [deployment.yaml]
patchesStrategicMerge:
  - grace.yaml
  - |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: { name: inline }
patches:
  - path: patches/replicas.yaml
    target: { kind: Deployment }
  - patch: |-
      - op: add
        path: /spec/replicas
        value: 2
patchesJson6902:
  - target: { group: apps, version: v1, kind: Deployment, name: web }
    path: ops.json
`);
    expect(kustomizationPatches(kustomization)).toEqual(['grace.yaml', 'patches/replicas.yaml', 'ops.json']);
    expect(kustomizationPatches('not a mapping')).toEqual([]);
  });
});
