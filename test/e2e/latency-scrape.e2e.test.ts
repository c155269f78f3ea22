// The same as latency.e2e.test.ts with `source: Scrape` and no Prometheus given to the operator:
// it scrapes the real pods' /metrics itself (pod IPs on the real node's bridge), keeps
// per-pod snapshots, and plans with the same quantile. A Deployment that serves nothing has too
// few samples: the status says so and the policy's fallback applies.
import { AppsV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createPolicy, deletePolicy, type OperatorProcess, waitFor } from '../operator/harness.ts';
import {
  deployDemo,
  expectedGrace,
  FACTOR,
  graceOf,
  LatencyLoad,
  latencyPolicySpec,
  OVERHEAD,
  PRESTOP,
  policyStatus,
  startLatencyOperator,
} from './latency-support.ts';
import { adminKubeConfig, useNamespace } from './support.ts';

const ns = useNamespace('scrape');
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);

const POLICY = 'latency-scrape-e2e';
const spec = latencyPolicySpec(ns.name, {
  source: 'Scrape',
  scrape: { port: 'http', path: '/metrics' },
  stabilizationWindow: '30s',
});

let operator: OperatorProcess;
let load: LatencyLoad | undefined;

beforeAll(async () => {
  // No --prometheus-url: this operator knows of no Prometheus.
  operator = await startLatencyOperator('operator-scrape.log');
  load = new LatencyLoad(await deployDemo(ns.name, ['api', 'idle']), 8, 1500);
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
