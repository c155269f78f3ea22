// Records the watch events of one real Deployment rollout (kube-controller-manager's Deployment
// controller, kwok pods ready after a second) into operator/src/controllers/testdata/, where the
// Deployment controller's change filter is tested against them. Run it again when the control
// plane's version changes:
//   node test/cluster/record-rollout.ts
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AppsV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  Watch,
} from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../../operator/src/api/annotations.ts';
import { sampleDeployment } from '../operator/fixtures.ts';
import { repoRoot } from '../operator/install.ts';
import { LocalCluster } from './cluster.ts';
import { waitFor } from './wait.ts';

const NAMESPACE = 'recorded';
const NAME = 'web';

/** What the operator's cache and change filter read of a Deployment event. */
function trimmed(type: string, d: V1Deployment) {
  return {
    type,
    metadata: {
      name: d.metadata?.name,
      namespace: d.metadata?.namespace,
      uid: 'recorded-uid',
      generation: d.metadata?.generation,
      resourceVersion: d.metadata?.resourceVersion,
      ...(d.metadata?.annotations ? { annotations: d.metadata.annotations } : {}),
      ...(d.metadata?.managedFields ? { managedFields: d.metadata.managedFields } : {}),
    },
    spec: { replicas: d.spec?.replicas, paused: d.spec?.paused, template: d.spec?.template },
    status: d.status,
  };
}

const cluster = await LocalCluster.start({ nodes: 1 });
const events: ReturnType<typeof trimmed>[] = [];
/** The write's answer, as the operator's writer gets it. */
let written: V1Deployment | undefined;
try {
  const kc = cluster.adminKubeConfig();
  const apps = kc.makeApiClient(AppsV1Api);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NAMESPACE } } });
  const body = sampleDeployment(NAME, {
    replicas: 2,
    podAnnotations: { 'pod-ready.stage.kwok.x-k8s.io/delay': '1s' },
  });
  await apps.createNamespacedDeployment({ namespace: NAMESPACE, body });
  const settled = async () => {
    const d = await apps.readNamespacedDeployment({ namespace: NAMESPACE, name: NAME });
    const s = d.status ?? {};
    return (
      (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
      s.updatedReplicas === 2 &&
      s.readyReplicas === 2 &&
      s.availableReplicas === 2 &&
      s.replicas === 2
    );
  };
  await waitFor('the Deployment to settle', settled, { timeoutMs: 120_000, intervalMs: 250 });
  const watch = await new Watch(kc).watch(
    `/apis/apps/v1/namespaces/${NAMESPACE}/deployments`,
    {
      resourceVersion: (await apps.readNamespacedDeployment({ namespace: NAMESPACE, name: NAME })).metadata
        ?.resourceVersion,
    },
    (type, object: V1Deployment) => events.push(trimmed(type, object)),
    () => {},
  );
  // The operator's kind of write: server-side apply of a preStop hook and the grace period,
  // with an annotation (a template change: one rollout).
  written = await apps.patchNamespacedDeployment(
    {
      namespace: NAMESPACE,
      name: NAME,
      // The operator's field manager: its cache keeps its own managedFields entry whole.
      fieldManager: FIELD_MANAGER,
      force: true,
      body: {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: NAME, namespace: NAMESPACE, annotations: { 'gracefulshutdown.dev/applied': '{}' } },
        spec: {
          template: {
            spec: {
              terminationGracePeriodSeconds: 40,
              containers: [{ name: 'web', lifecycle: { preStop: { sleep: { seconds: 5 } } } }],
            },
          },
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
  );
  await waitFor('the rollout to finish', settled, { timeoutMs: 120_000, intervalMs: 250 });
  // Events still arriving (the old ReplicaSet's pods terminating do not change the Deployment).
  await new Promise((resolve) => setTimeout(resolve, 3000));
  watch.abort();
} finally {
  await cluster.stop();
}
const out = join(repoRoot, 'operator', 'src', 'controllers', 'testdata', 'rollout-events.json');
writeFileSync(
  out,
  `${JSON.stringify({ written: written && trimmed('ANSWER', written), events }, null, 1)}\n`,
);
// In the repository's format (biome), so that `npm run lint` passes on it as written.
execFileSync(join(repoRoot, 'node_modules', '.bin', 'biome'), ['format', '--write', out], {
  stdio: 'ignore',
});
process.stdout.write(`${events.length} events written to ${out}\n`);
