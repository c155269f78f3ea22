// The one interface through which drain time enters the operator. Real sources (Prometheus,
// scraping the pods) plug in here; the policy arithmetic only sees a LatencyObservation.
import type { V1LabelSelector } from '@kubernetes/client-node';
import type { ObservedLatencyPolicy } from '../api/policy.ts';
import type { LatencyObservation } from '../policy/types.ts';

export interface Workload {
  namespace: string;
  name: string;
  /** The Deployment's pod selector labels, for sources that find its pods or series. */
  podLabels: Record<string, string>;
  /** The Deployment's whole selector (matchLabels and matchExpressions), to find its pods. */
  selector?: V1LabelSelector;
}

/**
 * One way of observing a workload's request latency. Sources do I/O and may be slow: only the
 * leader's refresher calls them (bounded, with a timeout in `signal`), never a reconciler. They
 * never throw: a failure is an observation with `known: false, unavailable: true`.
 */
export interface LatencySource {
  observe(
    workload: Workload,
    policy: ObservedLatencyPolicy,
    signal?: AbortSignal,
  ): Promise<LatencyObservation>;
}

/**
 * Reports "unknown" for every workload, saying why: the policy's source None means no
 * observation is wanted; Prometheus and Scrape sources are not implemented yet, so the
 * policy's defaults (drain time 0, bounded below by minSeconds) apply and status says so.
 */
export class UnknownLatencySource implements LatencySource {
  async observe(_workload: Workload, policy: ObservedLatencyPolicy): Promise<LatencyObservation> {
    if (policy.source === 'None') {
      return { known: false, source: 'None', reason: 'observedLatency.source is None' };
    }
    return {
      known: false,
      source: policy.source,
      reason: `the ${policy.source} latency source is not implemented in this version of the operator`,
    };
  }
}
