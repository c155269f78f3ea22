/**
 * The opentelemetry-otlp shape: demo-service's requests as an application instrumented with the
 * OpenTelemetry SDK records them and pushes them over OTLP, here to Prometheus's OTLP receiver
 * (`/api/v1/otlp/v1/metrics`). The instrument is the stable HTTP semantic conventions'
 * `http.server.request.duration` (unit `s`, attributes http.request.method,
 * http.response.status_code, http.route, url.scheme) aggregated as an exponential histogram, which
 * Prometheus stores as a native histogram named `http_server_request_duration_seconds`. The
 * resource carries the k8s.* attributes a Kubernetes resource detector or the Collector's
 * k8sattributes processor would add; Prometheus promotes those it is told to
 * (`otlp.promote_resource_attributes`) to labels (k8s_namespace_name, k8s_deployment_name).
 *
 * Every request is recorded under its route, probes and scrapes included, as an instrumented
 * HTTP server does. Cumulative temporality (the exporter's default), which Prometheus's receiver
 * takes without a feature flag. The OpenTelemetry SDK is a dependency of the package that
 * demo-service's image keeps and the operator's image prunes (the operator never imports
 * demo-service).
 */
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationType, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import type { Served } from './shapes.ts';

export const OTEL_INSTRUMENT = 'http.server.request.duration';

export interface OtlpOptions {
  /** The OTLP/HTTP metrics endpoint, e.g. http://10.88.0.1:9090/api/v1/otlp/v1/metrics. */
  endpoint: string;
  /** How often the reader exports, in ms (OTEL_METRIC_EXPORT_INTERVAL). */
  intervalMs: number;
  workload: string;
  namespace: string;
  pod: string;
}

export interface OtlpRecorder {
  record(served: Served): void;
  /** Exports what is pending and stops the reader. */
  shutdown(): Promise<void>;
}

export function createOtlpRecorder(options: OtlpOptions): OtlpRecorder {
  const exporter = new OTLPMetricExporter({
    url: options.endpoint,
    timeoutMillis: Math.min(10_000, options.intervalMs),
  });
  const reader = new PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: options.intervalMs,
    exportTimeoutMillis: Math.min(10_000, options.intervalMs),
  });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({
      'service.name': options.workload,
      'service.namespace': options.namespace,
      'service.instance.id': options.pod,
      'k8s.namespace.name': options.namespace,
      'k8s.deployment.name': options.workload,
      'k8s.pod.name': options.pod,
    }),
    views: [
      { instrumentName: OTEL_INSTRUMENT, aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM } },
    ],
    readers: [reader],
  });
  const histogram = provider.getMeter('demo-service').createHistogram(OTEL_INSTRUMENT, {
    unit: 's',
    description: 'Duration of HTTP server requests.',
  });
  return {
    record: ({ method, route, status, ms }) =>
      histogram.record(ms / 1000, {
        'http.request.method': method,
        'http.response.status_code': status,
        ...(route === 'other' ? {} : { 'http.route': route }),
        'url.scheme': 'http',
      }),
    shutdown: () => provider.shutdown(),
  };
}
