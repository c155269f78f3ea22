// Presets on the real node with the cluster's Prometheus (issue 25): one demo-service Deployment
// per stack, each exporting only that stack's histogram (METRIC_SHAPES: names, labels, units and
// bounds as the stack exports them), requests of 2.3 s at a steady rate and ten times as many
// requests to the readiness path. Per preset, Prometheus's own histogram_quantile over the
// series the preset reads is the oracle: the operator's observed percentile must equal it, and
// the grace it writes must be the one that percentile gives. Negative controls: counting the
// probe route (where the stack names it) pulls the percentile below 0.1 s; Auto names the
// preset found; the milliseconds twin of a seconds histogram gives the same grace.
//
// Native histograms are read by the built-in queries where no classic buckets exist: a pod whose
// histograms Prometheus stores as native custom buckets only (NHCB), and an application
// instrumented with the OpenTelemetry SDK pushing an exponential histogram to Prometheus's OTLP
// receiver, found by its promoted k8s.* resource attributes.
//
// The slow requests all fall in one bucket, so the p99 is 99 % of the way through it; counted,
// ten probe requests per request move it to 89 % of the way, which the control sees.

import type { V1EnvVar } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { LatencyPresetName } from '../../operator/src/api/policy.ts';
import { NHCB_ANNOTATION, NHCB_ONLY, queryPrometheus, sampleValue } from '../cluster/prometheus.ts';
import {
  createPolicy,
  deletePolicy,
  type OperatorProcess,
  readPolicyStatus,
  waitFor,
} from '../operator/harness.ts';
import {
  deployDemo,
  expectedGrace as graceFor,
  graceOf,
  LatencyLoad,
  latencyPolicySpec,
  policyStatus,
  startLatencyOperator,
} from './latency-support.ts';
import { adminKubeConfig, clusterInfo, useNamespace } from './support.ts';

const ns = useNamespace('presets');
/**
 * Well inside one bucket of every stack's bounds (Envoy's and Istio's 1-2.5 s, Linkerd's 2-3 s,
 * Micrometer's 2.15-2.86 s, ...), overhead included: the p99 is the same whenever it is asked.
 */
const LATENCY_MS = 2300;
const PERCENTILE = 0.99;
const WINDOW = '1m';
/** demo-service's probe routes, and Prometheus's scrape path. */
const PROBE_ROUTES = '/metrics|/readyz|/healthz';

interface Case {
  /** The Deployment, and its policy's suffix. */
  name: string;
  shapes: string;
  /** The policy reads the histogram through this preset, or through `query`. */
  preset?: LatencyPresetName | 'Auto';
  query?: string;
  /** The preset status must name (none for a query). */
  found?: LatencyPresetName;
  podLabels?: Record<string, string>;
  podAnnotations?: Record<string, string>;
  /** More environment (asked for when the Deployment is made: the cluster is known then). */
  env?: () => V1EnvVar[];
  /** Its series are native histograms only: no `_bucket` series may exist for it. */
  nativeOnly?: boolean;
  /** Its native histograms are exponential (OpenTelemetry's), a scale per series. */
  exponential?: boolean;
  /** A second oracle that must agree (the native histogram of the same requests). */
  twin?: (namespace: string) => string;
  /**
   * A proxy in front of the Deployment's Service (demo-service playing ingress-nginx or Envoy
   * with these shapes): the load goes through it, and its histogram names the Service.
   */
  proxy?: { name: string; shapes: string };
  /** The series the preset reads (the operator's selection, written out), with the probe route out. */
  series: (namespace: string) => string;
  /** The same without leaving the probe route out; undefined where the stack never sees probes. */
  withProbes?: (namespace: string) => string;
  /** Seconds per unit of the bounds. */
  scale: number;
}

const byPod = (name: string, namespace: string) =>
  `namespace="${namespace}", pod=~"${name}-[a-z0-9]+-[a-z0-9]+"`;

const CASES: Case[] = [
  {
    name: 'istio',
    shapes: 'istio',
    preset: 'Auto',
    found: 'Istio',
    series: (n) =>
      `istio_request_duration_milliseconds_bucket{reporter="destination", namespace="${n}", destination_workload_namespace="${n}", destination_workload="istio"}`,
    scale: 0.001,
  },
  {
    // A current proxy exports both of its histograms: the newer one, to the end of the
    // response, is read (its bounds put 2.3 s in (1 s, 10 s]).
    name: 'linkerd',
    shapes: 'linkerd',
    preset: 'Linkerd',
    found: 'Linkerd',
    // What Linkerd's own scrape configuration turns into the `deployment` label.
    podLabels: { 'linkerd.io/proxy-deployment': 'linkerd' },
    series: (n) =>
      `inbound_http_request_duration_seconds_bucket{namespace="${n}", deployment="linkerd", route_name!="probe"}`,
    withProbes: (n) => `inbound_http_request_duration_seconds_bucket{namespace="${n}", deployment="linkerd"}`,
    scale: 1,
  },
  {
    // A proxy before 2.342 exports response_latency_ms alone: the preset falls back to it.
    name: 'linkerd-old',
    shapes: 'linkerd-legacy',
    preset: 'Auto',
    found: 'Linkerd',
    podLabels: { 'linkerd.io/proxy-deployment': 'linkerd-old' },
    series: (n) =>
      `response_latency_ms_bucket{direction="inbound", namespace="${n}", deployment="linkerd-old", route_name!="probe"}`,
    withProbes: (n) =>
      `response_latency_ms_bucket{direction="inbound", namespace="${n}", deployment="linkerd-old"}`,
    scale: 0.001,
  },
  {
    name: 'otel',
    shapes: 'opentelemetry',
    preset: 'Auto',
    found: 'OpenTelemetry',
    series: (n) =>
      `http_server_request_duration_seconds_bucket{${byPod('otel', n)}, http_route!~"${PROBE_ROUTES}"}`,
    withProbes: (n) => `http_server_request_duration_seconds_bucket{${byPod('otel', n)}}`,
    scale: 1,
  },
  {
    name: 'spring',
    shapes: 'micrometer',
    preset: 'Auto',
    found: 'Micrometer',
    series: (n) =>
      `http_server_requests_seconds_bucket{${byPod('spring', n)}, uri!~"${PROBE_ROUTES}|/actuator(/.*)?"}`,
    withProbes: (n) => `http_server_requests_seconds_bucket{${byPod('spring', n)}}`,
    scale: 1,
  },
  {
    name: 'twin-s',
    shapes: 'prometheus-client',
    preset: 'PrometheusClient',
    found: 'PrometheusClient',
    series: (n) => `http_request_duration_seconds_bucket{${byPod('twin-s', n)}, route!~"${PROBE_ROUTES}"}`,
    withProbes: (n) => `http_request_duration_seconds_bucket{${byPod('twin-s', n)}}`,
    scale: 1,
  },
  {
    name: 'twin-ms',
    shapes: 'opentelemetry-legacy',
    preset: 'OpenTelemetryLegacy',
    found: 'OpenTelemetryLegacy',
    series: (n) =>
      `http_server_duration_milliseconds_bucket{${byPod('twin-ms', n)}, http_route!~"${PROBE_ROUTES}"}`,
    withProbes: (n) => `http_server_duration_milliseconds_bucket{${byPod('twin-ms', n)}}`,
    scale: 0.001,
  },
  {
    // The controller's series carry the Ingress's namespace in `namespace`, which the scrape
    // renames exported_namespace (the target's own namespace label wins): the real trap.
    name: 'behind-nginx',
    shapes: 'prometheus-client',
    preset: 'IngressNginx',
    found: 'IngressNginx',
    proxy: { name: 'nginx', shapes: 'ingress-nginx' },
    series: (n) =>
      `nginx_ingress_controller_request_duration_seconds_bucket{exported_namespace="${n}", service="behind-nginx"}`,
    scale: 1,
  },
  {
    name: 'behind-envoy',
    shapes: 'prometheus-client',
    preset: 'Envoy',
    found: 'Envoy',
    proxy: { name: 'envoy', shapes: 'envoy' },
    series: (n) => `envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="${n}_behind-envoy_80"}`,
    scale: 0.001,
  },
  {
    // A native histogram: Prometheus stores this pod's classic histograms also as native
    // histograms with custom buckets (NHCB), and the policy's query returns the native one.
    name: 'native',
    shapes: 'prometheus-client',
    podAnnotations: { [NHCB_ANNOTATION]: 'true' },
    query: `sum(increase(http_request_duration_seconds{namespace="{{namespace}}", pod=~"{{deployment}}-[a-z0-9]+-[a-z0-9]+", route!~"${PROBE_ROUTES}"}[{{window}}]))`,
    series: (n) => `http_request_duration_seconds_bucket{${byPod('native', n)}, route!~"${PROBE_ROUTES}"}`,
    twin: (n) => `http_request_duration_seconds{${byPod('native', n)}, route!~"${PROBE_ROUTES}"}`,
    scale: 1,
  },
  {
    // Stored as NHCB only (no classic series): the built-in query's native form reads it.
    name: 'nhcb-only',
    shapes: 'prometheus-client',
    preset: 'PrometheusClient',
    found: 'PrometheusClient',
    podAnnotations: { [NHCB_ANNOTATION]: NHCB_ONLY },
    nativeOnly: true,
    series: (n) => `http_request_duration_seconds{${byPod('nhcb-only', n)}, route!~"${PROBE_ROUTES}"}`,
    withProbes: (n) => `http_request_duration_seconds{${byPod('nhcb-only', n)}}`,
    scale: 1,
  },
  {
    // The OpenTelemetry SDK's exponential histogram, pushed over OTLP every 2 s: a native
    // histogram, found by the resource attributes Prometheus promotes to labels.
    name: 'otlp',
    shapes: 'opentelemetry-otlp',
    preset: 'Auto',
    found: 'OpenTelemetry',
    env: () => [
      { name: 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', value: clusterInfo().prometheusOtlpUrl },
      { name: 'OTEL_METRIC_EXPORT_INTERVAL', value: '2000' },
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ],
    nativeOnly: true,
    exponential: true,
    series: (n) =>
      `http_server_request_duration_seconds{k8s_namespace_name="${n}", k8s_deployment_name="otlp", http_route!~"${PROBE_ROUTES}"}`,
    withProbes: (n) =>
      `http_server_request_duration_seconds{k8s_namespace_name="${n}", k8s_deployment_name="otlp"}`,
    scale: 1,
  },
];

const policyName = (c: Case) => `latency-preset-${c.name}`;

/** Requests to `path` as fast as `paceMs` allows, one at a time, for at most 8 minutes. */
class PacedLoad {
  sent = 0;
  #running = true;
  readonly #loop: Promise<void>;
  constructor(url: string, path: string, paceMs: number) {
    const deadline = Date.now() + 8 * 60_000;
    this.#loop = (async () => {
      while (this.#running && Date.now() < deadline) {
        this.sent++;
        await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5_000) })
          .then((r) => r.arrayBuffer())
          .catch(() => undefined);
        await new Promise((r) => setTimeout(r, paceMs));
      }
    })();
  }
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}

let operator: OperatorProcess;
const loads: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  operator = await startLatencyOperator('operator-presets.log', [
    '--prometheus-url',
    clusterInfo().prometheusUrl,
  ]);
  for (const c of CASES) {
    const url = await deployDemo(ns.name, [c.name], {
      env: [
        { name: 'METRIC_SHAPES', value: c.shapes },
        { name: 'WORKLOAD_NAME', value: c.name },
        { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        ...(c.env?.() ?? []),
      ],
      ...(c.podLabels ? { podLabels: c.podLabels } : {}),
      ...(c.podAnnotations ? { podAnnotations: c.podAnnotations } : {}),
    });
    // About 1.7 requests a second of 2.3 s, and ten times as many to the readiness path; through
    // the proxy, where there is one.
    const through = c.proxy
      ? await deployDemo(ns.name, [c.proxy.name], {
          env: [
            { name: 'METRIC_SHAPES', value: c.proxy.shapes },
            { name: 'PROXIED_SERVICE', value: c.name },
            { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
          ],
        })
      : url;
    loads.push(new LatencyLoad(through, 4, LATENCY_MS), new PacedLoad(through, '/readyz', 60));
    const spec = latencyPolicySpec(ns.name, {
      source: 'Prometheus',
      ...(c.preset ? { preset: c.preset } : {}),
      ...(c.query ? { query: c.query } : {}),
      // The proxies run in the test namespace: their series are trusted from there.
      ...(c.proxy ? { proxyNamespaces: [ns.name] } : {}),
      percentile: PERCENTILE,
      window: WINDOW,
      stabilizationWindow: '30s',
    }) as Record<string, unknown>;
    await createPolicy(adminKubeConfig(), policyName(c), {
      ...spec,
      deploymentSelector: { matchLabels: { app: c.name } },
    });
  }
}, 600_000);

afterAll(async () => {
  await Promise.all(loads.map((l) => l.stop()));
  for (const c of CASES) await deletePolicy(adminKubeConfig(), policyName(c));
  await operator?.stop();
});

/**
 * Prometheus's histogram_quantile over these series, in seconds, at `time`: classic `_bucket`
 * series summed by le, or native histograms summed.
 */
async function oracle(series: string, scale: number, time: number): Promise<number | undefined> {
  const by = /_bucket\{/.test(series) ? ' by (le)' : '';
  const query = `histogram_quantile(${PERCENTILE}, sum${by} (increase(${series}[${WINDOW}])))`;
  const result = await queryPrometheus(clusterInfo().prometheusUrl, query, { time });
  if (result.resultType !== 'vector') throw new Error(`expected a vector, got a ${result.resultType}`);
  const first = result.result[0];
  const value = first ? sampleValue(first.value[1]) : Number.NaN;
  return Number.isFinite(value) ? value * scale : undefined;
}

/**
 * The requests these series counted over the window, at `time`: the +Inf bucket of `_bucket`
 * series, or the count of native histograms.
 */
async function requests(series: string, time: number): Promise<number> {
  const query = /_bucket\{/.test(series)
    ? `sum(increase(${series.replace('_bucket{', '_bucket{le="+Inf", ')}[${WINDOW}]))`
    : `histogram_count(sum(increase(${series}[${WINDOW}])))`;
  const result = await queryPrometheus(clusterInfo().prometheusUrl, query, { time });
  if (result.resultType !== 'vector') throw new Error(`expected a vector, got a ${result.resultType}`);
  const first = result.result[0];
  return first ? sampleValue(first.value[1]) : 0;
}

interface Seen {
  preset?: string;
  seconds: number;
  samples: number;
}

/** The workload's observation in its policy's status, once one with enough requests is there. */
async function observation(c: Case): Promise<Seen | undefined> {
  const w = (await policyStatus(policyName(c))).workloads?.find((x) => x.name === c.name);
  const o = w?.observedLatency as Seen | undefined;
  return o?.seconds !== undefined && o.samples >= 40 ? o : undefined;
}

/**
 * The operator's observation and histogram_quantile over the same series, once they agree within
 * 5 ms: the window first holds the warm-up requests of deployDemo, and the two are asked up to a
 * refresh apart, so they agree once the load is steady. Fails with the last pair.
 */
async function agreed(c: Case): Promise<{ seen: Seen; truth: number; at: number }> {
  let last: unknown;
  return waitFor(
    `${c.name}: the operator's p99 (${c.preset ? `preset ${c.preset}` : 'a query'}) and histogram_quantile's to agree`,
    async () => {
      const seen = await observation(c);
      if (!seen) return undefined;
      const at = Date.now() / 1000;
      const truth = await oracle(c.series(ns.name), c.scale, at);
      last = { seen, truth };
      return truth !== undefined && Math.abs(seen.seconds - truth) < 0.005 ? { seen, truth, at } : undefined;
    },
    { timeoutMs: 240_000, intervalMs: 2_000 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last: ${JSON.stringify(last)}`);
  });
}

describe('presets on the real node, read through the cluster Prometheus', () => {
  const results = new Map<string, { seconds: number; oracle: number; grace: number; preset?: string }>();

  test.each(CASES.map((c) => [c.name, c] as const))(
    '%s: the percentile is histogram_quantile’s over the series read, and the grace is the one it gives',
    async (_, c) => {
      const { seen, truth, at } = await agreed(c);
      expect(seen.preset).toBe(c.found);
      if (c.found === undefined) expect(seen).not.toHaveProperty('preset');
      // Requests of 2.3 s sit in one bucket: the p99 is near its top, a few seconds.
      expect(truth).toBeGreaterThan(1);
      expect(truth).toBeLessThan(10);
      // The grace written is the one the p99 in status gives (read again: a refresh may move it).
      // The grace written is the one status recommends: the one the p99 gives, or the operator's
      // earlier value where that lies within 10 % of it (the hysteresis that spares a restart),
      // as status then says.
      const computed = graceFor(seen.seconds);
      let last: unknown;
      const grace = await waitFor(
        `${c.name}: the grace the p99 gives (${computed} s, or kept within 10 %)`,
        async () => {
          const w = (await readPolicyStatus(adminKubeConfig(), policyName(c))).workloads?.find(
            (x: { name: string }) => x.name === c.name,
          ) as { recommended?: { terminationGracePeriodSeconds?: number }; message?: string } | undefined;
          const recommended = w?.recommended?.terminationGracePeriodSeconds;
          const g = await graceOf(ns.name, c.name);
          last = { recommended, written: g, message: w?.message };
          if (g === undefined || g !== recommended) return undefined;
          if (g === computed) return g;
          return Math.abs(g - computed) <= 0.1 * computed && /grace \d+ s kept/.test(w?.message ?? '')
            ? g
            : undefined;
        },
        { timeoutMs: 120_000 },
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last: ${JSON.stringify(last)}`);
      });
      results.set(c.name, { seconds: seen.seconds, oracle: truth, grace, preset: seen.preset });
      if (c.nativeOnly) {
        // Negative control: there is no classic form the operator could have read instead.
        const classic = await queryPrometheus(
          clusterInfo().prometheusUrl,
          `count(${c.series(ns.name).replace('{', '_bucket{')})`,
          { time: at },
        );
        expect(classic.resultType === 'vector' ? classic.result : ['not a vector']).toEqual([]);
        const native = await requests(c.series(ns.name), at);
        expect(native).toBeGreaterThanOrEqual(40);
      }
      if (c.twin) {
        // The native histogram of the same requests, by Prometheus's own arithmetic.
        const native = await oracle(c.twin(ns.name), c.scale, at);
        expect(native).toBeCloseTo(truth, 2);
      }
      let control = '';
      let counted: number | undefined;
      let all = 0;
      let own = 0;
      if (c.withProbes) {
        // Negative control: the readiness requests counted in, there are several times as many
        // requests and the p99 moves.
        counted = await oracle(c.withProbes(ns.name), c.scale, at);
        [all, own] = await Promise.all([
          requests(c.withProbes(ns.name), at),
          requests(c.series(ns.name), at),
        ]);
        control = `; probes counted: ${counted?.toFixed(4)} s over ${all.toFixed(0)} requests (${own.toFixed(0)} without)`;
      }
      console.info(
        `[presets] ${c.name}: preset ${seen.preset ?? '(query)'}, served ${LATENCY_MS / 1000} s, histogram_quantile ${truth.toFixed(4)} s, observed ${seen.seconds.toFixed(4)} s over ${seen.samples} requests, grace ${grace} s${control}`,
      );
      if (c.withProbes) {
        expect(all).toBeGreaterThan(5 * own);
        // Classic buckets (and custom ones) are shared by every route: the fast probe requests
        // pull the p99 down its bucket. An exponential histogram's routes each have their own
        // scale, and a sum takes the coarsest: the slow requests then sit in a wider bucket,
        // and the p99 moves either way.
        if (c.exponential) expect(Math.abs((counted ?? truth) - truth)).toBeGreaterThan(0.005);
        else expect(counted).toBeLessThan(truth * 0.995);
      }
    },
    240_000,
  );

  test('the milliseconds twin and its seconds histogram give the same p99, so the same computed grace', () => {
    const seconds = results.get('twin-s');
    const millis = results.get('twin-ms');
    expect(seconds && millis).toBeTruthy();
    expect(millis?.seconds).toBeCloseTo(seconds?.seconds as number, 2);
    expect(graceFor(millis?.seconds as number)).toBe(graceFor(seconds?.seconds as number));
  });
});
