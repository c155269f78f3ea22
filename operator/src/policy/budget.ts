// When a change may reach a running Deployment: at most rollout.maxConcurrent Deployments of a
// policy rolling at once, paused and mid-rollout Deployments retried later.
import type { V1Deployment } from '@kubernetes/client-node';
import type { ValidPolicy } from './types.ts';

export type RolloutWaitReason = 'Paused' | 'RollingOut' | 'RolloutBudgetExhausted' | 'WaitingForNextRollout';

export type RolloutDecision =
  | { kind: 'Apply' }
  | { kind: 'Wait'; reason: RolloutWaitReason; message: string };

function desiredReplicas(deployment: V1Deployment): number {
  // The apiserver defaults spec.replicas to 1.
  return deployment.spec?.replicas ?? 1;
}

/** The Deployment controller has not yet seen the latest spec (a template or replica change). */
function generationUnobserved(deployment: V1Deployment): boolean {
  const generation = deployment.metadata?.generation;
  if (generation === undefined) return false;
  const observed = deployment.status?.observedGeneration;
  return observed === undefined || generation > observed;
}

/**
 * True while a rollout is in progress: a new generation not yet observed, fewer updated, ready
 * or available replicas than wanted, or more replicas than wanted (old pods still running).
 */
export function isRolling(deployment: V1Deployment): boolean {
  if (generationUnobserved(deployment)) return true;
  const replicas = desiredReplicas(deployment);
  const status = deployment.status ?? {};
  if ((status.updatedReplicas ?? 0) < replicas) return true;
  if ((status.readyReplicas ?? 0) < replicas) return true;
  if ((status.availableReplicas ?? 0) < replicas) return true;
  return (status.replicas ?? 0) > replicas;
}

export function isPaused(deployment: V1Deployment): boolean {
  return deployment.spec?.paused === true;
}

/**
 * The Deployment is rolling out its own template change: a patch now joins that rollout
 * instead of starting another one (what OnNextRollout waits for).
 */
export function isTemplateRolloutInProgress(deployment: V1Deployment): boolean {
  if (generationUnobserved(deployment)) return true;
  return (deployment.status?.updatedReplicas ?? 0) < desiredReplicas(deployment);
}

export interface RolloutInput {
  policy: ValidPolicy;
  deployment: V1Deployment;
  /** Keys of this policy's Deployments that are rolling now or reserved for a write in flight. */
  rollingKeys: ReadonlySet<string>;
  /** This Deployment's "namespace/name". */
  key: string;
}

function budgetExhausted(input: RolloutInput): RolloutDecision | undefined {
  const { maxConcurrent } = input.policy.spec.rollout;
  let others = 0;
  for (const key of input.rollingKeys) if (key !== input.key) others++;
  if (others < maxConcurrent) return undefined;
  return {
    kind: 'Wait',
    reason: 'RolloutBudgetExhausted',
    message: `${others} Deployments of policy ${input.policy.name} are rolling out, rollout.maxConcurrent is ${maxConcurrent}`,
  };
}

/** Whether the operator may write to the Deployment now, and if not, why. */
export function rolloutDecision(input: RolloutInput): RolloutDecision {
  const { policy, deployment } = input;
  if (isPaused(deployment)) {
    return { kind: 'Wait', reason: 'Paused', message: 'the Deployment is paused; retried when it resumes' };
  }
  if (policy.spec.rollout.updateExisting === 'OnNextRollout') {
    if (!isTemplateRolloutInProgress(deployment)) {
      return {
        kind: 'Wait',
        reason: 'WaitingForNextRollout',
        message: 'rollout.updateExisting is OnNextRollout: applied when the pod template next changes',
      };
    }
    return budgetExhausted(input) ?? { kind: 'Apply' };
  }
  if (isRolling(deployment)) {
    return {
      kind: 'Wait',
      reason: 'RollingOut',
      message: 'the Deployment is rolling out; retried when the rollout completes',
    };
  }
  return budgetExhausted(input) ?? { kind: 'Apply' };
}
