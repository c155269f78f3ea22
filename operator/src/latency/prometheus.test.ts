import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { generatePki } from '../../../test/cluster/pki.ts';
import { type ObservedLatencyPolicy, ObservedLatencyPolicySchema } from '../api/policy.ts';
import type { LatencyObservation } from '../policy/types.ts';
import { bucketQuantile } from './histogram.ts';
import { escapeRegex, type HistogramSpec, histogramSpecs } from './presets.ts';
import {
  buildBucketQuery,
  escapePromQLString,
  groupedBucketQuery,
  NO_PROMETHEUS_URL,
  PrometheusSource,
  podNameRegex,
  queryChunks,
  renderQueryTemplate,
} from './prometheus.ts';
import type { Workload } from './source.ts';

const PROM = 'http://prom.test:9090';
/** The https Prometheus the token tests configure: the bearer token is only sent over https. */
const PROM_TLS = 'https://prom.test';
const workload: Workload = { namespace: 'shop', name: 'checkout', podLabels: { app: 'checkout' } };
/** The histogram a policy names by `metric` alone. */
const custom = (metric: string): HistogramSpec => histogramSpecs({ metric })[0] as HistogramSpec;
/** Series whose route is Prometheus's own scrape path are left out, in every common route label. */
const NOT_METRICS = ['http_route', 'uri', 'path', 'handler', 'route', 'endpoint']
  .map((label) => `${label}!~"/metrics"`)
  .join(', ');
const BUILT_IN = `sum by (le) (increase(http_request_duration_seconds_bucket{namespace="shop", pod=~"checkout-[a-z0-9]+-[a-z0-9]+", ${NOT_METRICS}}[1h]))`;

function policy(overrides: Record<string, unknown> = {}): ObservedLatencyPolicy {
  return ObservedLatencyPolicySchema.parse({ source: 'Prometheus', ...overrides });
}

/** An instant-query answer: one series per [le, count]. */
function vector(pairs: [string, string][]) {
  return {
    status: 'success',
    data: {
      resultType: 'vector',
      result: pairs.map(([le, count]) => ({ metric: { le }, value: [1_750_000_000.123, count] })),
    },
  };
}

const json = { 'content-type': 'application/json' };
const reasonOf = (o: LatencyObservation | undefined) => (o && !o.known ? o.reason : '');
/** The default Prometheus's next answer to an instant query. */
const answer = (...reply: Parameters<nock.Interceptor['reply']>) =>
  nock(PROM)
    .get('/api/v1/query')
    .query(true)
    .reply(...reply);
const healthy: [string, string][] = [
  ['0.1', '500'],
  ['0.5', '900'],
  ['1', '990'],
  ['2.5', '1000'],
  ['+Inf', '1000'],
];

let dir: string;
beforeAll(async () => {
  nock.disableNetConnect();
  dir = await mkdtemp(join(tmpdir(), 'prometheus-source-'));
});
afterEach(() => {
  nock.cleanAll();
});
afterAll(async () => {
  nock.enableNetConnect();
  await rm(dir, { recursive: true, force: true });
});

/** The query string of a request nock saw, decoded, keyed by parameter. */
function params(uri: string): [string, string][] {
  return [...new URL(uri, PROM).searchParams.entries()];
}

/** A native histogram (schema 0), as the query API returns it: 900 requests in (0.5, 1] s, 100 in (1, 2] s. */
const SCHEMA0_HISTOGRAM = {
  count: '1000',
  sum: '800',
  buckets: [
    [0, '0.5', '1', '900'],
    [0, '1', '2', '100'],
  ],
};

describe('buildBucketQuery', () => {
  test('the per-le increase over the window, pods selected by namespace and pod name', () => {
    expect(
      buildBucketQuery({
        namespace: 'shop',
        deployment: 'checkout',
        spec: custom('http_request_duration_seconds'),
        window: '1h',
        excludedPaths: ['/metrics'],
      }),
    ).toBe(BUILT_IN);
  });

  test('label values are escaped for a PromQL string, the name for a regex first', () => {
    const query = buildBucketQuery({
      namespace: 'a"b\\c',
      deployment: 'web.v2',
      spec: custom('m'),
      window: '5m',
      excludedPaths: [],
    });
    // The namespace: quote and backslash escaped.
    expect(query).toContain('namespace="a\\"b\\\\c"');
    // The dot of web.v2 is a literal in the regex (\.) and that backslash is escaped in the string.
    expect(query).toContain('pod=~"web\\\\.v2-[a-z0-9]+-[a-z0-9]+"');
    // Negative controls: neither value appears unescaped.
    expect(query).not.toContain('namespace="a"b');
    expect(query).not.toContain('pod=~"web.v2-');
  });

  test('escapePromQLString and escapeRegex', () => {
    expect(escapePromQLString('plain-name')).toBe('plain-name');
    expect(escapePromQLString('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    expect(escapeRegex('a.b+c*d?e(f)g|h[i]j{k}l^m$n\\o-p')).toBe(
      'a\\.b\\+c\\*d\\?e\\(f\\)g\\|h\\[i\\]j\\{k\\}l\\^m\\$n\\\\o-p',
    );
  });
});

describe('podNameRegex', () => {
  // PromQL's =~ is fully anchored; this pattern is in the RE2 subset JavaScript shares.
  const matches = (deployment: string, pod: string) =>
    new RegExp(`^(?:${podNameRegex(deployment)})$`).test(pod);
  /** The pod name kube-apiserver generates for ReplicaSet <deployment>-<hash>: prefix cut to 58. */
  const podName = (deployment: string, hash: string) => `${`${deployment}-${hash}-`.slice(0, 58)}x7k2q`;

  test("matches the Deployment's pods and not a Deployment whose name extends it", () => {
    expect(matches('checkout', 'checkout-7d9f8b6c5d-x7k2q')).toBe(true);
    expect(matches('checkout', 'checkout-api-7d9f8b6c5d-x7k2q')).toBe(false);
    expect(matches('checkout', 'checkout-7d9f8b6c5d')).toBe(false);
    expect(matches('web.v2', 'webxv2-7d9f8b6c5d-x7k2q')).toBe(false);
    // Short names have the one form only.
    expect(podNameRegex('checkout')).not.toContain('|');
  });

  test('names long enough for the apiserver to cut the generated pod name still match', () => {
    for (const length of [46, 47, 50, 56, 57, 58, 63, 100]) {
      const deployment = `${'a'.repeat(length - 1)}z`;
      for (const hash of ['7d9f8b6c5d', '58d9f6c5']) {
        const pod = podName(deployment, hash);
        expect(pod.length).toBeLessThanOrEqual(63);
        expect(matches(deployment, pod), `${deployment} ${pod}`).toBe(true);
      }
    }
    // The cut form is exactly 63 characters: a shorter name with the same prefix is not a pod of it.
    const long = 'b'.repeat(60);
    expect(matches(long, `${'b'.repeat(58)}x7k2`)).toBe(false);
  });
});

describe('renderQueryTemplate', () => {
  const values = {
    namespace: 'shop',
    deployment: 'check"out',
    metric: 'rpc_seconds',
    percentile: '0.95',
    window: '30m',
  };

  test('substitutes every placeholder, repeated or spaced, values escaped', () => {
    const rendered = renderQueryTemplate(
      'sum by (le) (increase({{metric}}_bucket{namespace="{{namespace}}", service="{{ deployment }}"}[{{window}}])) # {{percentile}} {{namespace}}',
      values,
    );
    expect(rendered).toEqual({
      ok: true,
      query:
        'sum by (le) (increase(rpc_seconds_bucket{namespace="shop", service="check\\"out"}[30m])) # 0.95 shop',
    });
  });

  test('an unknown placeholder is an error, not text sent to Prometheus', () => {
    expect(renderQueryTemplate('x{job="{{job}}", ns="{{namespace}}"}', values)).toEqual({
      ok: false,
      reason: expect.stringContaining('unknown placeholder(s) {{job}}'),
    });
  });
});

describe('PrometheusSource', () => {
  const source = (options: Partial<ConstructorParameters<typeof PrometheusSource>[0]> = {}) =>
    new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000, ...options });

  test('sends one instant query with the built-in query, URL-encoded, and no time', async () => {
    const seen: string[] = [];
    const scope = answer(200, (request: Request) => {
      // nock 15 passes the intercepted request as a Fetch Request, full URL included.
      seen.push(request.url.slice(PROM.length));
      return vector(healthy);
    });
    const observation = await source().observe(workload, policy());
    expect(scope.isDone()).toBe(true);
    expect(seen).toHaveLength(1);
    expect(params(seen[0] as string)).toEqual([['query', BUILT_IN]]);
    // The bytes on the wire (form encoding: space as +).
    expect(seen[0]).toMatch(
      /^\/api\/v1\/query\?query=sum\+by\+%28le%29\+%28increase%28http_request_duration_seconds_bucket%7Bnamespace%3D%22shop%22%2C\+pod%3D%7E%22checkout-%5Ba-z0-9%5D%2B-%5Ba-z0-9%5D%2B%22%2C\+http_route%21%7E%22%2Fmetrics%22/,
    );
    const expected = bucketQuantile(0.99, [
      { le: 0.1, count: 500 },
      { le: 0.5, count: 900 },
      { le: 1, count: 990 },
      { le: 2.5, count: 1000 },
      { le: Number.POSITIVE_INFINITY, count: 1000 },
    ]);
    expect(expected.ok && expected.value).toBe(1);
    expect(observation).toEqual({
      known: true,
      seconds: 1,
      samples: 1000,
      percentile: 0.99,
      window: '1h',
      source: 'Prometheus',
      atLeast: false,
    });
  });

  test("the built-in query leaves out the routes of the Deployment's probes and Prometheus's scrapes; a preset's own exclusions too", async () => {
    const probed = { ...workload, probePaths: ['/readyz', '/live.z'] };
    const seen: string[] = [];
    const record = (request: Request) => {
      seen.push(new URL(request.url).searchParams.get('query') ?? '');
      return vector(healthy);
    };
    answer(200, record);
    expect(await source().observe(probed, policy())).toMatchObject({ known: true });
    // Every common route label, the paths as regex literals, sorted.
    for (const label of ['http_route', 'uri', 'path', 'handler', 'route', 'endpoint'])
      expect(seen[0]).toContain(`${label}!~"/live\\\\.z|/metrics|/readyz"`);
    answer(200, record);
    await source().observe(probed, policy({ preset: 'Micrometer' }));
    expect(seen[1]).toContain('uri!~"/live\\\\.z|/metrics|/readyz|/actuator(/.*)?"');
    expect(seen[1]).not.toContain('route!~');
    answer(200, record);
    await source().observe(probed, policy({ preset: 'Linkerd' }));
    // Linkerd: its newer histogram first, probes on their own route.
    expect(seen[2]).toContain(
      'inbound_http_request_duration_seconds_bucket{namespace="shop", deployment="checkout", route_name!="probe"}',
    );
    // Istio has no route label, and needs none: the kubelet's probes go to the agent. The
    // scrape's namespace is the workload's, and the one the sidecar writes must agree.
    answer(200, record);
    await source().observe(probed, policy({ preset: 'Istio' }));
    expect(seen[3]).toBe(
      'sum by (le) (increase(istio_request_duration_milliseconds_bucket{namespace="shop", destination_workload="checkout", destination_workload_namespace="shop", reporter="destination"}[1h]))',
    );
  });

  test('a histogram in milliseconds (its name says so, or unit) is reported in seconds; its seconds twin gives the same', async () => {
    const ms: [string, string][] = healthy.map(([le, count]) => [
      le === '+Inf' ? le : String(Number(le) * 1000),
      count,
    ]);
    answer(200, vector(ms));
    const byName = await source().observe(
      workload,
      policy({ metric: 'istio_request_duration_milliseconds' }),
    );
    expect(byName).toMatchObject({ known: true, seconds: 1, samples: 1000 });
    answer(200, vector(ms));
    const byField = await source().observe(
      workload,
      policy({ metric: 'envoy_cluster_upstream_rq_time', unit: 'Milliseconds' }),
    );
    expect(byField).toMatchObject({ known: true, seconds: 1 });
    // Negative control: the same bounds read as seconds are a thousand times longer.
    answer(200, vector(ms));
    expect(
      await source().observe(workload, policy({ metric: 'envoy_cluster_upstream_rq_time' })),
    ).toMatchObject({
      seconds: 1000,
    });
  });

  test("the policy's URL wins over the default, a path prefix and trailing slash are kept", async () => {
    const other = nock('https://other.test')
      .get('/prometheus/api/v1/query')
      .query(true)
      .reply(200, vector(healthy));
    const defaultScope = answer(200, vector(healthy));
    const observation = await source().observe(
      workload,
      policy({ prometheus: { url: 'https://other.test/prometheus/' } }),
    );
    expect(observation.known).toBe(true);
    expect(other.isDone()).toBe(true);
    // Negative control: the default Prometheus was not asked.
    expect(defaultScope.isDone()).toBe(false);
  });

  test('no URL anywhere: unavailable, and nothing is asked', async () => {
    let asked = 0;
    const observation = await new PrometheusSource({
      timeoutMs: 1000,
      httpGet: async () => {
        asked += 1;
        return { status: 200, body: JSON.stringify(vector(healthy)) };
      },
    }).observe(workload, policy());
    expect(observation).toEqual({
      known: false,
      unavailable: true,
      source: 'Prometheus',
      reason: NO_PROMETHEUS_URL,
    });
    expect(observation).toMatchObject({
      reason: 'no Prometheus URL: set observedLatency.prometheus.url or --prometheus-url',
    });
    expect(asked).toBe(0);
  });

  test('the query template replaces the built-in query, values substituted and escaped', async () => {
    const seen: string[] = [];
    answer(200, (request: Request) => {
      seen.push(request.url.slice(PROM.length));
      return vector(healthy);
    });
    const template =
      'sum by (le) (increase({{metric}}_bucket{namespace="{{namespace}}", service="{{deployment}}", q="{{percentile}}"}[{{window}}]))';
    const observation = await source().observe(
      { ...workload, namespace: 'sh"op' },
      policy({ query: template, metric: 'rpc_seconds', window: '6h', percentile: 0.9 }),
    );
    expect(params(seen[0] as string)).toEqual([
      [
        'query',
        'sum by (le) (increase(rpc_seconds_bucket{namespace="sh\\"op", service="checkout", q="0.9"}[6h]))',
      ],
    ]);
    expect(observation).toMatchObject({ known: true, percentile: 0.9, window: '6h' });
  });

  test('a template with an unknown placeholder: unknown, not unavailable, nothing asked', async () => {
    const scope = answer(200, vector(healthy));
    const observation = await source().observe(workload, policy({ query: 'x{job="{{job}}"}' }));
    expect(observation).toMatchObject({ known: false, reason: expect.stringContaining('{{job}}') });
    expect(observation).not.toHaveProperty('unavailable');
    expect(scope.isDone()).toBe(false);
  });

  test('the bearer token is read from its file at each request (rotation)', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'token-one\n');
    const prometheus = source({ defaultUrl: PROM_TLS, bearerTokenFile: file });
    const first = nock(PROM_TLS, { reqheaders: { authorization: 'Bearer token-one' } })
      .get('/api/v1/query')
      .query(true)
      .reply(200, vector(healthy));
    expect((await prometheus.observe(workload, policy())).known).toBe(true);
    expect(first.isDone()).toBe(true);

    await writeFile(file, 'token-two');
    const second = nock(PROM_TLS, { reqheaders: { authorization: 'Bearer token-two' } })
      .get('/api/v1/query')
      .query(true)
      .reply(200, vector(healthy));
    expect((await prometheus.observe(workload, policy())).known).toBe(true);
    expect(second.isDone()).toBe(true);
  });

  test('without a token file no Authorization header is sent', async () => {
    const scope = nock(PROM, { badheaders: ['authorization'] })
      .get('/api/v1/query')
      .query(true)
      .reply(200, vector(healthy));
    expect((await source().observe(workload, policy())).known).toBe(true);
    expect(scope.isDone()).toBe(true);
  });

  test('an unreadable token file: unavailable, naming the file', async () => {
    const scope = nock(PROM_TLS).get('/api/v1/query').query(true).reply(200, vector(healthy));
    const file = join(dir, 'missing-token');
    const observation = await source({ defaultUrl: PROM_TLS, bearerTokenFile: file }).observe(
      workload,
      policy(),
    );
    expect(observation).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringContaining(`cannot read the bearer token file ${file}: ENOENT`),
    });
    expect(scope.isDone()).toBe(false);
  });

  test('a percentile in the +Inf bucket: the largest finite bound, atLeast', async () => {
    answer(
      200,
      vector([
        ['0.5', '100'],
        ['2.5', '950'],
        ['+Inf', '1000'],
      ]),
    );
    expect(await source().observe(workload, policy())).toEqual({
      known: true,
      seconds: 2.5,
      samples: 1000,
      percentile: 0.99,
      window: '1h',
      source: 'Prometheus',
      atLeast: true,
    });
  });

  test('too few samples: still known, the (extrapolated) count rounded down and passed through', async () => {
    answer(
      200,
      vector([
        ['0.1', '20.35'],
        ['1', '42.7'],
        ['+Inf', '42.7'],
      ]),
    );
    const observation = await source().observe(workload, policy({ minSamples: 100 }));
    expect(observation).toMatchObject({ known: true, samples: 42 });
    // rank 0.99 x 42.7 falls in (0.1, 1]: interpolated there, as histogram_quantile does.
    const expected = 0.1 + 0.9 * ((0.99 * 42.7 - 20.35) / (42.7 - 20.35));
    expect((observation as { seconds: number }).seconds).toBeCloseTo(expected, 10);
  });

  test('no series: unknown with the documented reason, not unavailable', async () => {
    // The classic buckets, then the native histogram: neither is there.
    answer(200, vector([]));
    answer(200, vector([]));
    const observation = await source().observe(workload, policy());
    expect(observation).toMatchObject({
      known: false,
      source: 'Prometheus',
      reason: expect.stringMatching(
        /^no http_request_duration_seconds histogram for shop\/checkout in the last 1h: neither http_request_duration_seconds_bucket series nor a native histogram \(Prometheus http:\/\/prom\.test:9090\/api\/v1\/query, query sum by \(le\)/,
      ),
    });
    expect(observation).not.toHaveProperty('unavailable');
  });

  test('no requests in the window: unknown with samples 0', async () => {
    answer(
      200,
      vector([
        ['0.1', '0'],
        ['+Inf', '0'],
      ]),
    );
    const observation = await source().observe(workload, policy());
    expect(observation).toMatchObject({
      known: false,
      samples: 0,
      reason: expect.stringContaining('no requests'),
    });
    expect(observation).not.toHaveProperty('unavailable');
  });

  test('no le="+Inf" series: histogram incomplete, not unavailable', async () => {
    answer(
      200,
      vector([
        ['0.1', '10'],
        ['1', '20'],
      ]),
    );
    const observation = await source().observe(workload, policy());
    expect(observation).toMatchObject({
      known: false,
      reason: expect.stringContaining('histogram incomplete'),
    });
    expect(observation).not.toHaveProperty('unavailable');
  });

  test('a query returning a native histogram (its increase over the window): the quantile as histogram_quantile computes it', async () => {
    const native = (histogram: unknown, extra: object[] = []) => ({
      status: 'success',
      data: {
        resultType: 'vector',
        result: [{ metric: {}, histogram: [1_750_000_000.1, histogram] }, ...extra],
      },
    });
    const query = 'sum(increase({{metric}}{namespace="{{namespace}}"}[{{window}}]))';
    const histogram = SCHEMA0_HISTOGRAM;
    answer(200, native(histogram));
    const observed = await source().observe(workload, policy({ query }));
    expect(observed).toMatchObject({ known: true, samples: 1000, atLeast: false, source: 'Prometheus' });
    // From the top: 10 of the 100 in (1, 2], log2-interpolated.
    expect((observed as { seconds: number }).seconds).toBeCloseTo(2 ** 0.9, 12);
    // The same histogram in milliseconds (Istio's name): the same seconds.
    const ms = {
      count: '1000',
      sum: '800000',
      buckets: [
        [0, '512', '1024', '900'],
        [0, '1024', '2048', '100'],
      ],
    };
    answer(200, native(ms));
    const inMs = await source().observe(
      workload,
      policy({ query, metric: 'istio_request_duration_milliseconds' }),
    );
    expect((inMs as { seconds: number }).seconds).toBeCloseTo((2 ** 0.9 * 1024) / 1000, 9);
    // Unreadable, or mixed with le series: unknown, in the operator's words.
    answer(200, native({ count: 'many', sum: '1', buckets: [] }));
    expect(reasonOf(await source().observe(workload, policy({ query })))).toContain(
      'native histogram that cannot be read',
    );
    answer(200, native(histogram, [{ metric: { le: '+Inf' }, value: [1, '3'] }]));
    expect(reasonOf(await source().observe(workload, policy({ query })))).toContain(
      'one histogram per workload',
    );
    answer(200, native({ count: '0', sum: '0', buckets: [] }));
    expect(await source().observe(workload, policy({ query }))).toMatchObject({ known: false, samples: 0 });
  });

  test('the built-in query reads a native histogram where the classic buckets are absent (OTLP, protobuf scrape, NHCB)', async () => {
    const seen: string[] = [];
    const reply = (result: unknown[]) => (request: Request) => {
      seen.push(new URL(request.url).searchParams.get('query') ?? '');
      return { status: 'success', data: { resultType: 'vector', result } };
    };
    // As an OpenTelemetry exponential histogram arrives.
    const histogram = SCHEMA0_HISTOGRAM;
    answer(200, reply([]));
    answer(200, reply([{ metric: {}, histogram: [1_750_000_000.1, histogram] }]));
    const observed = await source().observe(workload, policy({ preset: 'OpenTelemetry' }));
    expect(observed).toMatchObject({ known: true, samples: 1000, preset: 'OpenTelemetry' });
    expect((observed as { seconds: number }).seconds).toBeCloseTo(2 ** 0.9, 12);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toContain('increase(http_server_request_duration_seconds_bucket{namespace="shop"');
    // The native form: the metric's own name, no le and no quantile (a summary's series).
    expect(seen[1]).toContain(
      'increase(http_server_request_duration_seconds{namespace="shop", pod=~"checkout-[a-z0-9]+-[a-z0-9]+", http_route!~"/metrics", le="", quantile=""}[1h])',
    );
    // Negative control: classic buckets found, the native form is not asked for.
    seen.length = 0;
    answer(200, reply([...vector(healthy).data.result]));
    expect(await source().observe(workload, policy({ preset: 'OpenTelemetry' }))).toMatchObject({
      known: true,
      samples: 1000,
    });
    expect(seen).toHaveLength(1);
  });

  test('a result that is not per-le counts: unknown, saying what the query must return', async () => {
    answer(200, {
      status: 'success',
      data: { resultType: 'vector', result: [{ metric: {}, value: [1, '0.42'] }] },
    });
    const noLe = await source().observe(workload, policy({ query: 'histogram_quantile(0.99, x)' }));
    expect(noLe).toMatchObject({ known: false, reason: expect.stringContaining('without an le label') });
    expect(noLe).not.toHaveProperty('unavailable');

    answer(200, { status: 'success', data: { resultType: 'scalar', result: [1, '0.42'] } });
    const scalar = await source().observe(workload, policy({ query: 'scalar(x)' }));
    expect(scalar).toMatchObject({
      known: false,
      reason: expect.stringContaining('returned a scalar, not a vector'),
    });
    expect(scalar).not.toHaveProperty('unavailable');

    answer(200, { status: 'success', data: { resultType: 'exotic<b>', result: [] } });
    expect(reasonOf(await source().observe(workload, policy()))).toMatch(
      /^the query returned a result of an unrecognized type, not a vector/,
    );
  });

  test("an error body with 4xx or 5xx: unavailable, with the status, the API's errorType, URL and query; not its message", async () => {
    answer(503, { status: 'error', errorType: 'unavailable', error: 'too many queries' }, json);
    const observation = await source().observe(workload, policy());
    expect(observation).toMatchObject({ known: false, unavailable: true, source: 'Prometheus' });
    const reason = (observation as { reason: string }).reason;
    expect(reason).toMatch(
      /^Prometheus answered HTTP 503 Service Unavailable: a Prometheus API error unavailable \(Prometheus is unavailable\) \(Prometheus http:\/\/prom\.test:9090\/api\/v1\/query, query /,
    );
    expect(reason).toContain(BUILT_IN);
    expect(reason).not.toContain('too many queries');

    answer(400, { status: 'error', errorType: 'bad_data', error: '1:5: parse error' }, json);
    const badData = reasonOf(await source().observe(workload, policy({ query: 'sum(' })));
    expect(badData).toContain(
      'HTTP 400 Bad Request: a Prometheus API error bad_data (the query or a parameter is invalid (run the query in Prometheus to see why))',
    );
    expect(badData).not.toContain('parse error');

    // An errorType the API does not have is not quoted either.
    answer(422, { status: 'error', errorType: 'see https://evil.test', error: 'x' }, json);
    const odd = reasonOf(await source().observe(workload, policy()));
    expect(odd).toContain('HTTP 422 Unprocessable Entity: a Prometheus API error of an unrecognized type');
    expect(odd).not.toContain('evil.test');
  });

  test('an HTTP error without an API body: unavailable, its content type, not the body', async () => {
    answer(502, '<html>Bad Gateway</html>', { 'content-type': 'text/html; charset=utf-8' });
    const observation = await source().observe(workload, policy());
    expect(observation).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringMatching(
        /^Prometheus answered HTTP 502 Bad Gateway: a body \(content type text\/html\) that is not a Prometheus API response \(Prometheus /,
      ),
    });
    expect(reasonOf(observation)).not.toContain('<html>');
  });

  test('status "error" in a 200 body: unavailable', async () => {
    answer(200, { status: 'error', errorType: 'timeout', error: 'query timed out' }, json);
    expect(await source().observe(workload, policy())).toMatchObject({
      unavailable: true,
      reason: expect.stringContaining(
        'HTTP 200 OK with a Prometheus API error timeout (the query timed out in Prometheus)',
      ),
    });
  });

  test('malformed bodies: not JSON, or JSON that is not an API response', async () => {
    answer(200, '<html>login</html>', { 'content-type': 'text/html' });
    const html = await source().observe(workload, policy());
    expect(html).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringContaining(
        'HTTP 200 OK with a body (content type text/html) that is not JSON: not a Prometheus API response',
      ),
    });
    expect(reasonOf(html)).not.toContain('login');
    answer(200, { hello: 'world' });
    expect(await source().observe(workload, policy())).toMatchObject({
      unavailable: true,
      reason: expect.stringContaining('with JSON that is not a Prometheus API response (status: '),
    });
    answer(200, {
      status: 'success',
      data: { resultType: 'vector', result: [{ metric: { le: '1' }, value: [1] }] },
    });
    const badVector = await source().observe(workload, policy());
    expect(badVector).toMatchObject({ known: false, reason: expect.stringContaining('malformed vector') });
  });

  test('a network error: unavailable', async () => {
    nock(PROM)
      .get('/api/v1/query')
      .query(true)
      // nock 15 emits an Error instance; a plain { code, message } object is never emitted.
      .replyWithError(Object.assign(new Error('connect refused'), { code: 'ECONNREFUSED' }));
    expect(await source().observe(workload, policy())).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringMatching(
        /^Prometheus could not be asked: ECONNREFUSED: connect refused \(Prometheus /,
      ),
    });
  });

  test('a reply slower than timeoutMs: unavailable, timed out', async () => {
    nock(PROM).get('/api/v1/query').query(true).delay(1000).reply(200, vector(healthy));
    const started = Date.now();
    const observation = await source({ timeoutMs: 100 }).observe(workload, policy());
    expect(Date.now() - started).toBeLessThan(900);
    expect(observation).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringContaining('did not answer within 100 ms'),
    });
  });

  test("the caller's signal aborts the query", async () => {
    nock(PROM).get('/api/v1/query').query(true).delay(1000).reply(200, vector(healthy));
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('shutting down')), 50);
    const observation = await source({ timeoutMs: 5000 }).observe(workload, policy(), controller.signal);
    expect(observation).toMatchObject({
      unavailable: true,
      reason: expect.stringContaining('aborted (Error: shutting down)'),
    });
  });

  test('credentials in the URL are used but never shown', async () => {
    const scope = nock('http://prom.test:9090', {
      reqheaders: { authorization: `Basic ${Buffer.from('user:s3cret').toString('base64')}` },
    })
      .get('/api/v1/query')
      .query(true)
      .reply(503, 'overloaded');
    const observation = await source({ defaultUrl: 'http://user:s3cret@prom.test:9090' }).observe(
      workload,
      policy(),
    );
    expect(scope.isDone()).toBe(true);
    expect(observation).toMatchObject({ unavailable: true });
    expect(JSON.stringify(observation)).not.toContain('s3cret');
    // Negative control: the same observation does name the host.
    expect(JSON.stringify(observation)).toContain('prom.test:9090');
  });
});

describe('the bearer token goes only to its origins, over https', () => {
  let file: string;
  beforeAll(async () => {
    file = join(dir, 'origin-token');
    await writeFile(file, 's3cret-token');
  });
  const withToken = { reqheaders: { authorization: 'Bearer s3cret-token' } };
  const withoutToken = { badheaders: ['authorization'] };
  const tokenSource = (options: Partial<ConstructorParameters<typeof PrometheusSource>[0]> = {}) =>
    new PrometheusSource({ defaultUrl: PROM_TLS, bearerTokenFile: file, timeoutMs: 2000, ...options });
  const at = (url: string) => policy({ prometheus: { url } });
  const source = (options: Partial<ConstructorParameters<typeof PrometheusSource>[0]> = {}) =>
    new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000, ...options });

  test('the origin of the default URL gets it, also named by a policy with its default port and a path', async () => {
    const scope = nock(PROM_TLS, withToken)
      .get('/api/v1/query')
      .query(true)
      .times(2)
      .reply(200, vector(healthy));
    expect((await tokenSource().observe(workload, policy())).known).toBe(true);
    const samePlace = await tokenSource().observe(workload, at('https://PROM.test:443/'));
    expect(samePlace.known).toBe(true);
    expect(scope.isDone()).toBe(true);
  });

  test.each([
    ['another port', 'https://prom.test:8443'],
    ['another host', 'https://other.test'],
    ['a subdomain', 'https://evil.prom.test'],
    ['http instead of https', 'http://prom.test'],
  ])('%s is queried without it (%s)', async (_title, url) => {
    const outside = nock(url, withoutToken).get('/api/v1/query').query(true).reply(200, vector(healthy));
    // Negative control: an interceptor that only matches with the token is left unused.
    const leaked = nock(url, withToken).get('/api/v1/query').query(true).reply(200, vector(healthy));
    expect((await tokenSource().observe(workload, at(url))).known).toBe(true);
    expect(outside.isDone()).toBe(true);
    expect(leaked.isDone()).toBe(false);
  });

  test('which URLs carry it, as handed to the HTTP client (nock cannot intercept http on port 443)', async () => {
    const sent: [string, string | undefined][] = [];
    const prometheus = tokenSource({
      tokenOrigins: ['https://thanos.test:10902'],
      httpGet: async (url, { headers }) => {
        sent.push([url.origin, headers.authorization]);
        return { status: 200, body: JSON.stringify(vector(healthy)) };
      },
    });
    for (const url of [
      'https://prom.test/x',
      'https://prom.test:443',
      'http://prom.test:443',
      'https://prom.test.',
      'https://thanos.test:10902',
      'https://thanos.test',
      'https://user:pw@prom.test',
    ]) {
      await prometheus.observe(workload, at(url));
    }
    const token = 'Bearer s3cret-token';
    expect(sent).toEqual([
      ['https://prom.test', token],
      ['https://prom.test', token],
      ['http://prom.test:443', undefined],
      ['https://prom.test.', undefined],
      ['https://thanos.test:10902', token],
      ['https://thanos.test', undefined],
      ['https://prom.test', token],
    ]);
  });

  test('--prometheus-token-origins adds origins, each exactly', async () => {
    const thanos = nock('https://thanos.test:10902', withToken)
      .get('/api/v1/query')
      .query(true)
      .reply(200, vector(healthy));
    const otherPort = nock('https://thanos.test', withoutToken)
      .get('/api/v1/query')
      .query(true)
      .reply(200, vector(healthy));
    const prometheus = tokenSource({ tokenOrigins: ['https://thanos.test:10902'] });
    expect((await prometheus.observe(workload, at('https://thanos.test:10902/'))).known).toBe(true);
    expect((await prometheus.observe(workload, at('https://thanos.test'))).known).toBe(true);
    expect(thanos.isDone()).toBe(true);
    expect(otherPort.isDone()).toBe(true);
  });

  test('a token origin reached over http: nothing is sent, and the reason says why', async () => {
    const scope = answer(200, vector(healthy));
    const refused = await tokenSource({ defaultUrl: PROM }).observe(workload, policy());
    expect(refused).toMatchObject({
      known: false,
      unavailable: true,
      reason: expect.stringMatching(
        /^not sent: the operator's bearer token is never sent over http: \(use https for http:\/\/prom\.test:9090\) \(Prometheus /,
      ),
    });
    expect(scope.isDone()).toBe(false);
    // Negative control: without a token file the same URL is asked.
    expect((await source({ defaultUrl: PROM }).observe(workload, policy())).known).toBe(true);
    expect(scope.isDone()).toBe(true);
  });

  test('401 and 403 say what the query carried', async () => {
    nock('https://other.test').get('/api/v1/query').query(true).reply(401, 'login at https://phish.test');
    const withheld = reasonOf(await tokenSource().observe(workload, at('https://other.test')));
    expect(withheld).toMatch(
      /^Prometheus answered HTTP 401 Unauthorized: a body \(no content type\) that is not a Prometheus API response; the query was sent without credentials: the operator's bearer token goes only to the origin of --prometheus-url and to --prometheus-token-origins, over https \(Prometheus https:\/\/other\.test\/api\/v1\/query, /,
    );
    expect(withheld).not.toContain('phish');

    nock(PROM_TLS, withToken).get('/api/v1/query').query(true).reply(403, 'no');
    expect(reasonOf(await tokenSource().observe(workload, policy()))).toContain(
      "HTTP 403 Forbidden: a body (no content type) that is not a Prometheus API response; the query carried the operator's bearer token (--prometheus-bearer-token-file)",
    );

    answer(401, '');
    expect(reasonOf(await source().observe(workload, policy()))).toContain(
      '; the query was sent without credentials (no --prometheus-bearer-token-file)',
    );
    // Negative control: another error status says nothing about credentials.
    answer(500, '');
    expect(reasonOf(await source().observe(workload, policy()))).not.toContain('credentials');
  });

  test.each([301, 302, 307, 308])(
    'a %i redirect is not followed, and the token does not travel',
    async (status) => {
      const first = nock(PROM_TLS, withToken)
        .get('/api/v1/query')
        .query(true)
        .reply(status, '', { location: 'https://evil.test/api/v1/query?query=x' });
      const elsewhere = nock('https://evil.test')
        .get('/api/v1/query')
        .query(true)
        .reply(200, vector(healthy));
      const observation = await tokenSource().observe(workload, policy());
      expect(first.isDone()).toBe(true);
      expect(elsewhere.isDone()).toBe(false);
      expect(observation).toMatchObject({ known: false, unavailable: true });
      expect(reasonOf(observation)).toContain(`HTTP ${status}`);
      expect(reasonOf(observation)).toContain('a redirect, which the operator does not follow');
      expect(reasonOf(observation)).not.toContain('evil.test');
    },
  );
});

describe('nothing the server wrote reaches a reason', () => {
  const MARK = 'zz-server-text-zz';
  const reply = (status: number, body: unknown, headers: Record<string, string> = json) => ({
    status,
    body,
    headers,
  });
  const series = (metric: Record<string, string>, value: string) => ({
    status: 'success',
    data: { resultType: 'vector', result: [{ metric, value: [1, value] }] },
  });
  test.each([
    ['an HTML error page', reply(500, `<html>${MARK}</html>`, { 'content-type': 'text/html' })],
    ['an API error message', reply(400, { status: 'error', errorType: 'bad_data', error: MARK })],
    ['an errorType', reply(422, { status: 'error', errorType: MARK, error: 'x' })],
    ['an error in a 200', reply(200, { status: 'error', errorType: 'execution', error: MARK })],
    ['a content type', reply(502, 'x', { 'content-type': `application/${MARK}` })],
    ['content-type parameters', reply(502, 'x', { 'content-type': `text/plain; charset=${MARK}` })],
    ['a 200 that is not JSON', reply(200, `{"${MARK}`)],
    ['JSON that is not the API', reply(200, { status: MARK })],
    ['a record key in a malformed vector', reply(200, series({ [MARK]: 1 as unknown as string }, '1'))],
    ['a result type', reply(200, { status: 'success', data: { resultType: MARK, result: [] } })],
    ['an le label', reply(200, series({ le: MARK }, '1'))],
    ['a sample value', reply(200, series({ le: '1' }, MARK))],
    ['a label name without le', reply(200, series({ [MARK]: 'v' }, '1'))],
    ['a 401 body', reply(401, MARK, { 'www-authenticate': MARK })],
    ['a redirect', reply(302, MARK, { location: `https://${MARK}.test/` })],
  ])('%s', async (_title, { status, body, headers }) => {
    answer(status, body as nock.Body, headers);
    const observation = await new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 }).observe(
      workload,
      policy(),
    );
    expect(observation.known).toBe(false);
    expect(reasonOf(observation)).toMatch(/^(Prometheus answered HTTP \d+|the query returned) /);
    expect(JSON.stringify(observation)).not.toContain(MARK);
  });

  test('negative control: text the operator was given (the query) is shown, so the check can see it', async () => {
    answer(500, 'x');
    const observation = await new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 }).observe(
      workload,
      policy({ query: `sum by (le) (${MARK.replaceAll('-', '_')}_bucket)` }),
    );
    expect(JSON.stringify(observation)).toContain(MARK.replaceAll('-', '_'));
  });
});

describe('PrometheusSource over real TLS', () => {
  test('trusts the CA file in addition to the default CAs; without it the certificate is refused', async () => {
    const pki = await generatePki([]);
    const server = https.createServer(
      { cert: pki.apiserver.cert, key: pki.apiserver.key },
      (_request, res) => {
        res.writeHead(200, json).end(JSON.stringify(vector(healthy)));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    nock.enableNetConnect('127.0.0.1');
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const caFile = join(dir, 'ca.pem');
      await writeFile(caFile, pki.ca.cert);
      const trusted = await new PrometheusSource({ defaultUrl: url, caFile, timeoutMs: 5000 }).observe(
        workload,
        policy(),
      );
      expect(trusted).toMatchObject({ known: true, seconds: 1, samples: 1000 });
      // Negative control: the same server without the CA file.
      const untrusted = await new PrometheusSource({ defaultUrl: url, timeoutMs: 5000 }).observe(
        workload,
        policy(),
      );
      expect(untrusted).toMatchObject({
        known: false,
        unavailable: true,
        reason: expect.stringMatching(/Prometheus could not be asked: .*certificate/i),
      });
    } finally {
      nock.disableNetConnect();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('grouped queries (one per policy and chunk of namespaces)', () => {
  /** One grouped-query answer series per [le, count], with these labels. */
  const perLe = (labels: Record<string, string>, pairs: [string, string][]) =>
    pairs.map(([le, count]) => ({ metric: { ...labels, le }, value: [1_750_000_000, count] }));
  /** The default Prometheus's next `times` answers: this vector; each query is pushed to `seen`. */
  /** Answers `times` queries with `result` (or what it gives for the query), recording each query. */
  const answerRecording = (seen: string[], result: unknown[] | ((query: string) => unknown[]), times = 1) =>
    nock(PROM)
      .get('/api/v1/query')
      .query(true)
      .times(times)
      .reply(200, (request: Request) => {
        const query = new URL(request.url).searchParams.get('query') ?? '';
        seen.push(query);
        return {
          status: 'success',
          data: { resultType: 'vector', result: typeof result === 'function' ? result(query) : result },
        };
      });

  const w = (namespace: string, name: string): Workload => ({ namespace, name, podLabels: { app: name } });

  test('groupedBucketQuery: per-bucket increase in the namespaces, workload read from the pod name, summed by namespace, workload, le', () => {
    expect(
      groupedBucketQuery({ namespaces: ['shop', 'a.b'], spec: custom('m'), window: '5m', excludedPaths: [] }),
    ).toBe(
      'sum by (namespace, workload, le) (label_replace(increase(m_bucket{namespace=~"a\\\\.b|shop"}[5m]), "workload", "$1", "pod", "(.+)-[a-z0-9]{1,10}-[a-z0-9]{5}"))',
    );
    expect(
      groupedBucketQuery({
        namespaces: ['shop'],
        deployments: ['web', 'api'],
        spec: custom('m'),
        window: '5m',
        excludedPaths: [],
      }),
    ).toContain('pod=~"(?:web|api)-[a-z0-9]{1,10}-[a-z0-9]{5}"');
  });

  test("a proxy's preset (IngressNginx, Envoy): each Deployment gets the series of the Services in front of it", async () => {
    const seen: string[] = [];
    answerRecording(seen, [
      // Service web: 100 requests, 90 within 0.5 s; Service api: 10, all slow.
      ...perLe({ namespace: 'shop', service: 'web' }, [
        ['0.5', '90'],
        ['1', '100'],
        ['+Inf', '100'],
      ]),
      ...perLe({ namespace: 'shop', service: 'api' }, [
        ['0.5', '0'],
        ['1', '0'],
        ['+Inf', '10'],
      ]),
    ]);
    const withServices = (name: string, services: string[]): Workload => ({ ...w('shop', name), services });
    const answers = await new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 }).observeMany(
      [
        withServices('web', ['web']),
        withServices('canary', ['web']),
        withServices('both', ['api', 'web']),
        w('shop', 'alone'),
      ],
      policy({ preset: 'IngressNginx', minSamples: 1, proxyNamespaces: ['ingress-nginx'] }),
    );
    expect(seen).toHaveLength(1);
    // Found by the Ingress's namespace as the scrape of the controller stores it
    // (exported_namespace), only in series scraped from the controller's own namespace.
    expect(seen[0]).toBe(
      'sum by (namespace, service, le) (label_replace(label_replace(increase(nginx_ingress_controller_request_duration_seconds_bucket{exported_namespace=~"shop", namespace=~"ingress-nginx"}[1h]), "namespace", "$1", "exported_namespace", "(.*)"), "service", "$1", "service", "(.*)"))',
    );
    // Two Deployments behind one Service both get its histogram; one behind two gets the sum.
    expect(answers.get('shop/web')).toMatchObject({ known: true, samples: 100, preset: 'IngressNginx' });
    expect(answers.get('shop/canary')).toEqual(answers.get('shop/web'));
    expect(answers.get('shop/both')).toMatchObject({ known: true, samples: 110, atLeast: true });
    expect((answers.get('shop/web') as { caveat?: string }).caveat).toContain('measured at ingress-nginx');
    expect(reasonOf(answers.get('shop/alone'))).toBe(
      "no Service selects the pods of shop/alone: preset IngressNginx finds a proxy's series by the Services in front of the workload",
    );
  });

  test("buildBucketQuery for a proxy's preset: the workload's Services, Envoy's cluster names; none without a Service", () => {
    const base = { namespace: 'shop', deployment: 'web', window: '5m', excludedPaths: [] };
    const trusted = (name: 'Envoy' | 'IngressNginx') =>
      histogramSpecs({
        preset: name,
        proxyNamespaces: ['projectcontour', 'ingress-nginx'],
      })[0] as HistogramSpec;
    expect(buildBucketQuery({ ...base, services: ['web', 'web.v2'], spec: trusted('Envoy') })).toBe(
      'sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"shop_(?:web|web\\\\.v2)_[0-9]+", namespace=~"projectcontour|ingress-nginx"}[5m]))',
    );
    expect(buildBucketQuery({ ...base, services: ['web'], spec: trusted('IngressNginx') })).toBe(
      'sum by (le) (increase(nginx_ingress_controller_request_duration_seconds_bucket{exported_namespace="shop", service=~"web", namespace=~"projectcontour|ingress-nginx"}[5m]))',
    );
    expect(buildBucketQuery({ ...base, spec: trusted('Envoy') })).toBeUndefined();
    // Envoy's grouped query reads the namespace and the Service back from the cluster name.
    expect(
      groupedBucketQuery({ namespaces: ['shop'], spec: trusted('Envoy'), window: '5m', excludedPaths: [] }),
    ).toBe(
      'sum by (namespace, service, le) (label_replace(label_replace(increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"(?:shop)_[^_]+_[0-9]+", namespace=~"projectcontour|ingress-nginx"}[5m]), "namespace", "$1", "envoy_cluster_name", "([^_]+)_.*"), "service", "$1", "envoy_cluster_name", "[^_]+_([^_]+)_[0-9]+"))',
    );
  });

  test("a tenant cannot move another tenant's reading: its probe paths stay its own, its claimed namespaces are checked", async () => {
    const seen: string[] = [];
    answerRecording(
      seen,
      [
        ...perLe({ namespace: 'tenant-b', workload: 'shop', claimed_namespace: 'tenant-b' }, [
          ['1000', '100'],
          ['+Inf', '100'],
        ]),
        // A pod of tenant-a writing series that claim tenant-b's Deployment: scraped in tenant-a,
        // so keyed there and dropped for the mismatch.
        ...perLe({ namespace: 'tenant-a', workload: 'shop', claimed_namespace: 'tenant-b' }, [
          ['1000', '0'],
          ['+Inf', '5000'],
        ]),
      ],
      // tenant-a's chunk asks for the classic form, then (nothing of its own) the native one.
      3,
    );
    const probed = (namespace: string, paths: string[]): Workload => ({
      ...w(namespace, 'shop'),
      probePaths: paths,
    });
    const answers = await new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 }).observeMany(
      [probed('tenant-a', ['/api/checkout']), probed('tenant-b', ['/healthz'])],
      policy({ preset: 'Istio', minSamples: 1 }),
    );
    expect(answers.get('tenant-b/shop')).toMatchObject({ known: true, samples: 100 });
    expect(answers.get('tenant-a/shop')).toMatchObject({ known: false });
    // One query per set of excluded paths: tenant-a's probe path is in no query of tenant-b's.
    const custom = new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 });
    seen.length = 0;
    answerRecording(seen, [], 4);
    await custom.observeMany(
      [probed('tenant-a', ['/api/checkout']), probed('tenant-b', ['/healthz'])],
      policy(),
    );
    // Per set of paths, the classic form and the native one.
    expect(seen).toHaveLength(4);
    const forB = seen.filter((q) => q.includes('tenant-b'));
    expect(forB).toHaveLength(2);
    for (const query of forB) {
      expect(query).toContain('route!~"/healthz|/metrics"');
      expect(query).not.toContain('/api/checkout');
      expect(query).not.toContain('tenant-a');
    }
  });

  test('preset Auto: each preset asks for the workloads no earlier one found; status names the one found; none found, each is named', async () => {
    const seen: string[] = [];
    answerRecording(
      seen,
      // Istio knows shop/checkout (in ms), the prom-client convention lab/web.
      (query) =>
        query.includes('istio_request_duration_milliseconds_bucket')
          ? perLe({ namespace: 'shop', workload: 'checkout' }, [
              ['500', '10'],
              ['1000', '100'],
              ['+Inf', '100'],
            ])
          : query.includes('http_request_duration_seconds_bucket')
            ? perLe({ namespace: 'lab', workload: 'web' }, [
                ['0.1', '50'],
                ['+Inf', '50'],
              ])
            : [],
      14,
    );
    const answers = await new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 }).observeMany(
      [w('shop', 'checkout'), w('lab', 'web'), w('lab', 'idle')],
      policy({ preset: 'Auto', minSamples: 1 }),
    );
    expect(answers.get('shop/checkout')).toMatchObject({ known: true, preset: 'Istio', samples: 100 });
    expect((answers.get('shop/checkout') as { seconds: number }).seconds).toBeCloseTo(0.9944444, 6); // 500 + 500 x 89/90 ms
    expect(answers.get('lab/web')).toMatchObject({ known: true, preset: 'PrometheusClient', samples: 50 });
    expect(reasonOf(answers.get('lab/idle'))).toContain(
      'preset Auto: no series for lab/idle in the last 1h; asked for Istio (istio_request_duration_milliseconds), OpenTelemetry',
    );
    // Grouped queries per preset, in order, each in the classic form and then the native one
    // for the workloads not yet found; Istio's copies its workload labels.
    expect(seen.map((q) => /increase\((\w+)\{/.exec(q)?.[1])).toEqual([
      'istio_request_duration_milliseconds_bucket',
      'istio_request_duration_milliseconds',
      'http_server_request_duration_seconds_bucket',
      'http_server_request_duration_seconds',
      'http_server_duration_milliseconds_bucket',
      'http_server_duration_milliseconds',
      'http_server_requests_seconds_bucket',
      'http_server_requests_seconds',
      'http_request_duration_seconds_bucket',
      'http_request_duration_seconds',
      'inbound_http_request_duration_seconds_bucket',
      'inbound_http_request_duration_seconds',
      'response_latency_ms_bucket',
      'response_latency_ms',
    ]);
    expect(seen[0]).toBe(
      'sum by (namespace, workload, claimed_namespace, le) (label_replace(label_replace(increase(istio_request_duration_milliseconds_bucket{namespace=~"lab|shop", reporter="destination"}[1h]), "workload", "$1", "destination_workload", "(.*)"), "claimed_namespace", "$1", "destination_workload_namespace", "(.*)"))',
    );
    // OpenTelemetry: by the scrape's pod labels, or else (none found by them) by promoted
    // resource attributes: the second's buckets are never added to the first's.
    expect(seen[2]).toContain(') or (sum by (namespace, workload, le) (');
    expect(seen[2]).toMatch(/\) unless on \(namespace, workload\) sum by \(namespace, workload, le\) \(/);
    expect(seen[2]).toContain('k8s_namespace_name=~"lab|shop"');
  });

  test('grouped: a workload with native histograms only is read from the native query, the others from the classic one', async () => {
    const seen: string[] = [];
    answerRecording(
      seen,
      (query) =>
        query.includes('_bucket{')
          ? perLe({ namespace: 'shop', workload: 'checkout' }, healthy)
          : [
              // Native series: one per workload, no le. shop/checkout's native twin is ignored
              // (its classic buckets were read), lab/web has only this.
              {
                metric: { namespace: 'lab', workload: 'web' },
                histogram: [1_750_000_000, { count: '10', sum: '5', buckets: [[0, '0.25', '0.5', '10']] }],
              },
            ],
      2,
    );
    const answers = await new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 }).observeMany(
      [w('shop', 'checkout'), w('lab', 'web')],
      policy({ minSamples: 1 }),
    );
    expect(answers.get('shop/checkout')).toMatchObject({ known: true, seconds: 1, samples: 1000 });
    expect(answers.get('lab/web')).toMatchObject({ known: true, samples: 10 });
    // p99 from the top of (0.25, 0.5], log2-interpolated: 0.25 x 2^0.99.
    expect((answers.get('lab/web') as { seconds: number }).seconds).toBeCloseTo(0.25 * 2 ** 0.99, 12);
    expect(seen).toHaveLength(2);
    expect(seen[1]).toMatch(
      /^sum by \(namespace, workload, le\) \(label_replace\(increase\(http_request_duration_seconds\{/,
    );
  });

  test('queryChunks: whole namespaces together up to the limit; a larger namespace split by Deployment', () => {
    const workloads = [
      w('a', '1'),
      w('a', '2'),
      w('b', '1'),
      w('c', '1'),
      w('c', '2'),
      w('c', '3'),
      w('c', '4'),
    ];
    expect(queryChunks(workloads, 3)).toEqual([
      { workloads: [w('c', '1'), w('c', '2'), w('c', '3')], namespaces: ['c'], deployments: ['1', '2', '3'] },
      { workloads: [w('c', '4')], namespaces: ['c'], deployments: ['4'] },
      { workloads: [w('a', '1'), w('a', '2'), w('b', '1')], namespaces: ['a', 'b'] },
    ]);
  });

  test('observeMany: one query answers each workload from its own series; a workload without series is unknown', async () => {
    const seen: string[] = [];
    const classic = (request: Request) => {
      seen.push(new URL(request.url).searchParams.get('query') ?? '');
      return {
        status: 'success',
        data: {
          resultType: 'vector',
          result: [
            ...perLe({ namespace: 'shop', workload: 'checkout' }, healthy),
            ...perLe({ namespace: 'lab', workload: 'web' }, [
              ['0.1', '100'],
              ['+Inf', '100'],
            ]),
            // A pod that is not a Deployment's: no workload label, ignored.
            { metric: { namespace: 'shop', le: '+Inf' }, value: [1_750_000_000, '7'] },
          ],
        },
      };
    };
    answer(200, classic);
    // The native form, asked for lab/idle only: none either.
    answer(200, (request: Request) => {
      seen.push(new URL(request.url).searchParams.get('query') ?? '');
      return { status: 'success', data: { resultType: 'vector', result: [] } };
    });
    const long = 'x'.repeat(50);
    const answers = await new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 }).observeMany(
      [w('shop', 'checkout'), w('lab', 'web'), w('lab', 'idle'), w('shop', long)],
      policy({ minSamples: 1 }),
    );
    const grouped = (form: 'classic' | 'native', deployments?: string[]) =>
      groupedBucketQuery({
        namespaces: ['lab', 'shop'],
        ...(deployments ? { deployments } : {}),
        spec: custom('http_request_duration_seconds'),
        window: '1h',
        excludedPaths: ['/metrics'],
        form,
      });
    // The native form names the one workload left, rather than the whole chunk.
    expect(seen).toEqual([grouped('classic'), grouped('native', ['idle'])]);
    expect(seen[1]).toContain(
      'increase(http_request_duration_seconds{namespace=~"lab|shop", pod=~"(?:idle)-',
    );
    expect(seen[1]).toContain('le="", quantile=""');
    expect(answers.get('shop/checkout')).toMatchObject({ known: true, seconds: 1, samples: 1000 });
    expect(answers.get('lab/web')).toMatchObject({ known: true, samples: 100 });
    expect(answers.get('lab/idle')).toMatchObject({ known: false });
    expect(reasonOf(answers.get('lab/idle'))).toContain(
      'no http_request_duration_seconds histogram for lab/idle in the last 1h: neither http_request_duration_seconds_bucket series nor a native histogram',
    );
    // The reason goes to lab's PolicyReport: it names the grouped query, never shop in it.
    expect(reasonOf(answers.get('lab/idle'))).toContain(
      'the built-in native histogram query for 1 Deployment in 2 namespaces',
    );
    expect(reasonOf(answers.get('lab/idle'))).not.toContain('shop');
    // A name the apiserver cuts in its pods' names is left to observe().
    expect(answers.has(`shop/${long}`)).toBe(false);
  });

  test('observeMany: Prometheus down makes every workload of the chunk unavailable; a custom query is not grouped', async () => {
    answer(503, 'overloaded');
    const source = new PrometheusSource({ defaultUrl: PROM, timeoutMs: 2000 });
    const down = await source.observeMany([w('shop', 'a'), w('shop', 'b')], policy());
    expect([...down.values()].map((o) => !o.known && o.unavailable)).toEqual([true, true]);
    expect(reasonOf(down.get('shop/a'))).toContain('Prometheus answered HTTP 503');
    const spread = await source.observeMany([w('tenant-a', 'a'), w('tenant-b', 'b')], policy());
    expect(reasonOf(spread.get('tenant-a/a'))).toContain(
      'the built-in bucket query for 2 Deployments in 2 namespaces',
    );
    expect(reasonOf(spread.get('tenant-a/a'))).not.toContain('tenant-b');
    expect(reasonOf(spread.get('tenant-b/b'))).not.toContain('tenant-a');
    const custom = await source.observeMany(
      [w('shop', 'a')],
      policy({ query: 'sum by (le) (x{namespace="{{namespace}}"})' }),
    );
    expect(custom.size).toBe(0);
  });
});
