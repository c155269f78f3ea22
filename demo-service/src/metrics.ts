/**
 * demo-service metrics. The operator scrapes these to observe latency: keep the names stable.
 *
 * - http_request_duration_seconds{method,route,status_code}  histogram, 1 ms .. 60 s
 * - http_server_duration_milliseconds{http_method,http_route,http_status_code,http_scheme}
 *                                                             the same in milliseconds, as
 *                                                             OpenTelemetry's older HTTP convention
 *                                                             names and labels it (its bounds the
 *                                                             seconds ones x 1000, as a view would
 *                                                             set them): a policy reading it must
 *                                                             come to the same p99 in seconds
 * - the histograms of other stacks named in METRIC_SHAPES (shapes.ts)
 * - http_requests_in_flight                                   gauge
 * - http_server_drain_phase                                   gauge: 0 serving, 1 propagating,
 *                                                             2 draining, 3 drained, 4 forced
 * - http_server_shutdown_duration_seconds                     gauge, set when the drain ends
 * - http_server_forced_closes_total                           counter, connections cut at the deadline
 * - http_server_dropped_connections_total                     counter, connections refused at MAX_CONNECTIONS
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type DrainPhase, type DrainResult, drainPhases } from './drain.ts';

/** 1-2-5 steps from 1 ms to 60 s: fine enough to read a p99 from, for fast and slow services. */
export const durationBuckets = [
  0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60,
] as const;

export interface DemoMetrics {
  registry: Registry;
  requestDuration: Histogram<'method' | 'route' | 'status_code'>;
  /** requestDuration's twin in milliseconds. */
  requestDurationMs: Histogram<'http_method' | 'http_route' | 'http_status_code' | 'http_scheme'>;
  inFlight: Gauge;
  droppedConnections: Counter;
  setPhase(phase: DrainPhase): void;
  recordDrain(result: DrainResult): void;
}

export function createMetrics(): DemoMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requestDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request received to response finished.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [...durationBuckets],
    registers: [registry],
  });
  const requestDurationMs = new Histogram({
    name: 'http_server_duration_milliseconds',
    help: 'Time from request received to response finished, in milliseconds.',
    labelNames: ['http_method', 'http_route', 'http_status_code', 'http_scheme'] as const,
    buckets: durationBuckets.map((seconds) => seconds * 1000),
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: 'http_requests_in_flight',
    help: 'Requests received and not yet answered.',
    registers: [registry],
  });
  const phase = new Gauge({
    name: 'http_server_drain_phase',
    help: 'Drain phase: 0 serving, 1 propagating, 2 draining, 3 drained, 4 forced.',
    registers: [registry],
  });
  const shutdownDuration = new Gauge({
    name: 'http_server_shutdown_duration_seconds',
    help: 'Duration of the last drain, from SIGTERM to the last connection closed or the deadline.',
    registers: [registry],
  });
  const forcedCloses = new Counter({
    name: 'http_server_forced_closes_total',
    help: 'Connections destroyed at the drain deadline while a request on them was still running.',
    registers: [registry],
  });
  const droppedConnections = new Counter({
    name: 'http_server_dropped_connections_total',
    help: 'Connections closed at once because MAX_CONNECTIONS connections were open.',
    registers: [registry],
  });
  phase.set(drainPhases.serving);
  return {
    registry,
    requestDuration,
    requestDurationMs,
    inFlight,
    droppedConnections,
    setPhase: (next) => phase.set(drainPhases[next]),
    recordDrain: (result) => {
      shutdownDuration.set(result.durationMs / 1000);
      forcedCloses.inc(result.forcedCloses);
    },
  };
}
