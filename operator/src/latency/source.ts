// The one interface through which observed latency enters the operator: the Prometheus source
// (prometheus.ts) and the Scrape source (scrape.ts). Only the leader's refresher (refresher.ts)
// calls them; planning reads the published estimates (estimates.ts), never a source.
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
  /**
   * The HTTP paths the kubelet probes on its pods (readiness, liveness, startup): requests to
   * them are the kubelet's, not the workload's traffic, and are left out where a series says
   * its route.
   */
  probePaths?: string[];
  /**
   * The Services of its namespace whose selector selects its pod template: what a proxy's
   * histogram (an ingress controller's, Envoy's) names instead of the workload.
   */
  services?: string[];
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
  /**
   * Observes many workloads of one policy in few requests (Prometheus: one query per chunk of
   * namespaces). Answers those it covers, by `namespace/name`; the refresher asks observe()
   * for the rest. Never throws.
   */
  observeMany?(
    workloads: readonly Workload[],
    policy: ObservedLatencyPolicy,
    signal?: AbortSignal,
  ): Promise<Map<string, LatencyObservation>>;
}
