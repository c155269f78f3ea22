// Each preset against the series its stack exports (demo-service's shapes.ts: names, units,
// labels, fixed values and default bounds as the projects' sources give them): the percentile of
// the workload's own requests, in seconds, whatever the unit, with the kubelet's probes (ten
// times as many) and the requests the preset leaves out not moving it.
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { createShapes, micrometerBuckets, type Shape } from '../../../demo-service/src/shapes.ts';
import { ObservedLatencyPolicySchema } from '../api/policy.ts';
import { readHistogram } from './exposition.ts';
import { bucketQuantile } from './histogram.ts';
import {
  COMMON_ROUTE_LABELS,
  excludedRoutePattern,
  type HistogramSpec,
  histogramSpecs,
  PRESETS,
  type PresetName,
  preset,
  presetSpecs,
  seriesCounts,
} from './presets.ts';
import { secondsPerUnit } from './unit.ts';

const PROBES = new Set(['/readyz', '/healthz']);
const EXCLUDED = new Set(['/metrics', ...PROBES]);

/** A pod's exposition after `slow` requests of `ms` to /work and ten times as many fast probes. */
async function exposition(shapes: Shape[], slow: number, ms: number): Promise<string> {
  const registry = new Registry();
  const recorder = createShapes(registry, shapes, {
    workload: 'web',
    namespace: 'shop',
    probeRoutes: PROBES,
    proxiedService: 'web',
  });
  for (let i = 0; i < slow; i++) recorder.record({ method: 'GET', route: '/work', status: 200, ms });
  for (let i = 0; i < 10 * slow; i++) {
    recorder.record({ method: 'GET', route: '/readyz', status: 200, ms: 0.4 });
    recorder.record({ method: 'GET', route: '/metrics', status: 200, ms: 0.4 });
  }
  return registry.metrics();
}

function stream(text: string): ReadableStream<Uint8Array> {
  return new Response(text).body as ReadableStream<Uint8Array>;
}

/**
 * The p90 in seconds a spec reads from an exposition, or undefined when it finds no series: the
 * workload's requests are a tenth of the probes, so counted probes take the p90.
 */
async function p90(spec: HistogramSpec, text: string, excluded = EXCLUDED): Promise<number | undefined> {
  const read = await readHistogram(stream(text), [spec], excluded);
  if (!read.ok) throw new Error(read.reason);
  const buckets = [...(read.histograms[0] ?? new Map())].map(([le, count]) => ({ le, count }));
  const q = bucketQuantile(0.9, buckets);
  return q.ok ? q.value * secondsPerUnit(spec.unit) : undefined;
}

const SHAPE_OF: Partial<Record<PresetName, Shape>> = {
  Istio: 'istio',
  Linkerd: 'linkerd',
  OpenTelemetry: 'opentelemetry',
  Micrometer: 'micrometer',
  IngressNginx: 'ingress-nginx',
  Envoy: 'envoy',
};
/** Stacks that never see the kubelet's probes: the mesh's agent takes them, a proxy is not asked. */
const PROBES_UNSEEN: ReadonlySet<PresetName> = new Set(['Istio', 'IngressNginx', 'Envoy']);

describe('each preset on its stack’s series', () => {
  test.each(Object.entries(SHAPE_OF) as [PresetName, Shape][])(
    '%s: 100 requests of 1.8 s give a p90 near 1.8 s, in seconds; 1,000 probe requests do not move it',
    async (name, shape) => {
      const text = await exposition([shape], 100, 1800);
      const value = await p90(preset(name), text);
      // Within the bucket that holds 1.8 s, wherever each stack puts its bounds: Linkerd's newer
      // histogram has none between 1 s and 10 s.
      expect(value).toBeGreaterThan(1);
      expect(value).toBeLessThanOrEqual(name === 'Linkerd' ? 10 : 2.5);
      // Negative control: what a reader without the preset's exclusions sees. Istio never sees
      // probes (rewritten to the agent); the others would count them, and the p90 falls.
      const bare = { ...preset(name), matchers: {}, excludedLabels: {}, excludedRoutes: undefined };
      const unfiltered = await p90(bare, text, new Set());
      if (PROBES_UNSEEN.has(name)) expect(unfiltered).toBe(value);
      else expect(unfiltered).toBeLessThan(0.1);
    },
  );

  test('Istio: the client side\'s series (reporter="source") are not the workload\'s', async () => {
    const text = `${await exposition(['istio'], 100, 200)}
istio_request_duration_milliseconds_bucket{reporter="source",destination_workload="web",destination_workload_namespace="shop",le="30000"} 0
istio_request_duration_milliseconds_bucket{reporter="source",destination_workload="web",destination_workload_namespace="shop",le="60000"} 500
istio_request_duration_milliseconds_bucket{reporter="source",destination_workload="web",destination_workload_namespace="shop",le="+Inf"} 500
`;
    expect(await p90(preset('Istio'), text)).toBeLessThanOrEqual(0.25);
    // Negative control: read without the reporter, the client's 500 slow calls take the p90.
    expect(await p90({ ...preset('Istio'), matchers: {} }, text)).toBeGreaterThan(30);
  });

  test('Linkerd: the outbound side is not the workload’s', async () => {
    const text = `${await exposition(['linkerd'], 100, 200)}
response_latency_ms_bucket{direction="outbound",route_name="default",le="50000"} 0
response_latency_ms_bucket{direction="outbound",route_name="default",le="+Inf"} 500
`;
    const older = presetSpecs('Linkerd')[1] as HistogramSpec;
    expect(older.metric).toBe('response_latency_ms');
    expect(await p90(older, text)).toBeLessThanOrEqual(0.3);
    expect(await p90({ ...older, matchers: {} }, text)).toBeGreaterThanOrEqual(50);
  });

  test('Linkerd: the newer histogram (to the end of the response) first, then time to first byte; both on the same requests', async () => {
    expect(presetSpecs('Linkerd').map((s) => [s.metric, s.unit])).toEqual([
      ['inbound_http_request_duration_seconds', 'Seconds'],
      ['response_latency_ms', 'Milliseconds'],
    ]);
    // 400 ms requests: both histograms put the p90 in the bucket around it, in seconds.
    const text = await exposition(['linkerd'], 200, 400);
    for (const spec of presetSpecs('Linkerd')) {
      const value = await p90(spec, text);
      expect(value).toBeGreaterThan(0.25);
      expect(value).toBeLessThanOrEqual(0.5);
    }
    expect(presetSpecs('Linkerd')[0]?.caveat).toContain('none between 1 s and 10 s');
    expect(presetSpecs('Linkerd')[1]?.caveat).toContain('first byte');
  });

  test('Micrometer: the Actuator’s endpoints are left out, as the probes it serves', async () => {
    const text = await exposition(['micrometer'], 100, 1800);
    expect(text).toContain('uri="/actuator/health/readiness"');
    expect(await p90(preset('Micrometer'), text)).toBeGreaterThan(1);
    // Its histogram: the 1 ms to 30 s percentile buckets, 68 bounds with both ends.
    const bounds = micrometerBuckets();
    expect(bounds).toHaveLength(68);
    expect([bounds[0], bounds.at(-1)]).toEqual([0.001, 30]);
  });

  test('the seconds and milliseconds presets agree on the same requests', async () => {
    const text = await exposition(['istio', 'linkerd', 'opentelemetry'], 200, 400);
    const values = await Promise.all(
      (['Istio', 'Linkerd', 'OpenTelemetry'] as const).map((name) => p90(preset(name), text)),
    );
    // Each within its own bucket around 0.4 s: none a thousand times off.
    for (const value of values) {
      expect(value).toBeGreaterThan(0.25);
      expect(value).toBeLessThanOrEqual(0.5);
    }
  });
});

describe('histogramSpecs', () => {
  const spec = (overrides: Record<string, unknown>) =>
    histogramSpecs(ObservedLatencyPolicySchema.parse({ source: 'Prometheus', ...overrides }));

  test('Auto: every preset, mesh first, Linkerd (its two histograms) then the proxies last, these only with proxyNamespaces', () => {
    expect(spec({ preset: 'Auto' }).map((s) => s.preset)).not.toContain('Envoy');
    const auto = spec({ preset: 'Auto', proxyNamespaces: ['ingress-nginx'] });
    expect(auto.find((s) => s.preset === 'Envoy')?.scrapedIn).toEqual(['ingress-nginx']);
    expect(auto.map((s) => s.preset)).toEqual([
      'Istio',
      'OpenTelemetry',
      'OpenTelemetryLegacy',
      'Micrometer',
      'PrometheusClient',
      'Linkerd',
      'Linkerd',
      'IngressNginx',
      'Envoy',
    ]);
  });

  test("a preset: its own; no preset: the policy's metric (default http_request_duration_seconds), its unit by name", () => {
    expect(spec({ preset: 'Istio' })).toEqual([preset('Istio')]);
    expect(spec({})).toEqual([
      {
        metric: 'http_request_duration_seconds',
        unit: 'Seconds',
        matchers: {},
        identities: [{ by: 'pod', namespace: 'namespace', pod: 'pod' }],
        routeLabels: COMMON_ROUTE_LABELS,
      },
    ]);
    expect(spec({ metric: 'rpc_latency_ms' })[0]?.unit).toBe('Milliseconds');
    expect(spec({ metric: 'envoy_cluster_upstream_rq_time', unit: 'Milliseconds' })[0]?.unit).toBe(
      'Milliseconds',
    );
  });

  test("every preset's unit is the one its name says; Envoy's name says none, it counts milliseconds", () => {
    for (const p of PRESETS)
      expect(p.unit).toBe(
        /_(milliseconds|ms)$/.test(p.metric) || p.preset === 'Envoy' ? 'Milliseconds' : 'Seconds',
      );
  });
});

describe('seriesCounts and excludedRoutePattern', () => {
  const labels = (entries: Record<string, string>) => new Map(Object.entries(entries));

  test('fixed labels must hold; an excluded path in any label, or a preset route, leaves the series out', () => {
    const istio = preset('Istio');
    expect(seriesCounts(istio, labels({ reporter: 'destination' }), EXCLUDED)).toBe(true);
    expect(seriesCounts(istio, labels({ reporter: 'source' }), EXCLUDED)).toBe(false);
    expect(seriesCounts(istio, labels({}), EXCLUDED)).toBe(false);
    const micrometer = preset('Micrometer');
    expect(seriesCounts(micrometer, labels({ uri: '/orders' }), EXCLUDED)).toBe(true);
    expect(seriesCounts(micrometer, labels({ uri: '/actuator' }), EXCLUDED)).toBe(false);
    expect(seriesCounts(micrometer, labels({ uri: '/actuator/health/liveness' }), EXCLUDED)).toBe(false);
    // Anchored: only the Actuator's own paths.
    expect(seriesCounts(micrometer, labels({ uri: '/api/actuator' }), EXCLUDED)).toBe(true);
    expect(seriesCounts(micrometer, labels({ uri: '/actuators' }), EXCLUDED)).toBe(true);
    expect(
      seriesCounts(preset('Linkerd'), labels({ direction: 'inbound', route_name: 'probe' }), EXCLUDED),
    ).toBe(false);
    expect(seriesCounts(preset('OpenTelemetry'), labels({ http_route: '/readyz' }), EXCLUDED)).toBe(false);
  });

  test('paths become regex literals, sorted and unique; the preset’s routes follow', () => {
    expect(excludedRoutePattern(preset('OpenTelemetry'), ['/readyz', '/a.b', '/readyz'])).toBe(
      '/a\\.b|/readyz',
    );
    expect(excludedRoutePattern(preset('Micrometer'), ['/metrics'])).toBe('/metrics|/actuator(/.*)?');
    expect(excludedRoutePattern(preset('Istio'), [])).toBeUndefined();
  });
});
