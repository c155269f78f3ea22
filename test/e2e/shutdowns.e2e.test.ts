// The closed loop on the real node: pods of a governed Deployment are deleted, and the operator
// tells a clean shutdown from a container SIGKILLed at the end of its grace period (issue 12).
import {
  AppsV1Api,
  CoreV1Api,
  type CoreV1Event,
  type V1Container,
  type V1Deployment,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { OperatorProcess } from '../operator/operator-process.ts';
import { signalProbeContainer } from './real-pods.ts';
import {
  adminKubeConfig,
  clusterInfo,
  startOperatorProcess,
  useNamespace,
  usePolicies,
  waitFor,
} from './support.ts';

const ns = useNamespace('shutdowns');
const policies = usePolicies();
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
let operator: OperatorProcess;

function realNodeDeployment(name: string, container: V1Container, grace: number): V1Deployment {
  return {
    metadata: { name, namespace: ns.name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          ...clusterInfo().realNode.placement,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: grace,
          containers: [container],
        },
      },
    },
  };
}

async function readyPod(app: string): Promise<string> {
  return waitFor(
    `a Ready pod of ${app}`,
    async () => {
      const pods = await core().listNamespacedPod({ namespace: ns.name, labelSelector: `app=${app}` });
      const ready = pods.items.find(
        (p) =>
          !p.metadata?.deletionTimestamp &&
          p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      return ready?.metadata?.name;
    },
    { timeoutMs: 60_000 },
  );
}

async function eventsOf(name: string): Promise<CoreV1Event[]> {
  const list = await core().listNamespacedEvent({
    namespace: ns.name,
    fieldSelector: `involvedObject.name=${name}`,
  });
  return list.items.filter((e) => e.reason === 'ShutdownKilled');
}

beforeAll(async () => {
  operator = await startOperatorProcess('operator-shutdowns.log', ['--log-level', 'debug']);
  // Audit: the operator changes nothing, it only watches how the pods end.
  await policies.apply('shutdowns', ns.name, { mode: 'Audit', observedLatency: { source: 'None' } });
});

afterAll(async () => {
  await operator?.stop();
});

describe('shutdowns observed', () => {
  test('a container that ignores SIGTERM is killed at the deadline and reported; one that exits is counted clean', async () => {
    await apps().createNamespacedDeployment({
      namespace: ns.name,
      body: realNodeDeployment('stubborn', signalProbeContainer({ ignoreSigterm: true }), 3),
    });
    await apps().createNamespacedDeployment({
      namespace: ns.name,
      body: realNodeDeployment('polite', signalProbeContainer({ exitAfterMs: 500 }), 3),
    });
    const stubborn = await readyPod('stubborn');
    const polite = await readyPod('polite');
    const sample = (outcome: string) =>
      operator.sample('gracefulshutdown_shutdowns_total', { policy: 'shutdowns', outcome });
    const before = { killed: await sample('Killed'), clean: await sample('Clean') };

    await core().deleteNamespacedPod({ namespace: ns.name, name: stubborn });
    await core().deleteNamespacedPod({ namespace: ns.name, name: polite });
    const counts = await waitFor(
      'both shutdowns counted',
      async () => {
        const now = {
          killed: (await sample('Killed')) - before.killed,
          clean: (await sample('Clean')) - before.clean,
        };
        return now.killed >= 1 && now.clean >= 1 ? now : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(counts).toEqual({ killed: 1, clean: 1 });
    const event = await waitFor(
      'a ShutdownKilled Event on stubborn',
      async () => (await eventsOf('stubborn'))[0],
    );
    expect(event.type).toBe('Warning');
    expect(event.involvedObject.kind).toBe('Deployment');
    expect(event.message).toContain(
      `pod ${stubborn}: container app killed at the end of the 3 s grace period (exit code 137)`,
    );
    console.log(`[shutdowns] killed 1, clean 1; Event: ${event.message}`);
    // Negative control: the pod that exited on SIGTERM gets no such Event.
    expect(await eventsOf('polite')).toEqual([]);
  });
});
