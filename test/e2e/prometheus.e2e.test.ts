// The cluster's Prometheus (global setup, test/cluster/prometheus.ts) scrapes demo-service pods on
// the real node found by pod discovery and the standard prometheus.io relabeling: the operator's
// per-le bucket query finds their latency histogram by the `namespace` and `pod` labels,
// histogram_quantile agrees with the operator's bucketQuantile on the same buckets, and a kwok pod
// (fake IP) carrying the same annotations is discovered but never scraped — nothing is sent to it.
import { AppsV1Api, CoreV1Api, type V1Deployment, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ObservedLatencyPolicySchema } from '../../operator/src/api/policy.ts';
import { type Bucket, bucketQuantile } from '../../operator/src/latency/histogram.ts';
import { PrometheusSource } from '../../operator/src/latency/prometheus.ts';
import { REAL_NODE_NAME } from '../cluster/node/node.ts';
import { type InstantQueryResult, queryPrometheus, SCRAPE_JOB, sampleValue } from '../cluster/prometheus.ts';
import { guardDrops, sampleDeployment, waitFor } from '../operator/harness.ts';
import { demoServiceDeployment, scrapeAnnotations } from './real-pods.ts';
import { adminKubeConfig, clusterInfo, useNamespace } from './support.ts';

const ns = useNamespace('prometheus');
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
const prometheus = () => clusterInfo().prometheusUrl;

const DEMO = 'latency-demo';
const KWOK = 'kwok-annotated';
/** Latencies asked of /work?ms=N, each REQUESTS_EACH times per pod. */
const LATENCIES_MS = [5, 20, 50, 100, 200, 400];
const REQUESTS_EACH = 10;

/** The same annotations on a kwok pod: its IP is fake, so it must never become a target. */
const kwokDeployment = (): V1Deployment =>
  sampleDeployment(KWOK, { labels: { app: KWOK }, podAnnotations: scrapeAnnotations });

async function readyPods(app: string): Promise<V1Pod[]> {
  const pods = await core().listNamespacedPod({ namespace: ns.name, labelSelector: `app=${app}` });
  return pods.items.filter(
    (p) =>
      !p.metadata?.deletionTimestamp &&
      p.status?.podIP &&
      p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
}

function vector(result: InstantQueryResult) {
  if (result.resultType !== 'vector') throw new Error(`expected a vector, got a ${result.resultType}`);
  return result.result;
}

const selector = () => `namespace="${ns.name}", pod=~"${DEMO}-[a-z0-9]+-[a-z0-9]+"`;
/** The operator's built-in query (buildBucketQuery) for this Deployment over 1m. */
const increaseQuery = () => `sum by (le) (increase(http_request_duration_seconds_bucket{${selector()}}[1m]))`;
const quantileQuery = () =>
  `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{${selector()}}[1m])))`;

/** Until Prometheus has scraped `count` /work requests in all (the counter, not an increase). */
async function waitForWorkRequests(count: number): Promise<void> {
  await waitFor(
    `Prometheus to have scraped ${count} /work requests`,
    async () => {
      const series = vector(
        await queryPrometheus(
          prometheus(),
          `sum(http_request_duration_seconds_count{${selector()}, route="/work"})`,
        ),
      );
      return Number(series[0]?.value[1]) === count;
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  );
}

let demoPods: V1Pod[] = [];
let kwokPod: V1Pod;
let dropsBefore: number;
let podsReadyAt: number;

beforeAll(async () => {
  dropsBefore = await guardDrops();
  await apps().createNamespacedDeployment({
    namespace: ns.name,
    body: demoServiceDeployment(ns.name, DEMO, {
      replicas: 2,
      readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 1 },
    }),
  });
  await apps().createNamespacedDeployment({ namespace: ns.name, body: kwokDeployment() });
  demoPods = await waitFor(
    'two demo-service pods Ready on the real node',
    async () => {
      const pods = await readyPods(DEMO);
      return pods.length === 2 ? pods : undefined;
    },
    { timeoutMs: 120_000 },
  );
  podsReadyAt = Date.now();
  kwokPod = await waitFor('the annotated kwok pod Ready', async () => (await readyPods(KWOK))[0]);
});

afterAll(async () => {
  // Nothing this file did sent a packet towards a cluster address off the machine.
  expect(await guardDrops()).toBe(dropsBefore);
});

describe('the cluster Prometheus', () => {
  test('listens on 127.0.0.1 and is ready', async () => {
    expect(new URL(prometheus()).hostname).toBe('127.0.0.1');
    expect((await fetch(`${prometheus()}/-/ready`)).status).toBe(200);
  });

  test('scrapes each annotated demo-service pod on the real node: up is 1, with namespace, pod and app', async () => {
    const names = demoPods.map((p) => p.metadata?.name as string).sort();
    const up = await waitFor(
      'up = 1 for both demo-service pods',
      async () => {
        const series = vector(await queryPrometheus(prometheus(), `up{namespace="${ns.name}"}`));
        const ok = series.filter((s) => s.value[1] === '1').map((s) => s.metric.pod);
        return names.every((n) => ok.includes(n)) ? series : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    console.log(
      `[prometheus] both pods scraped ${((Date.now() - podsReadyAt) / 1000).toFixed(1)} s after they were Ready`,
    );
    expect(up.map((s) => s.metric.pod).sort()).toEqual(names);
    for (const s of up) {
      const pod = demoPods.find((p) => p.metadata?.name === s.metric.pod) as V1Pod;
      expect(s.metric).toEqual({
        __name__: 'up',
        job: SCRAPE_JOB,
        namespace: ns.name,
        pod: pod.metadata?.name,
        app: DEMO,
        instance: `${pod.status?.podIP}:8080`,
      });
    }
  });

  test("the operator's bucket query answers with a +Inf count, and histogram_quantile agrees with bucketQuantile", async () => {
    // increase() counts only what happens after a series' first sample, and prom-client creates
    // the /work series at its first request: one request per pod, scraped, comes first.
    for (const pod of demoPods) {
      expect((await fetch(`http://${pod.status?.podIP}:8080/work?ms=1`)).status).toBe(200);
    }
    await waitForWorkRequests(demoPods.length);
    // Then requests straight to each pod, LATENCIES_MS x REQUESTS_EACH apiece.
    for (const pod of demoPods) {
      for (const ms of LATENCIES_MS) {
        const answers = await Promise.all(
          Array.from({ length: REQUESTS_EACH }, () =>
            fetch(`http://${pod.status?.podIP}:8080/work?ms=${ms}`, { signal: AbortSignal.timeout(10_000) }),
          ),
        );
        expect(answers.map((a) => a.status)).toEqual(Array(REQUESTS_EACH).fill(200));
      }
    }
    const sent = demoPods.length * LATENCIES_MS.length * REQUESTS_EACH;
    await waitForWorkRequests(demoPods.length + sent);
    const buckets = await waitFor('a +Inf count in the per-le increase', async () => {
      const series = vector(await queryPrometheus(prometheus(), increaseQuery()));
      const inf = series.find((s) => s.metric.le === '+Inf');
      return inf && sampleValue(inf.value[1]) > 0 ? series : undefined;
    });
    expect(buckets.every((s) => Object.keys(s.metric).join() === 'le')).toBe(true);

    // Both queries at one evaluation time: the same samples, so the same histogram.
    const time = Date.now() / 1000;
    const perLe = vector(await queryPrometheus(prometheus(), increaseQuery(), { time }));
    const promQuantile = vector(await queryPrometheus(prometheus(), quantileQuery(), { time }));
    const ours = bucketQuantile(
      0.99,
      perLe.map((s): Bucket => ({ le: sampleValue(s.metric.le as string), count: sampleValue(s.value[1]) })),
    );
    expect(ours.ok).toBe(true);
    if (!ours.ok) return;
    expect(ours.atLeast).toBe(false);
    // Probes and scrapes are requests too: the histogram holds more than the /work requests.
    expect(ours.observations).toBeGreaterThanOrEqual(sent);
    const theirs = sampleValue(promQuantile[0]?.value[1] ?? 'NaN');
    console.log(
      `[prometheus] p99 over 1m: histogram_quantile ${theirs.toFixed(4)} s, bucketQuantile ${ours.value.toFixed(4)} s, ${ours.observations.toFixed(1)} observations`,
    );
    // The slowest requests (400 ms) are the top 1/6 of /work: p99 lies in the bucket holding them.
    expect(theirs).toBeGreaterThan(0.1);
    expect(Math.abs(ours.value - theirs) / theirs).toBeLessThan(0.01);
  });

  test("one grouped query per policy (by namespace and workload) answers as the workload's own query does", async () => {
    const source = new PrometheusSource({ defaultUrl: prometheus(), timeoutMs: 10_000 });
    const policy = ObservedLatencyPolicySchema.parse({ source: 'Prometheus', window: '1m', minSamples: 1 });
    const demo = { namespace: ns.name, name: DEMO, podLabels: { app: DEMO } };
    const idle = { namespace: ns.name, name: 'no-such-app', podLabels: { app: 'no-such-app' } };
    // Both at one evaluation moment as far as scrapes go: asked back to back, compared loosely.
    const grouped = await source.observeMany([demo, idle], policy);
    const single = await source.observe(demo, policy);
    const fromGroup = grouped.get(`${ns.name}/${DEMO}`);
    console.log(`[prometheus] grouped ${JSON.stringify(fromGroup)}; single ${JSON.stringify(single)}`);
    expect(single.known).toBe(true);
    expect(fromGroup?.known).toBe(true);
    if (!single.known || !fromGroup?.known) return;
    expect(Math.abs(fromGroup.samples - single.samples)).toBeLessThanOrEqual(single.samples * 0.05);
    expect(Math.abs(fromGroup.seconds - single.seconds) / single.seconds).toBeLessThan(0.05);
    // Negative control: a Deployment without pods gets no series, not the demo's.
    expect(grouped.get(`${ns.name}/no-such-app`)?.known).toBe(false);
  });

  test('no target is a kwok pod: the annotated kwok pod is discovered and dropped, and only pod-bridge addresses are scraped', async () => {
    const kwokIp = kwokPod.status?.podIP as string;
    expect(kwokIp).toMatch(/^10\.244\./);
    interface Target {
      discoveredLabels: Record<string, string>;
      labels?: Record<string, string>;
      scrapeUrl?: string;
    }
    const targets = await waitFor('the kwok pod among the dropped targets', async () => {
      const body = (await (await fetch(`${prometheus()}/api/v1/targets?state=any`)).json()) as {
        data: { activeTargets: Target[]; droppedTargets: Target[] };
      };
      const dropped = body.data.droppedTargets.some(
        (t) => t.discoveredLabels.__meta_kubernetes_pod_name === kwokPod.metadata?.name,
      );
      return dropped ? body.data : undefined;
    });
    expect(
      targets.droppedTargets.find(
        (t) => t.discoveredLabels.__meta_kubernetes_pod_name === kwokPod.metadata?.name,
      )?.discoveredLabels.__address__,
    ).toBe(`${kwokIp}:8080`);
    expect(targets.activeTargets.length).toBeGreaterThanOrEqual(2);
    for (const t of targets.activeTargets) {
      expect(t.discoveredLabels.__meta_kubernetes_pod_node_name).toBe(REAL_NODE_NAME);
      expect(new URL(t.scrapeUrl as string).hostname).toMatch(/^10\.88\.0\.\d+$/);
    }
    const kwokUp = vector(await queryPrometheus(prometheus(), `up{namespace="${ns.name}", app="${KWOK}"}`));
    expect(kwokUp).toEqual([]);
    const instances = vector(await queryPrometheus(prometheus(), `up{job="${SCRAPE_JOB}"}`)).map(
      (s) => s.metric.instance,
    );
    for (const instance of instances) expect(instance).toMatch(/^10\.88\.0\.\d+:\d+$/);
  });
});
