// The operator's own metrics, beside the controller-runtime ones (runtime/metrics.ts).
import { Counter, Gauge, type Registry } from 'prom-client';

export interface OperatorMetrics {
  /** Every write to a Deployment (operation apply|release|replace): steady state means this stays flat. */
  deploymentWrites: Counter<'policy' | 'operation'>;
  /** Deployments that waited for their policy's rollout budget (or paused/mid-rollout/next rollout). */
  rolloutWaits: Counter<'policy' | 'reason'>;
  /** Deployments per policy and verdict (Compliant, NonCompliant, Exempt, Unknown), from status. */
  policyWorkloads: Gauge<'policy' | 'verdict'>;
  /** Writes of a policy's status: flat in steady state (status is written only when it changes). */
  statusWrites: Counter<'policy'>;
  /** 1 when the policy's spec passes the operator's validation, else 0. */
  policyAccepted: Gauge<'policy'>;
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
  };
}
