// The operator's own metrics, beside the controller-runtime ones (runtime/metrics.ts).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface OperatorMetrics {
  /** Every write to a Deployment (operation apply|release|replace): steady state means this stays flat. */
  deploymentWrites: Counter<'policy' | 'operation'>;
  /** Deployments that waited for their policy's rollout budget (or paused/mid-rollout/next rollout). */
  rolloutWaits: Counter<'policy' | 'reason'>;
  /** Rollouts the operator started that failed, by the action taken (rollout.onFailure Pause|Revert). */
  rolloutFailures: Counter<'policy' | 'action'>;
  /**
   * Another field manager set back a field the operator wrote (policy/conflicts.ts), by what the
   * operator did: reapplied (once) or held. Manager names are not labels (unbounded); status,
   * Events and logs name them.
   */
  fieldConflicts: Counter<'policy' | 'action'>;
  /** 1 while the policy's rollout breaker is open (failures in rollout.breakerNamespaces namespaces), else 0; from status. */
  rolloutBreakerOpen: Gauge<'policy'>;
  /** Namespaces where a rollout the operator started failed (no new rollouts there); from status. */
  heldNamespaces: Gauge<'policy'>;
  /** Matched Deployments whose record the operator refused (no valid seal); from status. */
  refusedRecords: Gauge<'policy'>;
  /** Deployments whose readiness probe checks run or wait (controllers/probe-checks.ts). */
  probeChecks: Gauge<'state'>;
  /** Matched Deployments whose change waits, by reason (Paused, Unhealthy, BreakerOpen, ...); from status. */
  policyWaiting: Gauge<'policy' | 'reason'>;
  /** Deployments per policy and verdict (Compliant, NonCompliant, Exempt, Unknown), from status. */
  policyWorkloads: Gauge<'policy' | 'verdict'>;
  /** Writes of a policy's status: flat in steady state (status is written only when it changes). */
  statusWrites: Counter<'policy'>;
  /** 1 when the policy's spec passes the operator's validation, else 0. */
  policyAccepted: Gauge<'policy'>;
  /** The highest latency the policy's workloads are planned with (seconds, at its percentile). */
  latencyObservedSeconds: Gauge<'policy'>;
  /** The highest grace period the policy recommends for its workloads. */
  recommendedGraceSeconds: Gauge<'policy'>;
  /** Age of the oldest latency estimate behind the policy's plans (grows while the source fails). */
  latencyEstimateAgeSeconds: Gauge<'policy'>;
  /** Latency source requests by outcome (known, unknown, unavailable). */
  latencySourceRequests: Counter<'policy' | 'source' | 'outcome'>;
  /** How long latency source requests take. */
  latencySourceDuration: Histogram<'source'>;
  /** How long the admission webhook takes to answer, by operation and outcome (Mutated, Warned, ...). */
  admissionDuration: Histogram<'operation' | 'outcome'>;
  /** When the webhook's CA and serving certificate expire (Unix seconds), as this replica loaded them. */
  webhookCertificateExpiry: Gauge<'certificate'>;
  /** Containers of governed Deployments' deleted pods, by how they ended: Clean, or Killed at the deadline. */
  shutdowns: Counter<'policy' | 'outcome'>;
  /** From the start of a pod's deletion to its container's end. */
  shutdownSeconds: Histogram<'policy' | 'outcome'>;
  /** Writes of policy reports (apply, delete): flat in steady state. */
  reportWrites: Counter<'policy' | 'operation'>;
  /**
   * The distribution, across a policy's workloads, of the grace period it recommends and of the
   * latency it observed: cumulative bucket gauges (`le`), so histogram_quantile() reads them;
   * set whole at each status pass (a gauge histogram: a snapshot, not a count of events).
   */
  recommendedGraceDistribution: Gauge<'policy' | 'le'>;
  observedLatencyDistribution: Gauge<'policy' | 'le'>;
}

/** Bucket bounds of the distributions (seconds). */
export const GRACE_BUCKETS = [10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 3600];
export const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Sets a bucket-gauge distribution from values: for each bound, how many are at most it; +Inf all. */
export function setDistribution(
  gauge: Gauge<'policy' | 'le'>,
  policy: string,
  bounds: readonly number[],
  values: readonly number[],
): void {
  for (const le of bounds) gauge.set({ policy, le: String(le) }, values.filter((v) => v <= le).length);
  gauge.set({ policy, le: '+Inf' }, values.length);
}

/** Removes a policy's distribution. */
export function removeDistribution(
  gauge: Gauge<'policy' | 'le'>,
  policy: string,
  bounds: readonly number[],
): void {
  for (const le of [...bounds.map(String), '+Inf']) gauge.remove({ policy, le });
}

export function createOperatorMetrics(registry: Registry): OperatorMetrics {
  const registers = [registry];
  return {
    deploymentWrites: new Counter({
      name: 'gracefulshutdown_deployment_writes_total',
      help: 'Writes (server-side apply) of shutdown settings to Deployments',
      labelNames: ['policy', 'operation'] as const,
      registers,
    }),
    rolloutWaits: new Counter({
      name: 'gracefulshutdown_rollout_waits_total',
      help: 'Times a Deployment change was held back, by reason (RolloutBudgetExhausted, Paused, ...)',
      labelNames: ['policy', 'reason'] as const,
      registers,
    }),
    rolloutFailures: new Counter({
      name: 'gracefulshutdown_rollout_failures_total',
      help: 'Rollouts the operator started that did not progress, by the action taken (Pause or Revert)',
      labelNames: ['policy', 'action'] as const,
      registers,
    }),
    fieldConflicts: new Counter({
      name: 'gracefulshutdown_field_conflicts_total',
      help: 'Fields the operator wrote that another field manager set back, by what the operator did (reapplied once, or held the Deployment)',
      labelNames: ['policy', 'action'] as const,
      registers,
    }),
    rolloutBreakerOpen: new Gauge({
      name: 'gracefulshutdown_rollout_breaker_open',
      help: '1 while the policy starts no rollouts in any namespace because rollouts it started failed in rollout.breakerNamespaces namespaces (its RolloutBreakerOpen condition), else 0',
      labelNames: ['policy'] as const,
      registers,
    }),
    heldNamespaces: new Gauge({
      name: 'gracefulshutdown_rollout_held_namespaces',
      help: 'Namespaces where a rollout the policy started failed: no new rollouts there until it is fixed (status.heldNamespaces)',
      labelNames: ['policy'] as const,
      registers,
    }),
    probeChecks: new Gauge({
      name: 'gracefulshutdown_probe_checks',
      help: 'Deployments whose readiness probe checks are running or queued (state); at most 8 run at once, 2 per namespace, outside the reconcile workers',
      labelNames: ['state'] as const,
      registers,
    }),
    refusedRecords: new Gauge({
      name: 'gracefulshutdown_records_refused',
      help: "Matched Deployments whose gracefulshutdown.dev/applied record carries no valid seal of the operator's: its rollout, failure and conflict are ignored",
      labelNames: ['policy'] as const,
      registers,
    }),
    policyWaiting: new Gauge({
      name: 'gracefulshutdown_policy_waiting_workloads',
      help: 'Non-compliant Deployments whose change waits, by reason (Paused, Unhealthy, RolloutBudgetExhausted, BreakerOpen, ...)',
      labelNames: ['policy', 'reason'] as const,
      registers,
    }),
    policyWorkloads: new Gauge({
      name: 'gracefulshutdown_policy_workloads',
      help: 'Deployments selected by a policy, by compliance verdict',
      labelNames: ['policy', 'verdict'] as const,
      registers,
    }),
    statusWrites: new Counter({
      name: 'gracefulshutdown_policy_status_writes_total',
      help: 'Writes of GracefulShutdownPolicy status',
      labelNames: ['policy'] as const,
      registers,
    }),
    policyAccepted: new Gauge({
      name: 'gracefulshutdown_policy_accepted',
      help: '1 when the policy spec is valid, 0 when it is rejected (see its Accepted condition)',
      labelNames: ['policy'] as const,
      registers,
    }),
    latencyObservedSeconds: new Gauge({
      name: 'gracefulshutdown_latency_observed_seconds',
      help: "The highest observed request latency (at the policy's percentile) its plans use",
      labelNames: ['policy'] as const,
      registers,
    }),
    recommendedGraceSeconds: new Gauge({
      name: 'gracefulshutdown_recommended_grace_seconds',
      help: 'The highest terminationGracePeriodSeconds the policy recommends',
      labelNames: ['policy'] as const,
      registers,
    }),
    latencyEstimateAgeSeconds: new Gauge({
      name: 'gracefulshutdown_latency_estimate_age_seconds',
      help: 'Age of the oldest latency estimate the policy plans with (grows while its source fails)',
      labelNames: ['policy'] as const,
      registers,
    }),
    latencySourceRequests: new Counter({
      name: 'gracefulshutdown_latency_source_requests_total',
      help: "Latency observations of one workload by outcome (from a policy's grouped Prometheus query, a Prometheus query of its own, or a scrape of its pods)",
      labelNames: ['policy', 'source', 'outcome'] as const,
      registers,
    }),
    latencySourceDuration: new Histogram({
      name: 'gracefulshutdown_latency_source_request_duration_seconds',
      help: 'How long a latency source request takes (a grouped Prometheus query for many workloads, or one workload)',
      labelNames: ['source'] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    admissionDuration: new Histogram({
      name: 'gracefulshutdown_admission_duration_seconds',
      help: 'How long the admission webhook takes to decide on a Deployment (its count is the request count), by operation and outcome',
      labelNames: ['operation', 'outcome'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    shutdowns: new Counter({
      name: 'gracefulshutdown_shutdowns_total',
      help: 'Containers of deleted pods of Deployments a policy governs, by how they ended: Clean (before the grace period ran out) or Killed (SIGKILL at its end: requests in flight were cut)',
      labelNames: ['policy', 'outcome'] as const,
      registers,
    }),
    shutdownSeconds: new Histogram({
      name: 'gracefulshutdown_shutdown_duration_seconds',
      help: "From the start of a pod's deletion (preStop, then SIGTERM) to its container's end, by outcome",
      labelNames: ['policy', 'outcome'] as const,
      buckets: [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300],
      registers,
    }),
    reportWrites: new Counter({
      name: 'gracefulshutdown_policy_report_writes_total',
      help: 'Writes of policy reports (openreports.io Reports or wgpolicyk8s.io PolicyReports), by operation',
      labelNames: ['policy', 'operation'] as const,
      registers,
    }),
    recommendedGraceDistribution: new Gauge({
      name: 'gracefulshutdown_workloads_recommended_grace_seconds_bucket',
      help: 'Workloads of the policy whose recommended terminationGracePeriodSeconds is at most le (a gauge histogram: histogram_quantile() reads it)',
      labelNames: ['policy', 'le'] as const,
      registers,
    }),
    observedLatencyDistribution: new Gauge({
      name: 'gracefulshutdown_workloads_observed_latency_seconds_bucket',
      help: "Workloads of the policy whose observed latency (at the policy's percentile) is at most le (a gauge histogram)",
      labelNames: ['policy', 'le'] as const,
      registers,
    }),
    webhookCertificateExpiry: new Gauge({
      name: 'gracefulshutdown_webhook_certificate_expiry_timestamp_seconds',
      help: "When the webhook's certificate expires (Unix seconds): certificate ca or serving, as this replica serves it",
      labelNames: ['certificate'] as const,
      registers,
    }),
  };
}
