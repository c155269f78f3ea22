/**
 * The request-duration histograms of other stacks, exported by demo-service on request
 * (METRIC_SHAPES, besides or instead of its own two): the series a mesh, OpenTelemetry or Spring would put next to an application
 * like this one, with their names, units, label names, fixed label values and default bucket
 * bounds, so the operator's presets are tested against those shapes on a real node. Each shape
 * records what its real exporter would see:
 *
 * - istio: `istio_request_duration_milliseconds`, the server-side sidecar's (`reporter="destination"`,
 *   destination_workload and destination_workload_namespace), Envoy's default bounds
 *   (envoyproxy/envoy source/common/stats/histogram_impl.cc, defaultBuckets). Istio rewrites HTTP
 *   probes to its agent, which calls the app directly, and Prometheus scrapes the agent: neither
 *   passes the sidecar, so probes and /metrics are not recorded.
 * - linkerd: both histograms a current proxy exports for its inbound side. `response_latency_ms`
 *   (`direction="inbound"`, Linkerd's bounds: linkerd/linkerd2-proxy linkerd/metrics/src/latency.rs)
 *   and, since linkerd2-proxy 2.342, `inbound_http_request_duration_seconds` (the whole response,
 *   to the end of its stream; bounds REQUEST_BUCKETS of linkerd/app/inbound/src/metrics.rs; labels
 *   parent_* and route_* of linkerd/app/inbound/src/http/router/metrics/labels.rs, no direction).
 *   Both carry the policy route: the kubelet's probes on the route the policy controller names
 *   `probe`, the rest on `default`. Prometheus scrapes the proxy's admin port: /metrics is not
 *   recorded. The `deployment` label is Linkerd's scrape configuration's (from the pod label
 *   linkerd.io/proxy-deployment). linkerd-legacy: `response_latency_ms` alone, as proxies
 *   before 2.342 export it.
 * - opentelemetry: `http_server_request_duration_seconds`, the stable HTTP semantic conventions'
 *   attributes (http.request.method, http.response.status_code, http.route, url.scheme) and
 *   advised bounds (open-telemetry/semantic-conventions docs/http/http-metrics.md). Every request
 *   is recorded, probes included, under its route.
 * - micrometer: Spring Boot's `http_server_requests_seconds` with the percentiles histogram on:
 *   Micrometer's percentile buckets between the timer's 1 ms and 30 s (PercentileHistogramBuckets),
 *   labels error, exception, method, outcome, status, uri. Every request is recorded, the
 *   Actuator's endpoints too; this app's probes count as Actuator health groups do
 *   (uri="/actuator/health/readiness").
 * - ingress-nginx: `nginx_ingress_controller_request_duration_seconds`, as the controller records
 *   a request it proxied to PROXIED_SERVICE (kubernetes/ingress-nginx
 *   internal/ingress/metric/collectors/socket.go: labels status, method, path, namespace, ingress,
 *   service, canary, host, and the controller's constant labels; Prometheus's default bounds).
 *   Only proxied requests: the kubelet's probes and scrapes do not pass an ingress.
 * - envoy: `envoy_cluster_upstream_rq_time`, as an Envoy in front of PROXIED_SERVICE records it in
 *   milliseconds for the upstream cluster Contour names `<namespace>_<service>_<port>`
 *   (projectcontour/contour internal/envoy/v3/cluster.go), Envoy's default bounds.
 *
 * - opentelemetry-otlp: the same instrument as the opentelemetry shape, but as the OpenTelemetry
 *   SDK exports it by default over OTLP: an exponential histogram pushed to
 *   OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, which Prometheus stores as a native histogram (otlp.ts).
 *
 * In the ingress-nginx and envoy shapes demo-service plays the proxy: its own requests are recorded as the
 * requests it sent on to PROXIED_SERVICE. WORKLOAD_NAME and POD_NAMESPACE (the downward API) say
 * what a mesh would know of the pod.
 */
import { Histogram, type Registry } from 'prom-client';
import { createOtlpRecorder, type OtlpOptions, type OtlpRecorder } from './otlp.ts';

/** demo-service's own histograms (metrics.ts), recorded unless METRIC_SHAPES leaves them out. */
export const OWN_SHAPES = ['prometheus-client', 'opentelemetry-legacy'] as const;
export const SHAPES = [
  ...OWN_SHAPES,
  'istio',
  'linkerd',
  'linkerd-legacy',
  'opentelemetry',
  'micrometer',
  'ingress-nginx',
  'envoy',
  'opentelemetry-otlp',
] as const;
export type Shape = (typeof SHAPES)[number];
/** The shapes registered in the pod's own exposition (not pushed). */
type OtherShape = Exclude<Shape, (typeof OWN_SHAPES)[number] | 'opentelemetry-otlp'>;

/** One request as every shape sees it. */
export interface Served {
  method: string;
  /** The route, as demo-service names it (/work, /readyz, /healthz, /metrics, other). */
  route: string;
  status: number;
  ms: number;
}

export interface ShapeContext {
  workload: string;
  namespace: string;
  /** The routes the kubelet probes. */
  probeRoutes: ReadonlySet<string>;
  /** The Service a proxy shape records its requests for. */
  proxiedService: string;
  /** Where the opentelemetry-otlp shape pushes, and how often; required with that shape. */
  otlp?: Omit<OtlpOptions, 'workload' | 'namespace'>;
}

/** Prometheus client libraries' default bounds (DefBuckets), in seconds: ingress-nginx's default. */
export const PROMETHEUS_DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** Envoy's default histogram bounds, in milliseconds. */
export const ENVOY_BUCKETS_MS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
] as const;

/** linkerd2-proxy's response_latency_ms bounds. */
export const LINKERD_BUCKETS_MS = [
  1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000, 10000, 20000,
  30000, 40000, 50000,
] as const;

/** linkerd2-proxy's inbound_http_request_duration_seconds bounds (REQUEST_BUCKETS), in seconds. */
export const LINKERD_REQUEST_BUCKETS_SECONDS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 10] as const;

/** The HTTP semantic conventions' advised bounds for http.server.request.duration, in seconds. */
export const OTEL_BUCKETS_SECONDS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
] as const;

/**
 * Micrometer's percentile histogram bounds between min and max (both included), in seconds:
 * 1, 2, 3 ns, then from each power of 4 upwards in steps of a third of it, up to the next.
 */
export function micrometerBuckets(minSeconds = 0.001, maxSeconds = 30): number[] {
  const nanos = new Set<bigint>([1n, 2n, 3n]);
  for (let exp = 2n; exp < 64n; exp += 2n) {
    let current = 1n << exp;
    const delta = current / 3n;
    const next = (current << 2n) - delta;
    while (current < next) {
      nanos.add(current);
      current += delta;
    }
  }
  const min = BigInt(Math.round(minSeconds * 1e9));
  const max = BigInt(Math.round(maxSeconds * 1e9));
  const kept = [...nanos].filter((n) => n >= min && n <= max);
  return [...new Set([min, ...kept, max])]
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((n) => Number(n) / 1e9);
}

export interface ShapeRecorder {
  record(served: Served): void;
  /** Pushes what a pushing shape holds, and stops it. */
  shutdown(): Promise<void>;
}

/** Registers the shapes' histograms and answers what records into them. */
export function createShapes(
  registry: Registry,
  shapes: readonly Shape[],
  context: ShapeContext,
): ShapeRecorder {
  const recorders = shapes
    .filter((shape): shape is OtherShape => shape in SHAPE_FACTORIES)
    .map((shape) => SHAPE_FACTORIES[shape](registry, context));
  let pushed: OtlpRecorder | undefined;
  if (shapes.includes('opentelemetry-otlp')) {
    if (!context.otlp) throw new Error('the opentelemetry-otlp shape needs an OTLP endpoint');
    pushed = createOtlpRecorder({
      ...context.otlp,
      workload: context.workload,
      namespace: context.namespace,
    });
    recorders.push(pushed.record);
  }
  return {
    record: (served) => {
      for (const record of recorders) record(served);
    },
    shutdown: async () => {
      await pushed?.shutdown();
    },
  };
}

type Factory = (registry: Registry, context: ShapeContext) => (served: Served) => void;

const SHAPE_FACTORIES: Record<OtherShape, Factory> = {
  istio: (registry, { workload, namespace }) => {
    const histogram = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'Istio request duration, as the destination sidecar reports it.',
      labelNames: [
        'reporter',
        'source_workload',
        'source_workload_namespace',
        'destination_workload',
        'destination_workload_namespace',
        'destination_service',
        'destination_canonical_service',
        'request_protocol',
        'response_code',
        'response_flags',
        'connection_security_policy',
      ] as const,
      buckets: [...ENVOY_BUCKETS_MS],
      registers: [registry],
    });
    return ({ route, status, ms }) => {
      // Probes go to the agent, scrapes to the agent: the sidecar never sees them.
      if (route === '/readyz' || route === '/healthz' || route === '/metrics') return;
      histogram.observe(
        {
          reporter: 'destination',
          source_workload: 'unknown',
          source_workload_namespace: 'unknown',
          destination_workload: workload,
          destination_workload_namespace: namespace,
          destination_service: `${workload}.${namespace}.svc.cluster.local`,
          destination_canonical_service: workload,
          request_protocol: 'http',
          response_code: String(status),
          response_flags: '-',
          connection_security_policy: 'none',
        },
        ms,
      );
    };
  },
  linkerd: (registry, context) => {
    const older = linkerdLatency(registry, context);
    const newer = linkerdRequestDuration(registry, context);
    return (served) => {
      older(served);
      newer(served);
    };
  },
  'linkerd-legacy': linkerdLatency,
  opentelemetry: (registry) => {
    const histogram = new Histogram({
      name: 'http_server_request_duration_seconds',
      help: 'Duration of HTTP server requests.',
      labelNames: ['http_request_method', 'http_response_status_code', 'http_route', 'url_scheme'] as const,
      buckets: [...OTEL_BUCKETS_SECONDS],
      registers: [registry],
    });
    return ({ method, route, status, ms }) => {
      histogram.observe(
        {
          http_request_method: method,
          http_response_status_code: String(status),
          http_route: route === 'other' ? '' : route,
          url_scheme: 'http',
        },
        ms / 1000,
      );
    };
  },
  'ingress-nginx': (registry, { namespace, proxiedService }) => {
    const histogram = new Histogram({
      name: 'nginx_ingress_controller_request_duration_seconds',
      help: 'The request processing time in milliseconds',
      labelNames: [
        'status',
        'method',
        'path',
        'namespace',
        'ingress',
        'service',
        'canary',
        'host',
        'controller_namespace',
        'controller_class',
        'controller_pod',
      ] as const,
      buckets: [...PROMETHEUS_DEFAULT_BUCKETS],
      registers: [registry],
    });
    return ({ method, route, status, ms }) => {
      if (route !== '/work') return;
      histogram.observe(
        {
          status: String(status),
          method,
          path: '/',
          namespace,
          ingress: proxiedService,
          service: proxiedService,
          canary: '',
          host: `${proxiedService}.example`,
          controller_namespace: 'ingress-nginx',
          controller_class: 'k8s.io/ingress-nginx',
          controller_pod: 'ingress-nginx-controller',
        },
        ms / 1000,
      );
    };
  },
  envoy: (registry, { namespace, proxiedService }) => {
    const histogram = new Histogram({
      name: 'envoy_cluster_upstream_rq_time',
      help: 'Request time in milliseconds from the first upstream request byte to the last response byte',
      labelNames: ['envoy_cluster_name'] as const,
      buckets: [...ENVOY_BUCKETS_MS],
      registers: [registry],
    });
    return ({ route, ms }) => {
      if (route !== '/work') return;
      histogram.observe({ envoy_cluster_name: `${namespace}_${proxiedService}_80` }, ms);
    };
  },
  micrometer: (registry, { probeRoutes }) => {
    const histogram = new Histogram({
      name: 'http_server_requests_seconds',
      help: 'Duration of HTTP server request handling',
      labelNames: ['error', 'exception', 'method', 'outcome', 'status', 'uri'] as const,
      buckets: micrometerBuckets(),
      registers: [registry],
    });
    return ({ method, route, status, ms }) => {
      const uri = probeRoutes.has(route)
        ? '/actuator/health/readiness'
        : route === '/metrics'
          ? '/actuator/prometheus'
          : route === 'other'
            ? 'UNKNOWN'
            : route;
      const outcome = status < 400 ? 'SUCCESS' : status < 500 ? 'CLIENT_ERROR' : 'SERVER_ERROR';
      histogram.observe(
        { error: 'none', exception: 'none', method, outcome, status: String(status), uri },
        ms / 1000,
      );
    };
  },
};

/** linkerd2-proxy's `response_latency_ms` (inbound), time to the response's first byte. */
function linkerdLatency(registry: Registry, { probeRoutes }: ShapeContext): (served: Served) => void {
  const histogram = new Histogram({
    name: 'response_latency_ms',
    help: "Elapsed times between a request's headers being received and its response stream completing",
    labelNames: [
      'direction',
      'target_addr',
      'tls',
      'srv_group',
      'srv_kind',
      'srv_name',
      'srv_port',
      'route_group',
      'route_kind',
      'route_name',
      'status_code',
    ] as const,
    buckets: [...LINKERD_BUCKETS_MS],
    registers: [registry],
  });
  return ({ route, status, ms }) => {
    if (route === '/metrics') return;
    histogram.observe(
      {
        direction: 'inbound',
        target_addr: '0.0.0.0:8080',
        tls: 'no_identity',
        srv_group: '',
        srv_kind: 'default',
        srv_name: 'all-unauthenticated',
        srv_port: '8080',
        route_group: '',
        route_kind: 'default',
        route_name: probeRoutes.has(route) ? 'probe' : 'default',
        status_code: String(status),
      },
      ms,
    );
  };
}

/** linkerd2-proxy's `inbound_http_request_duration_seconds` (2.342 on), to the end of the response. */
function linkerdRequestDuration(registry: Registry, { probeRoutes }: ShapeContext): (served: Served) => void {
  const histogram = new Histogram({
    name: 'inbound_http_request_duration_seconds',
    help: 'Inbound HTTP request durations, to the end of the response stream, as linkerd2-proxy records them.',
    labelNames: [
      'parent_group',
      'parent_kind',
      'parent_name',
      'parent_port',
      'route_group',
      'route_kind',
      'route_name',
    ] as const,
    buckets: [...LINKERD_REQUEST_BUCKETS_SECONDS],
    registers: [registry],
  });
  return ({ route, ms }) => {
    if (route === '/metrics') return;
    histogram.observe(
      {
        parent_group: 'core',
        parent_kind: 'default',
        parent_name: 'all-unauthenticated',
        parent_port: '8080',
        route_group: '',
        route_kind: 'default',
        route_name: probeRoutes.has(route) ? 'probe' : 'default',
      },
      ms / 1000,
    );
  };
}
