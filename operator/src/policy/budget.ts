// When a change may reach a running Deployment. The budget counts only the rollouts the
// operator itself started and that have not finished: a Deployment that is paused, rolling out
// for its own reasons or unhealthy (crash-looping, unschedulable) waits without taking a slot,
// and is never patched while broken. A rollout of the operator's that fails holds its namespace:
// no new rollouts there until the cause is fixed; failures in rollout.breakerNamespaces
// namespaces open the policy's circuit breaker (docs/design/rollouts.md).
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

/** The Deployment controller gave up on the rollout (Progressing False, ProgressDeadlineExceeded). */
export function progressDeadlineExceeded(deployment: V1Deployment): boolean {
  const condition = progressing(deployment);
  return condition?.status === 'False' && condition.reason === 'ProgressDeadlineExceeded';
}

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
    if (progressDeadlineExceeded(deployment))
      return {
        kind: 'OwnRolloutFailed',
        reason: 'ProgressDeadlineExceeded',
        message: `the rollout the operator started did not progress: ${progressing(deployment)?.message ?? 'progress deadline exceeded'}`,
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

/** A failed rollout of the operator's holding its namespace (or, with others, the policy). */
export interface BreakerHold {
  /** The Deployment whose rollout failed (namespace/name). */
  key: string;
  message: string;
}

/** The policy's rollouts: the operator's own in progress, and the failures that hold new ones. */
export interface PolicyRollouts {
  /** Keys of Deployments whose operator-started rollout has not finished (or a write in flight). */
  active: ReadonlySet<string>;
  /** Per namespace, the first failed rollout there: no new rollouts in that namespace. */
  held: ReadonlyMap<string, BreakerHold>;
  /**
   * Set once failures hold rollout.breakerNamespaces namespaces or more: no new rollouts for the
   * whole policy. One namespace's failures (a team breaking its own rollouts, or one bad app)
   * hold only that namespace; failures across several say the policy's values are at fault.
   */
  breaker?: { namespaces: string[]; message: string };
}

/** The namespace of a namespace/name key. */
export function namespaceOf(key: string): string {
  const slash = key.indexOf('/');
  return slash < 0 ? '' : key.slice(0, slash);
}

/**
 * Sums up the states of the policy's Deployments (key -> state) and the writes in flight;
 * `breakerNamespaces` is the policy's rollout.breakerNamespaces.
 */
export function policyRollouts(
  states: ReadonlyMap<string, RolloutState>,
  breakerNamespaces: number,
  inFlight: Iterable<string> = [],
): PolicyRollouts {
  const active = new Set(inFlight);
  const held = new Map<string, BreakerHold>();
  for (const key of [...states.keys()].sort()) {
    const state = states.get(key) as RolloutState;
    if (state.kind === 'OwnRollout') active.add(key);
    const namespace = namespaceOf(key);
    if ((state.kind === 'OwnRolloutFailed' || state.kind === 'Failed') && !held.has(namespace))
      held.set(namespace, { key, message: state.message });
  }
  if (held.size < breakerNamespaces) return { active, held };
  const namespaces = [...held.keys()];
  const listed = namespaces.slice(0, 5).join(', ') + (namespaces.length > 5 ? ', ...' : '');
  const first = held.get(namespaces[0] as string) as BreakerHold;
  return {
    active,
    held,
    breaker: {
      namespaces,
      message: `rollouts the operator started failed in ${namespaces.length === 1 ? '1 namespace' : `${namespaces.length} namespaces`} (${listed}), rollout.breakerNamespaces is ${breakerNamespaces}; first: ${first.key}: ${first.message}`,
    },
  };
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
    return { kind: 'Wait', reason: 'BreakerOpen', message: `no new rollouts: ${rollouts.breaker.message}` };
  const hold = rollouts.held.get(namespaceOf(key));
  if (hold)
    return {
      kind: 'Wait',
      reason: 'BreakerOpen',
      message: `no new rollouts in namespace ${namespaceOf(key)}: ${hold.key}: ${hold.message}`,
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
