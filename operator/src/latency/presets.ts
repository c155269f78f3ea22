// The request-latency histograms clusters already have, as presets: for each, the histogram's
// name, the unit of its bounds, the labels that must hold (a mesh's server side), how its series
// name the workload in Prometheus, the labels that carry the route (so the kubelet's probes can be
// left out), and what the reader should know about it. Sources for every fact are in
// docs/policy.md ("Presets"). Pure: no I/O.
//
// Both sources read a preset through a HistogramSpec: the Prometheus source builds its selectors
// from it (prometheus.ts), the Scrape source filters a pod's exposition with it (scrape.ts).
import type { LatencyPresetName, ObservedLatencyPolicy } from '../api/policy.ts';
import type { LatencyUnit } from './unit.ts';
import { unitOf } from './unit.ts';

export type PresetName = LatencyPresetName;

/** How a series says whose request it counted, in Prometheus (the Scrape source knows the pod). */
export type Identity =
  /** The scrape's target labels: the pod's namespace and name (a Deployment's pods by name). */
  | { by: 'pod'; namespace: string; pod: string }
  /**
   * The workload (Deployment) name the exporter writes, in the scrape's namespace. `claimed`: a
   * namespace label the exporter writes too, which must agree (a pod can write any label value,
   * but the scrape's `namespace` is its own).
   */
  | { by: 'workload'; namespace: string; workload: string; claimed?: string }
  /** A proxy's labels for the Service it sent the request to: the Services that select the pods. */
  | { by: 'service'; namespace: string; service: string }
  /**
   * An Envoy upstream cluster named `<namespace>_<service>_<port>` (Contour's statistics name) in
   * this label: the Services that select the pods.
   */
  | { by: 'envoyCluster'; cluster: string };

/** The labels a kubernetes_sd_configs pod scrape with the usual relabeling attaches. */
const SCRAPED_POD: Identity = { by: 'pod', namespace: 'namespace', pod: 'pod' };

/**
 * Labels that carry the route in the common conventions: OpenTelemetry and ASP.NET Core
 * `http_route`, Micrometer `uri`, express-prom-bundle `path`, prometheus-fastapi-instrumentator
 * `handler`, and the `route`/`endpoint` many hand-written histograms use. A series without the
 * label is kept (its value is empty, which no path equals).
 */
export const COMMON_ROUTE_LABELS = ['http_route', 'uri', 'path', 'handler', 'route', 'endpoint'] as const;

/** One histogram to read: a preset's, or the policy's own `metric`. */
export interface HistogramSpec {
  /** The preset it comes from; undefined for the policy's own `metric`. */
  preset?: PresetName;
  /** The histogram's name, without `_bucket`. */
  metric: string;
  unit: LatencyUnit;
  /** Labels every counted series carries with exactly this value. */
  matchers: Readonly<Record<string, string>>;
  /** In Prometheus, the first identity that finds series wins (`or`). */
  identities: readonly Identity[];
  /** Labels whose value is the route: series whose route is a probe's or the scrape path are left out. */
  routeLabels: readonly string[];
  /** Routes left out besides those (RE2, anchored as PromQL anchors =~): Spring's /actuator. */
  excludedRoutes?: string;
  /** Series with one of these label values are left out (Linkerd names its probe route). */
  excludedLabels?: Readonly<Record<string, string>>;
  /** Said in status with every observation from this preset. */
  caveat?: string;
  /** Said when the histogram has no `_bucket` series but the preset knows why. */
  whenAbsent?: string;
  /**
   * Measured at a proxy in front of the workload (an ingress controller, Envoy), not in its pods:
   * only Prometheus has it, Scrape (which reads the workload's pods) never. Its series name
   * other namespaces' Services, so only those scraped from the policy's proxyNamespaces count.
   */
  atProxy?: boolean;
  /** The namespaces (the scrape's `namespace` label) whose series count: a proxy's, from the policy. */
  scrapedIn?: readonly string[];
}

const prometheusScrape = { identities: [SCRAPED_POD] } as const;

/**
 * The presets, in the order `preset: Auto` tries them: the full request duration measured at the
 * pod (a mesh's server side, then the application's own conventions, newest first), then time to
 * first byte at the pod (Linkerd), then what is measured at a proxy in front of it, per Service.
 */
export const PRESETS: readonly (HistogramSpec & { preset: PresetName })[] = [
  {
    preset: 'Istio',
    metric: 'istio_request_duration_milliseconds',
    unit: 'Milliseconds',
    matchers: { reporter: 'destination' },
    // The sidecar is scraped in its pod's namespace: the scrape's `namespace` says whose series
    // these are, and the destination namespace the proxy writes must agree.
    identities: [
      {
        by: 'workload',
        namespace: 'namespace',
        workload: 'destination_workload',
        claimed: 'destination_workload_namespace',
      },
    ],
    // The sidecar injector rewrites HTTP probes to the agent, which calls the app directly: the
    // kubelet's probes never reach the proxy that reports this histogram.
    routeLabels: [],
  },
  {
    preset: 'OpenTelemetry',
    metric: 'http_server_request_duration_seconds',
    unit: 'Seconds',
    matchers: {},
    identities: [
      SCRAPED_POD,
      // Pushed over OTLP with k8s.* resource attributes promoted to labels: no scrape vouches for
      // them, whoever may push to Prometheus writes them (docs/security.md).
      { by: 'workload', namespace: 'k8s_namespace_name', workload: 'k8s_deployment_name' },
    ],
    routeLabels: ['http_route'],
  },
  {
    preset: 'OpenTelemetryLegacy',
    metric: 'http_server_duration_milliseconds',
    unit: 'Milliseconds',
    matchers: {},
    identities: [
      SCRAPED_POD,
      { by: 'workload', namespace: 'k8s_namespace_name', workload: 'k8s_deployment_name' },
    ],
    routeLabels: ['http_route'],
  },
  {
    preset: 'Micrometer',
    metric: 'http_server_requests_seconds',
    unit: 'Seconds',
    matchers: {},
    ...prometheusScrape,
    routeLabels: ['uri'],
    excludedRoutes: '/actuator(/.*)?',
    whenAbsent:
      'Micrometer exports http_server_requests_seconds buckets only with management.metrics.distribution.percentiles-histogram.http.server.requests=true',
  },
  {
    preset: 'PrometheusClient',
    metric: 'http_request_duration_seconds',
    unit: 'Seconds',
    matchers: {},
    ...prometheusScrape,
    routeLabels: COMMON_ROUTE_LABELS,
  },
  {
    // Newer proxies (linkerd2-proxy 2.342, edge-26.3.2, on by default) time the whole response,
    // to the end of its stream: read first where served.
    preset: 'Linkerd',
    metric: 'inbound_http_request_duration_seconds',
    unit: 'Seconds',
    matchers: {},
    identities: [{ by: 'workload', namespace: 'namespace', workload: 'deployment' }],
    routeLabels: [],
    excludedLabels: { route_name: 'probe' },
    caveat:
      'Linkerd\'s inbound_http_request_duration_seconds has bounds from 25 ms to 10 s with none between 1 s and 10 s: a percentile above 1 s is interpolated within (1 s, 10 s] and may read high; the kubelet\'s probes are left out where the proxy names their route (route_name="probe")',
  },
  {
    preset: 'Linkerd',
    metric: 'response_latency_ms',
    unit: 'Milliseconds',
    matchers: { direction: 'inbound' },
    // `deployment` is what Linkerd's own scrape configuration copies from the pod label
    // linkerd.io/proxy-deployment; `namespace` the usual one.
    identities: [{ by: 'workload', namespace: 'namespace', workload: 'deployment' }],
    routeLabels: [],
    // The policy controller gives the kubelet's probes a route of their own.
    excludedLabels: { route_name: 'probe' },
    caveat:
      "Linkerd's response_latency_ms is the time to the response's first byte, not to its end (a streamed response lasts longer); the kubelet's probes are left out only where the proxy names their route (route_name=\"probe\")",
  },
  {
    preset: 'IngressNginx',
    metric: 'nginx_ingress_controller_request_duration_seconds',
    unit: 'Seconds',
    matchers: {},
    // The Ingress's namespace is the series' `namespace`, which a scrape of the controller stores
    // as `exported_namespace` (the scrape's `namespace`, the controller's, wins): scraped with
    // honor_labels, the controller's namespace is lost and the series cannot be trusted.
    identities: [{ by: 'service', namespace: 'exported_namespace', service: 'service' }],
    // `path` is the Ingress rule's path, not the request's; probes never pass the ingress.
    routeLabels: [],
    atProxy: true,
    caveat:
      'measured at ingress-nginx, per Service: only the requests through the controller, its own time included',
  },
  {
    preset: 'Envoy',
    metric: 'envoy_cluster_upstream_rq_time',
    unit: 'Milliseconds',
    matchers: {},
    identities: [{ by: 'envoyCluster', cluster: 'envoy_cluster_name' }],
    routeLabels: [],
    atProxy: true,
    caveat:
      'measured at Envoy, per upstream cluster (a Service port): only the requests through that proxy, the network included',
  },
];

/** The histograms of the preset of that name, in the order they are tried (Linkerd has two). */
export function presetSpecs(name: PresetName): (HistogramSpec & { preset: PresetName })[] {
  const found = PRESETS.filter((p) => p.preset === name);
  if (found.length === 0) throw new Error(`unknown preset ${name}`);
  return found;
}

/** The first histogram of the preset of that name. */
export function preset(name: PresetName): HistogramSpec & { preset: PresetName } {
  return presetSpecs(name)[0] as HistogramSpec & { preset: PresetName };
}

/**
 * How reasons name a list of histograms tried in turn: `preset Auto`, or the one preset that has
 * several (Linkerd's newer and older histograms).
 */
export function triedAs(specs: readonly HistogramSpec[]): string {
  const names = new Set(specs.map((spec) => spec.preset));
  return names.size === 1 && specs[0]?.preset !== undefined ? `preset ${specs[0].preset}` : 'preset Auto';
}

/** The default histogram when a policy names neither a preset nor a metric. */
export const DEFAULT_METRIC = 'http_request_duration_seconds';

/**
 * The histograms a policy reads, in order: a preset's; every preset's for Auto (the first found
 * wins); or the policy's own `metric` (default http_request_duration_seconds, in the unit its
 * name or `unit` says, found by the scrape's pod labels, its route in any common route label).
 */
export function histogramSpecs(
  policy: Pick<ObservedLatencyPolicy, 'preset' | 'metric' | 'unit' | 'proxyNamespaces'>,
): readonly HistogramSpec[] {
  const trusted = (spec: HistogramSpec): HistogramSpec =>
    spec.atProxy ? { ...spec, scrapedIn: policy.proxyNamespaces ?? [] } : spec;
  // Auto reads a proxy's histogram only where the policy says which namespaces proxies run in.
  if (policy.preset === 'Auto')
    return PRESETS.filter((p) => !p.atProxy || (policy.proxyNamespaces?.length ?? 0) > 0).map(trusted);
  if (policy.preset !== undefined) return presetSpecs(policy.preset).map(trusted);
  const metric = policy.metric ?? DEFAULT_METRIC;
  return [
    {
      metric,
      unit: unitOf({ metric, unit: policy.unit }),
      matchers: {},
      ...prometheusScrape,
      routeLabels: COMMON_ROUTE_LABELS,
    },
  ];
}

/** The probe and scrape paths as one anchored RE2 alternation, with the spec's own exclusions. */
export function excludedRoutePattern(
  spec: Pick<HistogramSpec, 'excludedRoutes'>,
  paths: readonly string[],
): string | undefined {
  const parts = [...new Set(paths)].sort().map(escapeRegex);
  if (spec.excludedRoutes) parts.push(spec.excludedRoutes);
  return parts.length === 0 ? undefined : parts.join('|');
}

/**
 * Whether a series of the spec's histogram counts, by its labels: every matcher holds, no label
 * holds an excluded path (a probe's, the scrape path: whatever the label is called, as a route
 * label of a custom histogram may be), and no route label holds a route the preset leaves out.
 */
export function seriesCounts(
  spec: Pick<HistogramSpec, 'matchers' | 'excludedLabels' | 'routeLabels' | 'excludedRoutes'>,
  labels: ReadonlyMap<string, string>,
  excludedPaths: ReadonlySet<string>,
  excludedRoutes: RegExp | undefined = spec.excludedRoutes ? anchored(spec.excludedRoutes) : undefined,
): boolean {
  for (const [name, value] of Object.entries(spec.matchers)) if (labels.get(name) !== value) return false;
  for (const [name, value] of Object.entries(spec.excludedLabels ?? {}))
    if (labels.get(name) === value) return false;
  for (const value of labels.values()) if (excludedPaths.has(value)) return false;
  if (excludedRoutes)
    for (const name of spec.routeLabels) {
      const route = labels.get(name);
      if (route !== undefined && excludedRoutes.test(route)) return false;
    }
  return true;
}

/** A pattern anchored at both ends, as PromQL's =~ anchors it. */
export function anchored(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`);
}

/** A literal for a PromQL (RE2) regular expression: the characters Go's regexp.QuoteMeta escapes. */
export function escapeRegex(value: string): string {
  return value.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}
