// The closed loop on the real node: pods of a governed Deployment are deleted, the operator tells
// a clean shutdown from a container SIGKILLed at the end of its grace period, and a kill raises
// the policy's recommendation (issue 12): in Audit it is reported (ShutdownKilled), in Enforce
// applied, and the next shutdown is clean.
import {
  AppsV1Api,
  CoreV1Api,
  type CoreV1Event,
  type V1Container,
  type V1Deployment,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type OperatorProcess,
  readPolicyStatus,
  realNodePodSpec,
  sampleDeployment,
  waitFor,
} from '../operator/harness.ts';
import { signalProbeContainer } from './real-pods.ts';
import { adminKubeConfig, kubectl, startOperatorProcess, useNamespace, usePolicies } from './support.ts';

const ns = useNamespace('shutdowns');
const enforced = useNamespace('shutdowns-enforce');
/** A recommendation of 3 s for these apps: no preStop, no probe, 1 s overhead, at least 3 s. */
const tight = {
  observedLatency: { source: 'None' },
  readinessProbe: { inject: 'Never' },
  preStop: { inject: 'Never', seconds: 0 },
  terminationGracePeriod: { minSeconds: 3, overheadSeconds: 1 },
};
const policies = usePolicies();
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
let operator: OperatorProcess;

/** One replica of this container on the real node, with this grace period. */
function realNodeDeployment(
  name: string,
  container: V1Container,
  grace: number,
  namespace = ns.name,
): V1Deployment {
  return sampleDeployment(name, {
    namespace,
    containers: [container],
    podSpec: { ...realNodePodSpec(), terminationGracePeriodSeconds: grace },
  });
}

async function readyPod(app: string, namespace = ns.name, grace?: number): Promise<string> {
  return waitFor(
    `a Ready pod of ${app}`,
    async () => {
      const pods = await core().listNamespacedPod({ namespace, labelSelector: `app=${app}` });
      const ready = pods.items.find(
        (p) =>
          !p.metadata?.deletionTimestamp &&
          (grace === undefined || p.spec?.terminationGracePeriodSeconds === grace) &&
          p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      return ready?.metadata?.name;
    },
    { timeoutMs: 60_000 },
  );
}

async function eventsOf(name: string, namespace = ns.name): Promise<CoreV1Event[]> {
  const list = await core().listNamespacedEvent({
    namespace,
    fieldSelector: `involvedObject.name=${name}`,
  });
  return list.items.filter((e) => e.reason === 'ShutdownKilled');
}

beforeAll(async () => {
  operator = await startOperatorProcess('operator-shutdowns.log', ['--log-level', 'debug']);
  // Audit: the operator changes nothing, it only watches how the pods end.
  await policies.apply('shutdowns', ns.name, { mode: 'Audit', ...tight });
  await policies.apply('shutdowns-enforce', enforced.name, { mode: 'Enforce', ...tight });
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
    // Audit: the recommendation rises above the grace period the pod was killed at.
    const status = await waitFor('stubborn reported ShutdownKilled', async () => {
      const s = await readPolicyStatus(adminKubeConfig(), 'shutdowns');
      const entry = s.workloads?.find((w) => w.name === 'stubborn');
      return entry?.reason === 'ShutdownKilled' ? entry : undefined;
    });
    expect(status).toMatchObject({
      verdict: 'NonCompliant',
      recommended: { terminationGracePeriodSeconds: 5 },
    });
    expect((await readPolicyStatus(adminKubeConfig(), 'shutdowns')).counts?.killed).toBe(1);
    console.log(`[shutdowns] status: ${status.reason}: ${status.message}`);
    const politeStatus = (await readPolicyStatus(adminKubeConfig(), 'shutdowns')).workloads?.find(
      (w) => w.name === 'polite',
    );
    expect(politeStatus?.verdict).toBe('Compliant');
  });

  test('Enforce: an app that needs 4 s is killed at 3 s; the operator raises the grace to 5 s and the next rollout is clean', async () => {
    const namespace = enforced.name;
    await apps().createNamespacedDeployment({
      namespace,
      body: realNodeDeployment('slow', signalProbeContainer({ exitAfterMs: 4_000 }), 3, namespace),
    });
    const first = await readyPod('slow', namespace, 3);
    const sample = (outcome: string) =>
      operator.sample('gracefulshutdown_shutdowns_total', { policy: 'shutdowns-enforce', outcome });
    await core().deleteNamespacedPod({ namespace, name: first });
    await waitFor('the kill counted', async () => (await sample('Killed')) >= 1, { timeoutMs: 30_000 });
    await waitFor('a ShutdownKilled Event on slow', async () => (await eventsOf('slow', namespace))[0]);
    const raised = await waitFor(
      'the grace period raised by the operator',
      async () => {
        const d = await apps().readNamespacedDeployment({ namespace, name: 'slow' });
        return d.spec?.template.spec?.terminationGracePeriodSeconds === 5 ? d : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(raised.metadata?.annotations?.['gracefulshutdown.dev/applied']).toContain('shutdowns-enforce');
    await readyPod('slow', namespace, 5);
    // The rollout to 5 s may kill the 3 s replacement too; from here on nothing is killed.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const before = { killed: await sample('Killed'), clean: await sample('Clean') };
    // The next rollout: the 5 s pod is replaced, and needs its 4 s.
    const restart = await kubectl(['rollout', 'restart', 'deployment/slow', '-n', namespace]);
    expect(restart.code, restart.stderr).toBe(0);
    const after = await waitFor(
      'the next shutdown counted',
      async () => {
        const now = {
          killed: (await sample('Killed')) - before.killed,
          clean: (await sample('Clean')) - before.clean,
        };
        return now.killed + now.clean >= 1 ? now : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(after).toEqual({ killed: 0, clean: 1 });
    console.log(`[shutdowns] killed at 3 s, raised to 5 s, the next rollout's shutdown clean`);
  });
});
