// The unit of a latency histogram's `le` bounds. Istio (istio_request_duration_milliseconds),
// Linkerd (response_latency_ms) and Envoy (envoy_cluster_upstream_rq_time) count milliseconds;
// read as seconds, their p99 would be a thousand times too long (Flagger's users met both ways
// of getting it wrong: fluxcd/flagger#478, #1446). Everything the operator reports is seconds.
import type { ObservedLatencyPolicy } from '../api/policy.ts';

export type LatencyUnit = NonNullable<ObservedLatencyPolicy['unit']>;

/** The policy's unit, or the one the metric's name says (_milliseconds, _ms), else Seconds. */
export function unitOf(policy: { metric: string; unit?: LatencyUnit | undefined }): LatencyUnit {
  if (policy.unit) return policy.unit;
  return /_(milliseconds|ms)$/.test(policy.metric) ? 'Milliseconds' : 'Seconds';
}

/** Seconds per unit of the histogram's bounds: what a quantile in that unit is multiplied by. */
export function secondsPerUnit(unit: LatencyUnit): number {
  return unit === 'Milliseconds' ? 0.001 : 1;
}
