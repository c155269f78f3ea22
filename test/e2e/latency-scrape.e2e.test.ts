// The same as latency.e2e.test.ts with `source: Scrape` and no Prometheus given to the operator:
// it scrapes the real pods' /metrics itself (pod IPs on the real node's bridge), keeps
// per-pod snapshots, and plans with the same quantile. A Deployment that serves nothing has too
// few samples: the status says so and the policy's fallback applies.
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { serviceAccountKubeconfig } from '../cluster/cluster.ts';
import {
  createPolicy,
  deletePolicy,
  installOperatorPrerequisites,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
} from '../operator/install.ts';
import { OperatorProcess } from '../operator/operator-process.ts';
import { demoDeployment, graceOf, LatencyLoad, policyStatus } from './latency-support.ts';
import { adminKubeConfig, clusterInfo, useNamespace, waitFor } from './support.ts';

const ns = useNamespace('scrape');
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
const _custom = () => adminKubeConfig().makeApiClient(CustomObjectsApi);

const POLICY = 'latency-scrape-e2e';
const PRESTOP = 2;
const OVERHEAD = 2;
const FACTOR = 1.5;
const spec = {
  mode: 'Enforce',
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns.name } },
  preStop: { seconds: PRESTOP },
  terminationGracePeriod: { minSeconds: 1, maxSeconds: 60, overheadSeconds: OVERHEAD, inject: 'Override' },
  rollout: { maxConcurrent: 5 },
  observedLatency: {
    source: 'Scrape',
    scrape: { port: 'http', path: '/metrics' },
    percentile: 0.99,
    window: '1m',
    stabilizationWindow: '30s',
    minSamples: 20,
    safetyFactor: FACTOR,
  },
};
const expectedGrace = (p99: number) => PRESTOP + Math.ceil(p99 * FACTOR - 1e-9) + OVERHEAD;

let operator: OperatorProcess;
let load: LatencyLoad | undefined;

beforeAll(async () => {
  const info = clusterInfo();
  await installOperatorPrerequisites(info.kubectl, info.kubeconfig);
  const dir = join(info.workDir, 'logs');
  operator = await OperatorProcess.start({
    kubeconfig: await serviceAccountKubeconfig(
      adminKubeConfig(),
      OPERATOR_NAMESPACE,
      OPERATOR_SERVICE_ACCOUNT,
      dir,
    ),
    logPath: join(dir, 'operator-scrape.log'),
    // No --prometheus-url: this operator knows of no Prometheus.
    args: [
      '--latency-refresh-ms',
      '2000',
      '--latency-timeout-ms',
      '1000',
      '--resync-ms',
      '2000',
      '--rollout-check-ms',
      '500',
    ],
  });
  await operator.waitReady();
  for (const name of ['api', 'idle'])
    await apps().createNamespacedDeployment({ namespace: ns.name, body: demoDeployment(ns.name, name) });
  await core().createNamespacedService({
    namespace: ns.name,
    body: {
      metadata: { name: 'api' },
      spec: { selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080 }] },
    },
  });
  const svc = await core().readNamespacedService({ name: 'api', namespace: ns.name });
  const url = `http://${svc.spec?.clusterIP}`;
  await waitFor('the Service to answer', () => fetch(`${url}/work?ms=1`).then((r) => r.ok), {
    timeoutMs: 120_000,
  });
  load = new LatencyLoad(url, 8, 1500);
  await createPolicy(adminKubeConfig(), POLICY, spec);
});

afterAll(async () => {
  await load?.stop();
  await deletePolicy(adminKubeConfig(), POLICY);
  await operator?.stop();
});

describe('grace periods from observed latency (Scrape, no Prometheus)', () => {
  test('p99 of about 1.5 s scraped from the pods: grace = preStop + ceil(p99 x 1.5) + overhead', async () => {
    const workload = await waitFor(
      'the status to show a latency observed by scraping',
      async () => {
        const w = (await policyStatus(POLICY)).workloads?.find((x) => x.name === 'api');
        return (w?.observedLatency?.seconds ?? 0) > 1 && (w?.observedLatency?.samples ?? 0) >= 20
          ? w
          : undefined;
      },
      { timeoutMs: 90_000 },
    );
    const p99 = workload.observedLatency?.seconds as number;
    expect(p99).toBeLessThanOrEqual(2);
    await waitFor('the grace period', async () => (await graceOf(ns.name, 'api')) === expectedGrace(p99), {
      timeoutMs: 60_000,
    });
  });

  test('a Deployment with too few requests: the status says so, it gets probe and preStop, and its grace is not lowered', async () => {
    const idle = await waitFor('the idle Deployment planned', async () => {
      const w = (await policyStatus(POLICY)).workloads?.find((x) => x.name === 'idle');
      return w?.observedLatency ? w : undefined;
    });
    expect(`${idle.observedLatency?.message} ${idle.message}`).toMatch(
      /fewer than minSamples|first scrape|no requests/,
    );
    // The fallback (preStop 2 + drain 0 + overhead 2 = 4 s) would lower its 30 s: an unknown drain is
    // not a zero drain, so 30 s is kept, even under Override, while the rest is written.
    const written = await waitFor('probe and preStop written', async () => {
      const d = await apps().readNamespacedDeployment({ name: 'idle', namespace: ns.name });
      return d.spec?.template.spec?.containers[0]?.lifecycle?.preStop ? d : undefined;
    });
    expect(written.spec?.template.spec?.terminationGracePeriodSeconds).toBe(30);
    expect(idle.message).toContain('is kept');
    const condition = (await policyStatus(POLICY)).conditions?.find((c) => c.type === 'LatencyObserved');
    expect(condition?.status).toBe('False');
    expect(['TooFewSamples', 'NoData']).toContain(condition?.reason);
  });

  test('latency rises to about 7 s: the grace rises', async () => {
    if (load) load.latencyMs = 7000;
    const raised = await waitFor(
      'the grace period to rise',
      async () => {
        const g = await graceOf(ns.name, 'api');
        return g !== undefined && g >= PRESTOP + Math.ceil(5 * FACTOR) + OVERHEAD ? g : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(raised).toBeLessThanOrEqual(PRESTOP + Math.ceil(10 * FACTOR) + OVERHEAD);
    await waitFor('the status to show the higher latency', async () => {
      const w = (await policyStatus(POLICY)).workloads?.find((x) => x.name === 'api');
      return (w?.observedLatency?.seconds ?? 0) > 5;
    });
  });
});
