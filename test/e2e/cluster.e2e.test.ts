// The local control plane behaves like a real cluster where the operator needs it to:
// Deployments roll out onto kwok nodes, and deleted pods honour their grace period.
import { AppsV1Api, CoreV1Api, type V1Deployment, VersionApi } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { controlPlaneVersions } from '../cluster/versions.ts';
import { SAMPLE_IMAGE, sampleDeployment, waitFor, waitGone } from '../operator/harness.ts';
import { adminKubeConfig, kubectl, replicaSets, useNamespace } from './support.ts';

const ns = useNamespace('smoke');
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);

/** Pods with one container and no port: all the control plane needs to roll them out. */
const deployment = (name: string, replicas: number): V1Deployment =>
  sampleDeployment(name, {
    namespace: ns.name,
    replicas,
    containers: [{ name: 'web', image: SAMPLE_IMAGE }],
  });

async function rolledOut(name: string): Promise<V1Deployment | undefined> {
  const d = await apps().readNamespacedDeployment({ name, namespace: ns.name });
  const want = d.spec?.replicas ?? 1;
  const s = d.status;
  const done =
    (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
    s?.updatedReplicas === want &&
    s?.readyReplicas === want &&
    s?.availableReplicas === want &&
    (s?.replicas ?? 0) === want;
  return done ? d : undefined;
}

describe('local control plane', () => {
  test('serves the pinned Kubernetes version', async () => {
    const version = await adminKubeConfig().makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toBe(controlPlaneVersions().kubernetes);
    const cli = await kubectl(['version', '-o', 'json']);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).serverVersion.gitVersion).toBe(controlPlaneVersions().kubernetes);
  });

  test('a Deployment of 3 replicas gets 3 Ready pods on kwok nodes', async () => {
    await apps().createNamespacedDeployment({ namespace: ns.name, body: deployment('three', 3) });
    await waitFor('3 ready replicas', () => rolledOut('three'));
    const pods = await core().listNamespacedPod({ namespace: ns.name, labelSelector: 'app=three' });
    expect(pods.items).toHaveLength(3);
    for (const pod of pods.items) {
      expect(pod.spec?.nodeName).toMatch(/^kwok-node-/);
      expect(pod.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    }
  });

  test('a pod template change rolls out a new ReplicaSet to completion', async () => {
    await apps().createNamespacedDeployment({ namespace: ns.name, body: deployment('rolling', 3) });
    await waitFor('first rollout', () => rolledOut('rolling'));
    expect(await replicaSets(ns.name, 'rolling')).toHaveLength(1);

    await kubectl(['-n', ns.name, 'set', 'image', 'deployment/rolling', 'web=registry.example/web:2']).then(
      (r) => expect(r.stderr).toBe(''),
    );
    const done = await waitFor('second rollout', () => rolledOut('rolling'));
    expect(done.metadata?.generation).toBe(2);

    const after = await replicaSets(ns.name, 'rolling');
    expect(after).toHaveLength(2);
    const byImage = new Map(after.map((rs) => [rs.spec?.template?.spec?.containers[0]?.image, rs]));
    expect(byImage.get('registry.example/web:2')?.status?.readyReplicas).toBe(3);
    expect(byImage.get('registry.example/web:1')?.status?.replicas).toBe(0);
    const progressing = done.status?.conditions?.find((c) => c.type === 'Progressing');
    expect(progressing?.reason).toBe('NewReplicaSetAvailable');
  });

  test('a deleted pod stays Terminating until its grace period ends', async () => {
    const name = 'slow-stop';
    await core().createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name },
        spec: {
          terminationGracePeriodSeconds: 3,
          containers: [{ name: 'app', image: 'registry.example/app:1' }],
        },
      },
    });
    await waitFor('pod running', async () => {
      const pod = await core().readNamespacedPod({ name, namespace: ns.name });
      return pod.status?.phase === 'Running';
    });

    await core().deleteNamespacedPod({ name, namespace: ns.name });
    const terminating = await core().readNamespacedPod({ name, namespace: ns.name });
    const deadline = terminating.metadata?.deletionTimestamp;
    expect(deadline).toBeInstanceOf(Date);
    expect(terminating.metadata?.deletionGracePeriodSeconds).toBe(3);

    // Watch it until it is gone, recording the last time it was still there.
    let lastSeen = Date.now();
    await waitGone(
      'the pod',
      async () => {
        await core().readNamespacedPod({ name, namespace: ns.name });
        lastSeen = Date.now();
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    // Present for its whole grace period (the deadline has second precision: allow that).
    expect(lastSeen).toBeGreaterThanOrEqual((deadline as Date).getTime() - 1000);
  });
});
