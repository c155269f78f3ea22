import type { V1LabelSelector, V1Pod } from '@kubernetes/client-node';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { createMetrics, durationBuckets } from '../../../demo-service/src/metrics.ts';
import { ObservedLatencyPolicySchema } from '../api/policy.ts';
import { MAX_BUCKET_BOUNDS } from './exposition.ts';
import { bucketQuantile } from './histogram.ts';
import { MAX_SNAPSHOTS_PER_POD, ScrapeSource, type ScrapeSourceOptions } from './scrape.ts';
import type { Workload } from './source.ts';
import { GO_BODY, GO_SUMS } from './testdata/client-golang.ts';

const MIN = 60_000;
const INF = '+Inf';

beforeAll(() => {
  // Nothing leaves the process: every pod address below is answered by nock or refused by it.
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
});

/**
 * fetch through nock, except that requests to `silent` hosts never answer until aborted. (A nock
 * reply delayed past an abort makes undici fail an internal assertion when it comes.)
 */
function fetchWithSilent(...silent: string[]): typeof fetch {
  return (input, init) => {
    if (!silent.some((host) => String(input).includes(`//${host}:`))) return fetch(input, init);
    return new Promise((_, reject) => {
      const signal = init?.signal;
      if (signal?.aborted) reject(signal.reason);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  };
}
afterAll(() => {
  nock.enableNetConnect();
});

interface PodSpec {
  ip?: string;
  uid?: string;
  labels?: Record<string, string>;
  phase?: string;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  sidecarPorts?: { name?: string; containerPort: number }[];
}

function pod(name: string, spec: PodSpec = {}): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'shop',
      uid: spec.uid ?? `uid-${name}`,
      labels: spec.labels ?? { app: 'web' },
    },
    spec: {
      containers: [{ name: 'app', ports: spec.ports ?? [{ name: 'http', containerPort: 8080 }] }],
      ...(spec.sidecarPorts
        ? { initContainers: [{ name: 'proxy', restartPolicy: 'Always', ports: spec.sidecarPorts }] }
        : {}),
    },
    status: { phase: spec.phase ?? 'Running', ...(spec.ip === '' ? {} : { podIP: spec.ip ?? '10.1.2.3' }) },
  };
}

const workload: Workload = {
  namespace: 'shop',
  name: 'web',
  podLabels: { app: 'web' },
  selector: { matchLabels: { app: 'web' } },
};

function policy(overrides: Record<string, unknown> = {}) {
  return ObservedLatencyPolicySchema.parse({
    source: 'Scrape',
    window: '10m',
    percentile: 0.9,
    scrape: { port: 'http' },
    ...overrides,
  });
}

/** A histogram exposition: one label set per entry, counts cumulative per le. */
function exposition(
  series: { labels?: string; buckets: [string, number][] }[],
  metric = 'http_request_duration_seconds',
): string {
  const lines = [`# HELP ${metric} Request duration.`, `# TYPE ${metric} histogram`];
  for (const { labels, buckets } of series) {
    const extra = labels ? `,${labels}` : '';
    for (const [le, count] of buckets) lines.push(`${metric}_bucket{le="${le}"${extra}} ${count}`);
    const total = buckets.find(([le]) => le === INF)?.[1] ?? 0;
    lines.push(
      `${metric}_sum${labels ? `{${labels}}` : ''} 1`,
      `${metric}_count${labels ? `{${labels}}` : ''} ${total}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** One label set with these cumulative counts at 0.1, 0.5, 1 and +Inf. */
const h = (c01: number, c05: number, c1: number, inf: number) =>
  exposition([
    {
      buckets: [
        ['0.1', c01],
        ['0.5', c05],
        ['1', c1],
        [INF, inf],
      ],
    },
  ]);

function serve(ip: string, body: string, port = 8080, path = '/metrics') {
  return nock(`http://${ip}:${port}`)
    .get(path)
    .reply(200, body, { 'content-type': 'text/plain; version=0.0.4' });
}

interface Harness {
  source: ScrapeSource;
  clock: { t: number };
  pods: V1Pod[];
  selectors: V1LabelSelector[];
}

function harness(pods: V1Pod[], options: Partial<ScrapeSourceOptions> = {}): Harness {
  const clock = { t: 1_000_000 };
  const selectors: V1LabelSelector[] = [];
  const state: Harness = {
    clock,
    pods,
    selectors,
    source: new ScrapeSource({
      pods: (namespace, selector) => {
        selectors.push(selector);
        return state.pods.filter((p) => p.metadata?.namespace === namespace);
      },
      timeoutMs: 1000,
      now: () => clock.t,
      ...options,
    }),
  };
  return state;
}

describe('ScrapeSource: which pods, which port', () => {
  test('the full selector: matchLabels AND every matchExpression; only Running pods with an IP', async () => {
    const selector: V1LabelSelector = {
      matchLabels: { app: 'web' },
      matchExpressions: [
        { key: 'tier', operator: 'In', values: ['front', 'edge'] },
        { key: 'track', operator: 'NotIn', values: ['canary'] },
        { key: 'team', operator: 'Exists' },
        { key: 'legacy', operator: 'DoesNotExist' },
      ],
    };
    const base = { app: 'web', tier: 'front', team: 'a' };
    const { source, selectors } = harness([
      pod('match', { ip: '10.1.2.3', labels: base }),
      pod('match-edge', { ip: '10.1.2.4', labels: { ...base, tier: 'edge', track: 'stable' } }),
      pod('other-app', { ip: '10.1.2.5', labels: { ...base, app: 'api' } }),
      pod('wrong-tier', { ip: '10.1.2.6', labels: { ...base, tier: 'back' } }),
      pod('canary', { ip: '10.1.2.7', labels: { ...base, track: 'canary' } }),
      pod('no-team', { ip: '10.1.2.8', labels: { app: 'web', tier: 'front' } }),
      pod('legacy', { ip: '10.1.2.9', labels: { ...base, legacy: 'yes' } }),
      pod('pending', { ip: '10.1.2.10', labels: base, phase: 'Pending' }),
      pod('no-ip', { ip: '', labels: base }),
    ]);
    const a = serve('10.1.2.3', h(1, 2, 3, 3));
    const b = serve('10.1.2.4', h(1, 2, 3, 3));
    await source.observe({ ...workload, selector }, policy());
    expect(a.isDone() && b.isDone()).toBe(true);
    expect(selectors).toEqual([selector]);
    expect(source.lastScrape('shop', 'web')).toMatchObject({ pods: 2, answered: 2, errors: [] });
  });

  test('without a full selector the pod labels are the selector; an empty one matches nothing', async () => {
    const { source } = harness([
      pod('a', { labels: { app: 'web', x: '1' } }),
      pod('b', { labels: { app: 'api' } }),
    ]);
    const scope = serve('10.1.2.3', h(1, 1, 1, 1));
    const { selector: _, ...withoutSelector } = workload;
    await source.observe(withoutSelector, policy());
    expect(scope.isDone()).toBe(true);
    expect(await source.observe({ ...workload, podLabels: {}, selector: {} }, policy())).toEqual({
      known: false,
      source: 'Scrape',
      reason: "the Deployment's selector is empty",
    });
  });

  test('a port name resolves to the container port of that name, sidecars included; a number must be declared', async () => {
    const { source } = harness([
      pod('named', {
        ip: '10.1.2.3',
        ports: [
          { name: 'http', containerPort: 8080 },
          { name: 'metrics', containerPort: 9090 },
        ],
      }),
      pod('sidecar', { ip: '10.1.2.4', sidecarPorts: [{ name: 'metrics', containerPort: 15090 }] }),
      pod('missing', { ip: '10.1.2.5' }),
    ]);
    const a = serve('10.1.2.3', h(1, 1, 1, 1), 9090, '/stats/prometheus');
    const b = serve('10.1.2.4', h(1, 1, 1, 1), 15090, '/stats/prometheus');
    await source.observe(workload, policy({ scrape: { port: 'metrics', path: '/stats/prometheus' } }));
    expect(a.isDone() && b.isDone()).toBe(true);
    expect(source.lastScrape('shop', 'web')?.errors).toEqual([
      { pod: 'missing', reason: 'not scraped: no container of the pod declares a TCP port named "metrics"' },
    ]);

    const c = serve('10.1.2.5', h(1, 1, 1, 1), 15090);
    const { source: numeric } = harness([
      pod('sidecar', { ip: '10.1.2.5', sidecarPorts: [{ containerPort: 15090 }] }),
    ]);
    await numeric.observe(workload, policy({ scrape: { port: 15090 } }));
    expect(c.isDone()).toBe(true);
    expect(numeric.lastScrape('shop', 'web')).toMatchObject({ answered: 1, errors: [] });
  });

  test('a port no container declares is not scraped, by number or name, nor a UDP one', async () => {
    const fetched: string[] = [];
    const { source } = harness(
      [
        pod('a', { ip: '10.1.2.3', ports: [{ name: 'http', containerPort: 8080 }] }),
        pod('b', {
          ip: '10.1.2.4',
          ports: [{ name: 'metrics', containerPort: 9090, protocol: 'UDP' }],
        }),
      ],
      {
        fetch: async (url) => {
          fetched.push(String(url));
          return new Response(h(1, 1, 1, 1));
        },
      },
    );
    // 9100 may well listen in the pod's network namespace (a node exporter sidecar that does
    // not declare it, say): the operator asks only what the pod says it serves.
    expect(await source.observe(workload, policy({ scrape: { port: 9100 } }))).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringContaining('a: not scraped: no container of the pod declares TCP port 9100'),
    });
    expect(await source.observe(workload, policy({ scrape: { port: 'metrics' } }))).toMatchObject({
      reason: expect.stringContaining(
        'b: not scraped: no container of the pod declares a TCP port named "metrics"',
      ),
    });
    expect(await source.observe(workload, policy({ scrape: { port: 9090 } }))).toMatchObject({
      reason: expect.stringContaining('b: not scraped: no container of the pod declares TCP port 9090'),
    });
    expect(fetched).toEqual([]);
  });

  test("a pod on the host's network is never scraped: its address and ports are the node's", async () => {
    const fetched: string[] = [];
    const host = pod('host', { ip: '192.168.1.10' });
    host.spec = { ...host.spec, containers: host.spec?.containers ?? [], hostNetwork: true };
    const { source } = harness([host, pod('own', { ip: '10.1.2.4' })], {
      fetch: async (url) => {
        fetched.push(String(url));
        return new Response(h(1, 1, 1, 1));
      },
    });
    await source.observe(workload, policy());
    expect(fetched).toEqual(['http://10.1.2.4:8080/metrics']);
    expect(source.lastScrape('shop', 'web')).toMatchObject({
      pods: 2,
      answered: 1,
      errors: [
        {
          pod: 'host',
          reason: "not scraped: the pod is on the host's network, its address and ports are the node's",
        },
      ],
    });
    const { source: alone } = harness([host]);
    expect(await alone.observe(workload, policy())).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringContaining("host: not scraped: the pod is on the host's network"),
    });
  });

  test('defaults: port "metrics", path /metrics (demo-service names its port http, so it needs scrape.port)', async () => {
    const { source } = harness([pod('demo', { ip: '10.1.2.3' })]);
    const observation = await source.observe(workload, policy({ scrape: undefined }));
    expect(observation).toMatchObject({ known: false, unavailable: true });
    expect(source.lastScrape('shop', 'web')?.errors).toEqual([
      { pod: 'demo', reason: 'not scraped: no container of the pod declares a TCP port named "metrics"' },
    ]);
  });

  test('an IPv6 pod IP is bracketed in the URL', async () => {
    const urls: string[] = [];
    const { source } = harness([pod('v6', { ip: 'fd00::1:2' })], {
      fetch: async (url) => {
        urls.push(String(url));
        return new Response(h(1, 1, 1, 1));
      },
    });
    await source.observe(workload, policy());
    expect(urls).toEqual(['http://[fd00::1:2]:8080/metrics']);
  });
});

describe('ScrapeSource: the percentile over the window', () => {
  test('the first scrape gives no increase yet: unknown, samples 0, not unavailable', async () => {
    const { source } = harness([pod('a', { ip: '10.1.2.3' }), pod('b', { ip: '10.1.2.4' })]);
    serve('10.1.2.3', h(10, 20, 20, 20));
    serve('10.1.2.4', h(10, 20, 20, 20));
    expect(await source.observe(workload, policy())).toEqual({
      known: false,
      source: 'Scrape',
      reason: 'first scrape of 2 pods: latency needs two scrapes inside the window',
      samples: 0,
    });
  });

  test('two scrapes: the quantile of the increase, summed over pods; samples = the +Inf increase', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' }), pod('b', { ip: '10.1.2.4' })]);
    serve('10.1.2.3', h(10, 20, 20, 20));
    serve('10.1.2.4', h(0, 0, 0, 0));
    await source.observe(workload, policy());
    clock.t += MIN;
    // a: +40 in (0, 0.1], +30 in (0.1, 0.5], +10 in (0.5, 1]; b: +10 and +10.
    serve('10.1.2.3', h(50, 90, 100, 100));
    serve('10.1.2.4', h(10, 20, 20, 20));
    // Merged increase: 50 <= 0.1, 90 <= 0.5, 100 <= 1, 100 in all.
    expect(await source.observe(workload, policy({ percentile: 0.7 }))).toEqual({
      known: true,
      source: 'Scrape',
      seconds: expect.closeTo(0.3, 10),
      samples: 100,
      percentile: 0.7,
      window: '10m',
    });
  });

  test("a histogram in milliseconds gives its seconds twin's answer, in seconds", async () => {
    const ms = (c: number[]) =>
      exposition(
        [
          {
            buckets: [
              ['100', c[0] as number],
              ['500', c[1] as number],
              ['1000', c[2] as number],
              [INF, c[3] as number],
            ],
          },
        ],
        'response_latency_ms',
      );
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', ms([10, 20, 20, 20]));
    const linkerd = policy({ metric: 'response_latency_ms' });
    await source.observe(workload, linkerd);
    clock.t += MIN;
    serve('10.1.2.3', ms([50, 90, 100, 100]));
    const inMs = await source.observe(workload, { ...linkerd, percentile: 0.7 });
    // The seconds twin of the same increase (40, 30, 10 in the buckets; 80 in all).
    const twin = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', h(10, 20, 20, 20));
    await twin.source.observe(workload, policy());
    twin.clock.t += MIN;
    serve('10.1.2.3', h(50, 90, 100, 100));
    const inSeconds = await twin.source.observe(workload, policy({ percentile: 0.7 }));
    expect(inMs).toMatchObject({ known: true, samples: 80 });
    expect((inMs as { seconds: number }).seconds).toBeCloseTo((inSeconds as { seconds: number }).seconds, 12);
    expect((inSeconds as { seconds: number }).seconds).toBeLessThan(1);
  });

  test('preset Auto: the first preset whose histogram the pods export, named in the observation; none found, said so', async () => {
    const shapes = (istio: number, plain: number) =>
      exposition(
        [
          {
            labels: 'reporter="destination",destination_workload="web",destination_workload_namespace="shop"',
            buckets: [
              ['100', 0],
              ['1000', istio],
              [INF, istio],
            ],
          },
        ],
        'istio_request_duration_milliseconds',
      ) + h(plain, plain, plain, plain);
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', shapes(0, 0));
    await source.observe(workload, policy({ preset: 'Auto' }));
    clock.t += MIN;
    serve('10.1.2.3', shapes(50, 500));
    // Istio comes before the prom-client convention: its 50 requests between 0.1 and 1 s, not
    // the other histogram's 500 fast ones.
    const auto = await source.observe(workload, policy({ preset: 'Auto' }));
    expect(auto).toMatchObject({ known: true, samples: 50, preset: 'Istio' });
    expect((auto as { seconds: number }).seconds).toBeGreaterThan(0.1);
    // Without Istio's series, the next preset found.
    const other = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', h(0, 0, 0, 0));
    await other.source.observe(workload, policy({ preset: 'Auto' }));
    other.clock.t += MIN;
    serve('10.1.2.3', h(500, 500, 500, 500));
    expect(await other.source.observe(workload, policy({ preset: 'Auto' }))).toMatchObject({
      known: true,
      samples: 500,
      preset: 'PrometheusClient',
    });
    // Nothing any preset reads.
    const none = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', exposition([{ buckets: [[INF, 3]] }], 'rpc_seconds'));
    const unknown = await none.source.observe(workload, policy({ preset: 'Auto' }));
    expect(unknown).toMatchObject({ known: false, samples: 0 });
    expect((unknown as { reason: string }).reason).toBe(
      'preset Auto: no histogram asked for on 1 pods; asked for Istio (istio_request_duration_milliseconds), OpenTelemetry (http_server_request_duration_seconds), OpenTelemetryLegacy (http_server_duration_milliseconds), Micrometer (http_server_requests_seconds), PrometheusClient (http_request_duration_seconds), Linkerd (inbound_http_request_duration_seconds), Linkerd (response_latency_ms)',
    );
  });

  test("a proxy's preset is not read from the workload's pods", async () => {
    const { source } = harness([pod('a', { ip: '10.1.2.3' })]);
    // Validation refuses it; a policy parsed without that rule still gets an answer, not a scrape.
    const observed = await source.observe(workload, { ...policy(), preset: 'Envoy' });
    expect(observed).toEqual({
      known: false,
      source: 'Scrape',
      reason: 'preset Envoy is measured at a proxy: only source Prometheus reads it',
    });
  });

  test('preset Auto follows what the pods export now: a histogram they stopped exporting does not hold the choice', async () => {
    const istio = (count: number) =>
      exposition(
        [
          {
            labels: 'reporter="destination"',
            buckets: [
              ['1000', count],
              [INF, count],
            ],
          },
        ],
        'istio_request_duration_milliseconds',
      );
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', istio(0));
    await source.observe(workload, policy({ preset: 'Auto' }));
    // A new version of the app: no mesh any more, its own histogram instead.
    clock.t += MIN;
    serve('10.1.2.3', h(0, 0, 0, 0));
    await source.observe(workload, policy({ preset: 'Auto' }));
    clock.t += MIN;
    serve('10.1.2.3', h(300, 300, 300, 300));
    expect(await source.observe(workload, policy({ preset: 'Auto' }))).toMatchObject({
      known: true,
      preset: 'PrometheusClient',
      samples: 300,
    });
  });

  test('a preset with nothing to read says what its stack needs (Micrometer without its percentiles histogram)', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    const summaryOnly =
      'http_server_requests_seconds_count{uri="/orders"} 5\nhttp_server_requests_seconds_sum{uri="/orders"} 1\n';
    serve('10.1.2.3', summaryOnly);
    await source.observe(workload, policy({ preset: 'Micrometer' }));
    clock.t += MIN;
    serve('10.1.2.3', summaryOnly);
    const observed = await source.observe(workload, policy({ preset: 'Micrometer' }));
    expect((observed as { reason: string }).reason).toContain(
      'no http_server_requests_seconds_bucket series on 1 pods (Micrometer exports http_server_requests_seconds buckets only with management.metrics.distribution.percentiles-histogram.http.server.requests=true)',
    );
  });

  test('a pod exporting several label sets (per route): summed per le', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    const routes = (x: number, y: number) =>
      exposition([
        {
          labels: 'route="/x"',
          buckets: [
            ['0.1', x],
            ['1', x],
            [INF, x],
          ],
        },
        {
          labels: 'route="/y"',
          buckets: [
            ['0.1', 0],
            ['1', y],
            [INF, y],
          ],
        },
      ]);
    serve('10.1.2.3', routes(0, 0));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', routes(50, 50));
    // 50 fast on /x, 50 slow on /y: the median is the top of the first bucket, p75 halfway up the second.
    const observation = await source.observe(workload, policy({ percentile: 0.75 }));
    expect(observation).toMatchObject({ known: true, samples: 100, seconds: expect.closeTo(0.55, 10) });
  });

  test("the kubelet's probes are left out: 10x the requests on the probe path do not move the percentile", async () => {
    const routes = (probe: number, work: number) =>
      exposition([
        {
          labels: 'route="/readyz"',
          buckets: [
            ['0.1', probe],
            ['1', probe],
            [INF, probe],
          ],
        },
        {
          labels: 'route="/work"',
          buckets: [
            ['0.1', 0],
            ['1', work],
            [INF, work],
          ],
        },
      ]);
    const observe = async (probePaths: string[] | undefined) => {
      const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
      const w = { ...workload, ...(probePaths ? { probePaths } : {}) };
      serve('10.1.2.3', routes(0, 0));
      await source.observe(w, policy());
      clock.t += MIN;
      serve('10.1.2.3', routes(500, 50));
      return source.observe(w, policy({ percentile: 0.5 }));
    };
    // Only the 50 slow requests: the median is halfway up (0.1, 1].
    expect(await observe(['/readyz', '/healthz'])).toMatchObject({
      samples: 50,
      seconds: expect.closeTo(0.55, 10),
    });
    // Negative control: counted, the 500 fast probes make the median fast.
    const counted = await observe(undefined);
    expect(counted).toMatchObject({ samples: 550 });
    expect((counted as { seconds: number }).seconds).toBeLessThan(0.1);
  });

  test('a counter reset on the same pod (container restart) counts what came after, and what came before', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', h(100, 100, 100, 100));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', h(110, 120, 120, 120)); // +10 fast, +10 medium
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', h(0, 0, 5, 5)); // restarted: 5 slow ones since
    expect(await source.observe(workload, policy({ percentile: 0.5 }))).toMatchObject({
      known: true,
      samples: 25,
      // 10 <= 0.1, 20 <= 0.5, 25 <= 1: rank 12.5 is a quarter into (0.1, 0.5].
      seconds: expect.closeTo(0.2, 10),
    });
  });

  test('a replaced pod (new UID): the old one counts while it is in the window, the new one from its second scrape', async () => {
    const h1 = harness([pod('a', { ip: '10.1.2.3', uid: 'old' })]);
    const { source, clock } = h1;
    serve('10.1.2.3', h(0, 0, 0, 0));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', h(30, 30, 30, 30));
    await source.observe(workload, policy());
    h1.pods = [pod('a2', { ip: '10.1.2.4', uid: 'new' })];
    clock.t += MIN;
    serve('10.1.2.4', h(0, 0, 0, 0));
    expect(await source.observe(workload, policy())).toMatchObject({ known: true, samples: 30 });
    clock.t += MIN;
    serve('10.1.2.4', h(0, 10, 10, 10));
    expect(await source.observe(workload, policy())).toMatchObject({ known: true, samples: 40 });
  });

  test('a gone pod counts while its last snapshot is inside the window, and is forgotten after', async () => {
    const hs = harness([pod('a', { ip: '10.1.2.3' }), pod('b', { ip: '10.1.2.4' })]);
    const { source, clock } = hs;
    serve('10.1.2.3', h(0, 0, 0, 0));
    serve('10.1.2.4', h(0, 0, 0, 0));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', h(10, 10, 10, 10));
    serve('10.1.2.4', h(0, 0, 0, 90)); // 90 beyond 1 s
    await source.observe(workload, policy());
    const goneAt = clock.t;
    hs.pods = [pod('a', { ip: '10.1.2.3' })];
    clock.t += 5 * MIN;
    serve('10.1.2.3', h(20, 20, 20, 20));
    expect(await source.observe(workload, policy())).toMatchObject({
      known: true,
      samples: 110,
      seconds: 1,
      atLeast: true,
    });
    expect(source.size()).toEqual({ workloads: 1, pods: 2, snapshots: 5 });

    clock.t = goneAt + 10 * MIN + 1; // b's last snapshot has left the window
    serve('10.1.2.3', h(30, 30, 30, 30));
    // a from its snapshot at goneAt (10) to now (30): 20, all under 0.1 s.
    expect(await source.observe(workload, policy())).toMatchObject({
      known: true,
      samples: 20,
      seconds: expect.closeTo(0.09, 10),
    });
    expect(source.size().pods).toBe(1);
  });

  test('the baseline is the newest snapshot at or before the window start; older ones are dropped', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    const start = clock.t;
    for (const [minute, total] of [
      [0, 0],
      [4, 100],
      [8, 150],
      [12, 400],
      [16, 410],
    ] as const) {
      clock.t = start + minute * MIN;
      serve('10.1.2.3', h(total, total, total, total));
      await source.observe(workload, policy());
    }
    // Now minute 16, window 10m: starts at minute 6; the baseline is minute 4 (100), so 310.
    expect(source.size().snapshots).toBe(4);
    clock.t = start + 17 * MIN;
    serve('10.1.2.3', h(500, 500, 500, 500));
    // Minute 17: window from minute 7, baseline still minute 4.
    expect(await source.observe(workload, policy())).toMatchObject({ samples: 400 });
    clock.t = start + 19 * MIN;
    serve('10.1.2.3', h(520, 520, 520, 520));
    // Minute 19: window from minute 9, baseline minute 8 (150); minute 4 is dropped.
    expect(await source.observe(workload, policy())).toMatchObject({ samples: 370 });
    expect(source.size().snapshots).toBe(5);
  });

  test('snapshots per pod are capped: interior ones are thinned, the baseline and the newest kept', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })], { maxSnapshotsPerPod: 4 });
    for (let i = 0; i < 9; i++) {
      if (i > 0) clock.t += MIN;
      serve('10.1.2.3', h(i * 10, i * 10, i * 10, i * 10));
      await source.observe(workload, policy({ window: '1h' }));
    }
    expect(source.size().snapshots).toBe(4);
    serve('10.1.2.3', h(100, 100, 100, 100));
    clock.t += MIN;
    expect(await source.observe(workload, policy({ window: '1h' }))).toMatchObject({ samples: 100 });
  });

  test('the percentile in the +Inf bucket: the largest finite bound, marked atLeast', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', h(0, 0, 0, 0));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', h(80, 85, 88, 100));
    expect(await source.observe(workload, policy({ percentile: 0.99 }))).toEqual({
      known: true,
      source: 'Scrape',
      seconds: 1,
      samples: 100,
      percentile: 0.99,
      window: '10m',
      atLeast: true,
    });
  });

  test('no requests in the window, or no such histogram: unknown with samples 0', async () => {
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', h(5, 5, 5, 5));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', h(5, 5, 5, 5));
    expect(await source.observe(workload, policy())).toEqual({
      known: false,
      source: 'Scrape',
      reason: 'no requests in 10m on 1 pods',
      samples: 0,
    });

    const other = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', '# nothing here yet\nup 1\n');
    await other.source.observe(workload, policy());
    other.clock.t += MIN;
    serve('10.1.2.3', 'up 1\n');
    expect(await other.source.observe(workload, policy())).toEqual({
      known: false,
      source: 'Scrape',
      reason: 'no http_request_duration_seconds_bucket series on 1 pods',
      samples: 0,
    });
  });

  test('an unusable window is reported, and nothing is scraped', async () => {
    const { source } = harness([pod('a', { ip: '10.1.2.3' })]);
    const observation = await source.observe(workload, { ...policy(), window: '30m1h' });
    expect(observation).toMatchObject({
      known: false,
      reason: expect.stringContaining('observedLatency.window'),
    });
    expect(observation).not.toHaveProperty('unavailable');
  });

  test('no Running pod: unknown, saying so', async () => {
    const { source } = harness([pod('a', { phase: 'Pending' })]);
    expect(await source.observe(workload, policy())).toEqual({
      known: false,
      source: 'Scrape',
      reason: "no Running pod with an IP matches the Deployment's selector",
    });
  });
});

describe('ScrapeSource: failures', () => {
  test('no pod answers (HTTP error, refused, timeout, unparseable): unavailable, with the reasons', async () => {
    const { source } = harness(
      [
        pod('http500', { ip: '10.1.2.3' }),
        pod('refused', { ip: '10.1.2.4' }),
        pod('slow', { ip: '10.1.2.5' }),
        pod('garbage', { ip: '10.1.2.6' }),
      ],
      { timeoutMs: 100, fetch: fetchWithSilent('10.1.2.5') },
    );
    nock('http://10.1.2.3:8080').get('/metrics').reply(500, 'oops');
    nock('http://10.1.2.4:8080')
      .get('/metrics')
      .replyWithError(
        Object.assign(new Error('connect ECONNREFUSED 10.1.2.4:8080'), { code: 'ECONNREFUSED' }),
      );
    serve('10.1.2.6', 'http_request_duration_seconds_bucket{le="0.1" 12\n');
    const observation = await source.observe(workload, policy());
    expect(observation).toMatchObject({ known: false, unavailable: true, source: 'Scrape' });
    const reason = (observation as { reason: string }).reason;
    expect(reason).toMatch(
      /^none of 4 pods answered: http500: GET http:\/\/10\.1\.2\.3:8080\/metrics: HTTP 500; /,
    );
    expect(reason).toContain('(and 1 more)');
    const errors = source.lastScrape('shop', 'web')?.errors ?? [];
    expect(errors.map((e) => e.pod)).toEqual(['http500', 'refused', 'slow', 'garbage']);
    expect(errors[1]?.reason).toMatch(/ECONNREFUSED/);
    expect(errors[2]?.reason).toBe('GET http://10.1.2.5:8080/metrics: no answer within 100 ms');
    expect(errors[3]?.reason).toMatch(/parse/i);
  });

  test('one of two pods fails: the other is used, and the failure is in lastScrape', async () => {
    const { source, clock } = harness([pod('good', { ip: '10.1.2.3' }), pod('bad', { ip: '10.1.2.4' })]);
    serve('10.1.2.3', h(0, 0, 0, 0));
    nock('http://10.1.2.4:8080').get('/metrics').reply(503);
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', h(100, 100, 100, 100));
    nock('http://10.1.2.4:8080').get('/metrics').reply(503);
    expect(await source.observe(workload, policy())).toMatchObject({ known: true, samples: 100 });
    expect(source.lastScrape('shop', 'web')).toEqual({
      at: clock.t,
      pods: 2,
      answered: 1,
      errors: [{ pod: 'bad', reason: 'GET http://10.1.2.4:8080/metrics: HTTP 503' }],
    });
  });

  test("the caller's signal aborts the scrape: unavailable", async () => {
    const { source } = harness([pod('a', { ip: '10.1.2.3' })], { fetch: fetchWithSilent('10.1.2.3') });
    const controller = new AbortController();
    const pending = source.observe(workload, policy(), controller.signal);
    setTimeout(() => controller.abort(), 20);
    expect(await pending).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringContaining('aborted'),
    });
  });

  test('a response over the size limit is a failure', async () => {
    const { source } = harness([pod('a', { ip: '10.1.2.3' })], { limits: { bytes: 1000 } });
    serve('10.1.2.3', `${'# padding\n'.repeat(200)}${h(1, 1, 1, 1)}`);
    expect(await source.observe(workload, policy())).toMatchObject({
      unavailable: true,
      reason: expect.stringContaining('larger than 1000 bytes'),
    });
  });

  test('a pod past a limit is refused for that scrape, the limit named, nothing of its text quoted', async () => {
    // One label set with MAX_BUCKET_BOUNDS + 1 finite bounds (and +Inf), the route a secret.
    const hostile = exposition([
      {
        labels: 'route="SECRET"',
        buckets: [
          ...Array.from({ length: MAX_BUCKET_BOUNDS + 1 }, (_, i): [string, number] => [`${i / 1000}`, i]),
          [INF, MAX_BUCKET_BOUNDS + 1],
        ],
      },
    ]);
    const reason = `GET http://10.1.2.3:8080/metrics: refused: http_request_duration_seconds_bucket has more than ${MAX_BUCKET_BOUNDS} distinct le bounds (the limit per pod)`;
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' }), pod('b', { ip: '10.1.2.4' })]);
    serve('10.1.2.3', h(0, 0, 0, 0));
    serve('10.1.2.4', h(0, 0, 0, 0));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', hostile);
    serve('10.1.2.4', h(10, 10, 10, 10));
    // b alone: a's refused scrape adds nothing, so no bucket of it can skew the percentile.
    expect(await source.observe(workload, policy())).toMatchObject({ known: true, samples: 10 });
    expect(source.lastScrape('shop', 'web')?.errors).toEqual([{ pod: 'a', reason }]);

    const alone = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', hostile);
    const observation = await alone.source.observe(workload, policy());
    expect(observation).toEqual({
      known: false,
      unavailable: true,
      source: 'Scrape',
      reason: `none of 1 pods answered: a: ${reason}`,
    });
    expect(JSON.stringify(observation)).not.toContain('SECRET');

    // Without the limit the same body is accepted, every bound of it kept.
    const raised = harness([pod('a', { ip: '10.1.2.3' })], { limits: { bounds: 2 * MAX_BUCKET_BOUNDS } });
    serve('10.1.2.3', hostile);
    await raised.source.observe(workload, policy());
    expect(raised.source.lastScrape('shop', 'web')).toMatchObject({ answered: 1, errors: [] });
  });

  test(`a pod keeps at most MAX_SNAPSHOTS_PER_POD (${MAX_SNAPSHOTS_PER_POD}) snapshots`, async () => {
    let total = 0;
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })], {
      fetch: async () => new Response(h(total, total, total, total)),
    });
    for (let i = 0; i < MAX_SNAPSHOTS_PER_POD + 20; i++) {
      clock.t += 15_000;
      total += 10;
      await source.observe(workload, policy({ window: '1h' }));
    }
    expect(source.size().snapshots).toBe(MAX_SNAPSHOTS_PER_POD);
    // Thinned, not truncated: every request since the first scrape still counts.
    expect(await source.observe(workload, policy({ window: '1h' }))).toMatchObject({
      samples: total - 10,
    });
  });

  test('a source that throws (the pod cache) is unavailable, never a rejection', async () => {
    const source = new ScrapeSource({
      pods: () => {
        throw new Error('cache not synced');
      },
      timeoutMs: 100,
    });
    expect(await source.observe(workload, policy())).toEqual({
      known: false,
      unavailable: true,
      source: 'Scrape',
      reason: 'scrape failed: cache not synced',
    });
  });

  test('at most `concurrency` pods of a workload are scraped at a time', async () => {
    let inFlight = 0;
    let most = 0;
    const pods = Array.from({ length: 10 }, (_, i) => pod(`p${i}`, { ip: `10.1.2.${i + 1}` }));
    const { source } = harness(pods, {
      concurrency: 4,
      fetch: async () => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 5));
        inFlight--;
        return new Response(h(1, 1, 1, 1));
      },
    });
    await source.observe(workload, policy());
    expect(most).toBe(4);
    expect(source.lastScrape('shop', 'web')).toMatchObject({ pods: 10, answered: 10 });
  });
});

describe('ScrapeSource: parsing real expositions', () => {
  test("demo-service's own /metrics (prom-client, every route, default metrics around it)", async () => {
    const metrics = createMetrics();
    const observe = (route: string, seconds: number, times: number) => {
      for (let i = 0; i < times; i++)
        metrics.requestDuration.observe({ method: 'GET', route, status_code: '200' }, seconds);
    };
    observe('/work', 0.03, 5);
    const { source, clock } = harness([pod('demo', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', await metrics.registry.metrics());
    await source.observe(workload, policy());

    observe('/work', 0.015, 80);
    observe('/work', 0.3, 15);
    observe('/work', 3, 4);
    observe('/readyz', 0.0004, 1);
    clock.t += MIN;
    const text = await metrics.registry.metrics();
    expect(text).toContain('nodejs_heap_size_total_bytes');
    serve('10.1.2.3', text);
    const observation = await source.observe(workload, policy({ percentile: 0.95 }));
    metrics.registry.clear();

    // The same 100 requests, bucketed with demo-service's own bounds.
    const requests = [...Array(80).fill(0.015), ...Array(15).fill(0.3), ...Array(4).fill(3), 0.0004];
    const expected = bucketQuantile(0.95, [
      ...durationBuckets.map((le) => ({ le, count: requests.filter((s) => s <= le).length })),
      { le: Number.POSITIVE_INFINITY, count: requests.length },
    ]);
    expect(expected).toMatchObject({ ok: true });
    expect(observation).toMatchObject({
      known: true,
      samples: 100,
      seconds: expect.closeTo((expected as { value: number }).value, 10),
    });
  });

  test("client_golang's /metrics (promhttp, Go runtime metrics around it): the same latency as its buckets give", async () => {
    const { source, clock } = harness([pod('go', { ip: '10.1.2.3' })]);
    // The same process a minute earlier, before any request.
    serve('10.1.2.3', GO_BODY.replace(/(_bucket\{[^}]*\}) \S+/g, '$1 0'));
    await source.observe(workload, policy());
    clock.t += MIN;
    serve('10.1.2.3', GO_BODY);
    const expected = bucketQuantile(
      0.99,
      GO_SUMS.map(([le, count]) => ({ le, count })),
    );
    expect(expected).toMatchObject({ ok: true, atLeast: false });
    expect(await source.observe(workload, policy({ percentile: 0.99 }))).toEqual({
      known: true,
      source: 'Scrape',
      seconds: (expected as { value: number }).value,
      samples: 1_250_009,
      percentile: 0.99,
      window: '10m',
    });
  });

  test("the operator's own scrapes (a label equal to the scrape path) are not the workload's traffic", async () => {
    const metrics = createMetrics();
    const observe = (route: string, seconds: number, times: number) => {
      for (let i = 0; i < times; i++)
        metrics.requestDuration.observe({ method: 'GET', route, status_code: '200' }, seconds);
    };
    observe('/work', 3, 1);
    const { source, clock } = harness([pod('demo', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', await metrics.registry.metrics());
    await source.observe(workload, policy());
    // 30 slow requests and 300 fast scrapes of /metrics by the operator itself.
    observe('/work', 3, 30);
    observe('/metrics', 0.002, 300);
    clock.t += MIN;
    serve('10.1.2.3', await metrics.registry.metrics());
    const observation = await source.observe(workload, policy({ percentile: 0.5, minSamples: 10 }));
    metrics.registry.clear();
    // Only the 30 /work requests count: the median is a slow one, in the (2, 5] bucket.
    expect(observation).toMatchObject({ known: true, samples: 30 });
    expect((observation as { seconds: number }).seconds).toBeGreaterThan(2);
  });

  test('colons in the name, escapes and braces in labels, timestamps, NaN elsewhere, le spellings, CRLF', async () => {
    const metric = 'job:request_seconds';
    const body = (n: number) =>
      [
        '# HELP go_gc_duration_seconds A summary.',
        '# TYPE go_gc_duration_seconds summary',
        'go_gc_duration_seconds{quantile="0.5"} NaN',
        'weird_gauge -Inf',
        `# TYPE ${metric} histogram`,
        `${metric}_bucket{route="/users/{id}",msg="say \\"hi\\"\\n",le="1e-1"} ${n} 1700000000000`,
        `${metric}_bucket{route="/users/{id}",msg="say \\"hi\\"\\n",le="+Inf"} ${2 * n} 1700000000000`,
        `${metric}_bucket{route="/b",le="0.10"} ${n}`,
        `${metric}_bucket{route="/b",le="Inf"} ${2 * n}`,
        `${metric}_bucket_total 3`,
        `${metric}_count{route="/b"} ${2 * n}`,
        '',
      ].join('\r\n');
    const { source, clock } = harness([pod('a', { ip: '10.1.2.3' })]);
    serve('10.1.2.3', body(0));
    await source.observe(workload, policy({ metric }));
    clock.t += MIN;
    serve('10.1.2.3', body(10));
    // 20 <= 0.1, 40 in all: the median is 0.1 exactly; p90 is in +Inf.
    expect(await source.observe(workload, policy({ metric, percentile: 0.5 }))).toMatchObject({
      known: true,
      samples: 40,
      seconds: 0.1,
    });
  });
});
