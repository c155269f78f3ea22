// A histogram in milliseconds gives the grace period its seconds twin gives (issue 25, units):
// demo-service on the real node exports the same request durations twice, in seconds
// (http_request_duration_seconds) and in milliseconds (http_server_duration_milliseconds, the
// bounds x 1000). Two namespaces under the same load, one policy reading each, by scraping the
// pods. Negative control: the millisecond histogram read as seconds is a thousand times longer.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  createPolicy,
  deletePolicy,
  type OperatorProcess,
  patchPolicy,
  waitFor,
} from '../operator/harness.ts';
import {
  deployDemo,
  expectedGrace,
  graceOf,
  LatencyLoad,
  latencyPolicySpec,
  policyStatus,
  startLatencyOperator,
} from './latency-support.ts';
import { adminKubeConfig, useNamespace } from './support.ts';

const seconds = useNamespace('units-s');
const millis = useNamespace('units-ms');
const POLICY_S = 'latency-units-seconds';
const POLICY_MS = 'latency-units-milliseconds';
const MS_METRIC = 'http_server_duration_milliseconds';
const scrape = { source: 'Scrape', scrape: { port: 'http', path: '/metrics' }, stabilizationWindow: '30s' };

let operator: OperatorProcess;
const loads: LatencyLoad[] = [];

beforeAll(async () => {
  operator = await startLatencyOperator('operator-units.log');
  for (const ns of [seconds.name, millis.name])
    loads.push(new LatencyLoad(await deployDemo(ns, ['api']), 4, 1500));
  await createPolicy(adminKubeConfig(), POLICY_S, latencyPolicySpec(seconds.name, scrape));
  await createPolicy(
    adminKubeConfig(),
    POLICY_MS,
    latencyPolicySpec(millis.name, { ...scrape, metric: MS_METRIC }),
  );
});

afterAll(async () => {
  await Promise.all(loads.map((l) => l.stop()));
  await deletePolicy(adminKubeConfig(), POLICY_S);
  await deletePolicy(adminKubeConfig(), POLICY_MS);
  await operator?.stop();
});

/** The p99 in seconds the policy's status shows for `api`, once observed with enough requests. */
const observedP99 = (policy: string) =>
  waitFor(
    `${policy}: a latency observed by scraping`,
    async () => {
      const w = (await policyStatus(policy)).workloads?.find((x) => x.name === 'api');
      const p99 = w?.observedLatency?.seconds;
      return p99 !== undefined && (w?.observedLatency?.samples ?? 0) >= 20 ? p99 : undefined;
    },
    { timeoutMs: 120_000 },
  );

describe('a histogram in milliseconds (real node, Scrape)', () => {
  test('requests of 1.5 s: both histograms give a p99 between 1 and 2 s, and the same grace period', async () => {
    const [p99s, p99ms] = await Promise.all([observedP99(POLICY_S), observedP99(POLICY_MS)]);
    for (const p99 of [p99s, p99ms]) {
      expect(p99).toBeGreaterThan(1);
      expect(p99).toBeLessThanOrEqual(2);
    }
    const grace = async (ns: string, p99: number) =>
      waitFor(`the grace period in ${ns}`, async () => {
        const g = await graceOf(ns, 'api');
        return g === expectedGrace(p99) ? g : undefined;
      });
    const [graceS, graceMs] = await Promise.all([grace(seconds.name, p99s), grace(millis.name, p99ms)]);
    expect(graceMs).toBe(graceS);
    console.info(
      `p99 ${p99s.toFixed(3)} s (seconds histogram), ${p99ms.toFixed(3)} s (milliseconds histogram); grace ${graceS} s, ${graceMs} s`,
    );
  });

  test('negative control: the same millisecond histogram read as seconds (unit: Seconds) raises the grace to maxSeconds', async () => {
    await patchPolicy(adminKubeConfig(), POLICY_MS, [
      { op: 'add', path: '/spec/observedLatency/unit', value: 'Seconds' },
    ]);
    const read = await waitFor(
      'the status to show the bounds read as seconds',
      async () => {
        const w = (await policyStatus(POLICY_MS)).workloads?.find((x) => x.name === 'api');
        return (w?.observedLatency?.seconds ?? 0) > 100 ? w : undefined;
      },
      { timeoutMs: 120_000 },
    );
    expect(read.observedLatency?.seconds).toBeGreaterThan(1000);
    // latencyPolicySpec's maxSeconds.
    await waitFor('the grace period at maxSeconds', async () => (await graceOf(millis.name, 'api')) === 60, {
      timeoutMs: 60_000,
    });
  });
});
