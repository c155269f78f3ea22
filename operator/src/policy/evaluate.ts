// One evaluation of a Deployment under the policies: which policy governs it and what that
// policy plans for it. The Deployment controller, the policy status pass, the admission webhook
// and `gsp audit` all call it, so that the four decide the same for the same input; each adds
// only what it alone knows (the controller and the status its rollout budget, the webhook the
// request, the CLI nothing). Pure: the planner brings the sources (memoized in the controllers).
import type { V1Deployment } from '@kubernetes/client-node';
import type { WorkloadStatus } from '../api/policy.ts';
import { type VerdictInput, workloadVerdict } from './compliance.ts';
import { matchDeployment } from './match.ts';
import type { PlanResult } from './plan.ts';
import type { AnnotationError, ValidPolicy } from './types.ts';

export type PlannedWorkload = Extract<PlanResult, { ok: true }>;

export type Evaluation =
  /** No valid policy selects the Deployment. */
  | { kind: 'Unmatched' }
  /** It carries gracefulshutdown.dev/exclude: "true": every selecting policy leaves it alone. */
  | { kind: 'OptedOut'; policies: ValidPolicy[] }
  /** The winning policy cannot plan it: its per-Deployment annotations are invalid. */
  | {
      kind: 'InvalidAnnotations';
      policy: ValidPolicy;
      /** The other selecting policies, which report it OtherPolicyWins. */
      losers: ValidPolicy[];
      errors: AnnotationError[];
    }
  /** The winning policy's plan for it. */
  | { kind: 'Planned'; policy: ValidPolicy; losers: ValidPolicy[]; planned: PlannedWorkload };

/** Plans a Deployment under a policy, with the caller's sources (policy/plan.ts). */
export type Planner = (deployment: V1Deployment, policy: ValidPolicy) => PlanResult;

export function evaluate(
  deployment: V1Deployment,
  policies: readonly ValidPolicy[],
  namespaceLabels: Record<string, string> | undefined,
  plan: Planner,
): Evaluation {
  const match = matchDeployment(policies, deployment, namespaceLabels);
  if (match.kind !== 'Matched') return match;
  const { policy, losers } = match;
  const planned = plan(deployment, policy);
  if (!planned.ok) return { kind: 'InvalidAnnotations', policy, losers, errors: planned.errors };
  return { kind: 'Planned', policy, losers, planned };
}

/** What a caller knows of a planned Deployment besides the plan (the rollout budget, its record). */
export type PlannedExtras = Pick<
  Extract<VerdictInput, { kind: 'Planned' }>,
  'decision' | 'freshness' | 'managed' | 'recordRefused'
>;

/**
 * The Deployment's line in policy `name`'s status: OptedOut, OtherPolicyWins (another policy
 * selecting it wins), InvalidAnnotation, or the plan's verdict. Undefined where that policy
 * does not select it.
 */
export function verdictFor(
  deployment: V1Deployment,
  evaluation: Evaluation,
  name: string,
  extras: PlannedExtras = {},
): WorkloadStatus | undefined {
  switch (evaluation.kind) {
    case 'Unmatched':
      return undefined;
    case 'OptedOut':
      return evaluation.policies.some((p) => p.name === name)
        ? workloadVerdict({ kind: 'OptedOut', deployment })
        : undefined;
    default:
  }
  if (evaluation.policy.name !== name)
    return evaluation.losers.some((p) => p.name === name)
      ? workloadVerdict({ kind: 'OtherPolicyWins', deployment, winner: evaluation.policy })
      : undefined;
  if (evaluation.kind === 'InvalidAnnotations')
    return workloadVerdict({ kind: 'InvalidAnnotations', deployment, errors: evaluation.errors });
  const { planned, policy } = evaluation;
  return workloadVerdict({
    kind: 'Planned',
    deployment,
    policy,
    plan: planned.plan,
    diff: planned.diff,
    observation: planned.observation,
    mode: policy.spec.mode,
    ...extras,
  });
}
