// When a change may reach a running Deployment. The budget counts only the rollouts the
// operator itself started and that have not finished: a Deployment that is paused, rolling out
// for its own reasons or unhealthy (crash-looping, unschedulable) waits without taking a slot,
// and is never patched while broken. A rollout of the operator's that fails opens the policy's
// circuit breaker: no new rollouts until the cause is fixed (docs/design/rollouts.md).
import { createHash } from 'node:crypto';
import type { V1Deployment } from '@kubernetes/client-node';
import { fieldsTakenOver } from './conflicts.ts';
import type { AppliedRecord } from './ownership.ts';
import { canonicalJson } from './podspec.ts';
import type { ValidPolicy } from './types.ts';

/** Why a change waits; the status counts waiting Deployments by these. */
export const ROLLOUT_WAIT_REASONS = [
  'Paused',
  'RollingOut',
  'Unhealthy',
  'RolloutBudgetExhausted',
  'WaitingForNextRollout',
  'BreakerOpen',
  'RolloutFailed',
  'ConflictingManager',
] as const;
export type RolloutWaitReason = (typeof ROLLOUT_WAIT_REASONS)[number];

export type RolloutDecision =
  | { kind: 'Apply' }
  | { kind: 'Wait'; reason: RolloutWaitReason; message: string };

/** Where a Deployment stands, as far as starting a rollout on it goes. */
export type RolloutState =
  | { kind: 'Settled' }
  | { kind: 'Paused' }
  /** The operator's own rollout (its record names this generation) has not finished. */
  | { kind: 'OwnRollout'; startedAt: number }
  /** ... and does not progress: the breaker opens. */
  | { kind: 'OwnRolloutFailed'; reason: string; message: string }
  /** The operator's rollout failed earlier and nothing has changed since: left alone. */
  | { kind: 'Failed'; message: string }
  /** A rollout the operator did not start; `template` when the pod template changed (not a scale). */
  | { kind: 'RollingOut'; template: boolean }
  /** No rollout, yet replicas are missing: crash-looping, unschedulable, scaled up and pending. */
  | { kind: 'Unhealthy'; message: string };

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
 * Pods of an older pod template are still running: the template changed (a scale or a metadata
 * edit never leaves pods of another template). What OnNextRollout waits for.
 */
export function isTemplateRolloutInProgress(deployment: V1Deployment): boolean {
  if (generationUnobserved(deployment)) return false;
  const status = deployment.status ?? {};
  return (status.updatedReplicas ?? 0) < (status.replicas ?? 0);
}

/**
 * Hashes by pod template object: the Deployment cache gives a status update the previous
 * version's spec (kube/informer.ts shareUnchangedParts), so a template is hashed once, not on
 * every event of its rollout. Cached objects are never mutated.
 */
const templateHashes = new WeakMap<object, string>();

/** A short hash of the pod template: tells a template change from a scale or metadata edit. */
export function templateHash(deployment: V1Deployment): string {
  const template = deployment.spec?.template ?? {};
  let hash = templateHashes.get(template);
  if (hash === undefined) {
    hash = createHash('sha256').update(canonicalJson(template)).digest('hex').slice(0, 16);
    templateHashes.set(template, hash);
  }
  return hash;
}

const progressing = (deployment: V1Deployment) =>
  deployment.status?.conditions?.find((c) => c.type === 'Progressing');

function unavailableMessage(deployment: V1Deployment): string {
  const replicas = desiredReplicas(deployment);
  const available = deployment.status?.availableReplicas ?? 0;
  const condition = deployment.status?.conditions?.find(
    (c) => (c.type === 'Progressing' || c.type === 'Available') && c.status === 'False',
  );
  const detail = condition?.message ? `: ${condition.message}` : '';
  return `${replicas - available} of ${replicas} replicas unavailable${detail}`;
}

/**
 * The rollout that produced `generation` has completed: the Deployment controller has observed
 * it and reports its new ReplicaSet available (Progressing, reason NewReplicaSetAvailable, kept
 * until another template starts rolling), or no rollout is in progress at all.
 */
export function rolloutCompleted(deployment: V1Deployment, generation: number): boolean {
  if ((deployment.status?.observedGeneration ?? 0) < generation) return false;
  return progressing(deployment)?.reason === 'NewReplicaSetAvailable' || !isRolling(deployment);
}

/**
 * All that rolloutState, isRolling and rolloutCompleted read of a Deployment's status, as one
 * string: a status update that leaves it as it was changes none of their answers. Most events
 * of a rollout only move its counts (2 of 3 updated, then 3 of 3 ready...) and leave it as it was.
 */
export function rolloutSignature(deployment: V1Deployment): string {
  const status = deployment.status ?? {};
  const replicas = desiredReplicas(deployment);
  const condition = progressing(deployment);
  const reason = condition?.reason;
  return [
    status.observedGeneration ?? '',
    (status.updatedReplicas ?? 0) < replicas,
    (status.readyReplicas ?? 0) < replicas,
    (status.availableReplicas ?? 0) < replicas,
    (status.replicas ?? 0) > replicas,
    (status.updatedReplicas ?? 0) < (status.replicas ?? 0),
    condition?.status ?? '',
    reason === 'NewReplicaSetAvailable' || reason === 'ProgressDeadlineExceeded' ? reason : '',
  ].join('|');
}

/** The failure a record carries that still holds: same policy generation, template unchanged. */
export function standingFailure(
  deployment: V1Deployment,
  record: AppliedRecord | undefined,
  policy: ValidPolicy,
): AppliedRecord['failure'] {
  const failure = record?.failure;
  if (!failure || record?.policy !== policy.name) return undefined;
  if (failure.policyGeneration !== policy.generation) return undefined;
  // A revert still to do, or a template nobody has changed since the failure.
  if (failure.template === undefined || failure.template === templateHash(deployment)) return failure;
  return undefined;
}

/** Where the Deployment stands; `now` in epoch milliseconds. */
export function rolloutState(
  deployment: V1Deployment,
  record: AppliedRecord | undefined,
  policy: ValidPolicy,
  now: number,
  memory: {
    /** This replica started the rollout and has not seen it end (controllers/rollout-tracker.ts). */
    startedHere?: boolean;
    /** The pod template differs from the one last seen settled (controllers/rollout-tracker.ts). */
    templateChanged?: boolean;
  } = {},
): RolloutState {
  const { startedHere = false, templateChanged = false } = memory;
  const failure = standingFailure(deployment, record, policy);
  if (failure) return { kind: 'Failed', message: failure.message };
  if (isPaused(deployment)) return { kind: 'Paused' };
  // A failure that no longer holds (the policy changed) on the template it failed with: the
  // stuck rollout is superseded, a new write (within the budget) may replace it.
  if (record?.failure?.template !== undefined && record.failure.template === templateHash(deployment))
    return { kind: 'Settled' };
  const own = record?.policy === policy.name ? record.rollout : undefined;
  // The record names the generation the operator's write produced; a scale since moves it on,
  // which only the replica that wrote it knows. Done once the Deployment controller reports its
  // ReplicaSet available: pods lost later are the Deployment's trouble, not a rollout's.
  // Another manager took back a field the operator wrote (policy/conflicts.ts): the template
  // rolling out now is that manager's, not the operator's to count or to blame.
  const ours =
    own !== undefined &&
    !rolloutCompleted(deployment, own.generation) &&
    (own.generation === deployment.metadata?.generation ||
      (startedHere && own.generation <= (deployment.metadata?.generation ?? 0))) &&
    fieldsTakenOver(deployment, record).length === 0;
  if (ours && isRolling(deployment)) {
    const condition = progressing(deployment);
    if (condition?.status === 'False' && condition.reason === 'ProgressDeadlineExceeded')
      return {
        kind: 'OwnRolloutFailed',
        reason: 'ProgressDeadlineExceeded',
        message: `the rollout the operator started did not progress: ${condition.message ?? 'progress deadline exceeded'}`,
      };
    const startedAt = Date.parse(own.startedAt);
    const deadline = policy.spec.rollout.progressDeadlineSeconds;
    if (now - startedAt > deadline * 1000)
      return {
        kind: 'OwnRolloutFailed',
        reason: 'RolloutTimedOut',
        message: `the rollout the operator started is not done after rollout.progressDeadlineSeconds (${deadline}s): ${unavailableMessage(deployment)}`,
      };
    return { kind: 'OwnRollout', startedAt };
  }
  if (isTemplateRolloutInProgress(deployment) || (templateChanged && isRolling(deployment)))
    return { kind: 'RollingOut', template: true };
  const status = deployment.status ?? {};
  const replicas = desiredReplicas(deployment);
  if (
    generationUnobserved(deployment) ||
    (status.updatedReplicas ?? 0) < replicas ||
    (status.replicas ?? 0) > replicas
  )
    return { kind: 'RollingOut', template: false };
  if ((status.availableReplicas ?? 0) < replicas || (status.readyReplicas ?? 0) < replicas)
    return { kind: 'Unhealthy', message: unavailableMessage(deployment) };
  return { kind: 'Settled' };
}

/** The policy's rollouts: the operator's own in progress, and a failure that opens the breaker. */
export interface PolicyRollouts {
  /** Keys of Deployments whose operator-started rollout has not finished (or a write in flight). */
  active: ReadonlySet<string>;
  /** Set while a rollout the operator started has failed: no new rollouts. */
  breaker?: { key: string; message: string };
}

/** Sums up the states of the policy's Deployments (key -> state) and the writes in flight. */
export function policyRollouts(
  states: ReadonlyMap<string, RolloutState>,
  inFlight: Iterable<string> = [],
): PolicyRollouts {
  const active = new Set(inFlight);
  let breaker: PolicyRollouts['breaker'];
  for (const [key, state] of states) {
    if (state.kind === 'OwnRollout') active.add(key);
    if ((state.kind === 'OwnRolloutFailed' || state.kind === 'Failed') && breaker === undefined)
      breaker = { key, message: state.message };
  }
  return { active, ...(breaker ? { breaker } : {}) };
}

export interface RolloutInput {
  policy: ValidPolicy;
  /** This Deployment's key and state. */
  key: string;
  state: RolloutState;
  rollouts: PolicyRollouts;
}

/** Whether the operator may start a rollout on the Deployment now, and if not, why. */
export function rolloutDecision(input: RolloutInput): RolloutDecision {
  const { policy, state, rollouts, key } = input;
  switch (state.kind) {
    case 'Failed':
      return { kind: 'Wait', reason: 'RolloutFailed', message: state.message };
    case 'OwnRolloutFailed':
      return { kind: 'Wait', reason: 'RolloutFailed', message: state.message };
    case 'Paused':
      return { kind: 'Wait', reason: 'Paused', message: 'the Deployment is paused; applied when it resumes' };
    case 'Unhealthy':
      return {
        kind: 'Wait',
        reason: 'Unhealthy',
        message: `not patched while unhealthy (${state.message}); applied once all replicas are available`,
      };
    case 'OwnRollout':
      return {
        kind: 'Wait',
        reason: 'RollingOut',
        message: "the operator's rollout of this Deployment is in progress",
      };
    default:
  }
  const onNextRollout = policy.spec.rollout.updateExisting === 'OnNextRollout';
  if (onNextRollout && !(state.kind === 'RollingOut' && state.template))
    return {
      kind: 'Wait',
      reason: 'WaitingForNextRollout',
      message: 'rollout.updateExisting is OnNextRollout: applied when the pod template next changes',
    };
  if (!onNextRollout && state.kind === 'RollingOut')
    return {
      kind: 'Wait',
      reason: 'RollingOut',
      message: 'the Deployment is rolling out; applied once that rollout completes',
    };
  if (rollouts.breaker)
    return {
      kind: 'Wait',
      reason: 'BreakerOpen',
      message: `no new rollouts: ${rollouts.breaker.key}: ${rollouts.breaker.message}`,
    };
  const { maxConcurrent } = policy.spec.rollout;
  let others = 0;
  for (const active of rollouts.active) if (active !== key) others++;
  if (others >= maxConcurrent)
    return {
      kind: 'Wait',
      reason: 'RolloutBudgetExhausted',
      message: `${others} rollouts the operator started for policy ${policy.name} are in progress, rollout.maxConcurrent is ${maxConcurrent}`,
    };
  return { kind: 'Apply' };
}
