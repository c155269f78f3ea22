// Enforce: bring the Deployment to the winning policy's plan. Contract: the policy is in Enforce
// mode and wins the Deployment, which has no failed rollout of the operator's to handle. Writes
// the record alone when only ownership changes (no rollout), or the settings within the rollout
// budget (a rollout), or nothing: compliant, waiting (the requeue says when to look again),
// waiting for a probe check or the first latency estimate (their outside triggers wake it).
import type { V1Deployment } from '@kubernetes/client-node';
import type { RolloutState } from '../../policy/budget.ts';
import { rolloutDecision } from '../../policy/budget.ts';
import { carriedConflict, conflictDecision, conflictMemory } from '../../policy/conflicts.ts';
import type { Evaluation } from '../../policy/evaluate.ts';
import { deploymentUid } from '../../policy/match.ts';
import {
  type AppliedRecord,
  applyConfiguration,
  handlerReplacements,
  ownsNothing,
  previousValues,
  recordOperations,
} from '../../policy/ownership.ts';
import { newProbes, type PlanDeps, recordToWrite, sameOwnership } from '../../policy/plan.ts';
import type {
  AnnotationError,
  ProbeVerdict,
  ProbeVerdictLookup,
  ShutdownPlan,
  ValidPolicy,
} from '../../policy/types.ts';
import type { DeploymentControllerDeps } from '../deployment-controller.ts';
import { holdForConflict, reportConflict } from './conflict.ts';
import type { JobContext, JobResult, Target } from './job.ts';

const NOT_ASKED_WHEN_JOINING: ProbeVerdict = {
  state: 'NoPods',
  message: 'joining a template rollout: its new pods are not asked before the write',
};

/**
 * What planning reads: the controller's sources; `joining` answers NoPods where no verdict is
 * kept (a rollout being joined), not "unknown". Made once per controller: the plan cache
 * compares its sources by identity.
 */
export function enforcePlanDeps(deps: DeploymentControllerDeps): { normal: PlanDeps; joining: PlanDeps } {
  const normal: PlanDeps = {
    estimates: deps.estimates,
    facts: deps.facts,
    ...(deps.shutdowns ? { shutdowns: deps.shutdowns } : {}),
    ...(deps.probes ? { probes: deps.probes.verifier } : {}),
  };
  const verifier = deps.probes?.verifier;
  if (!verifier) return { normal, joining: normal };
  const lookup = (uid: string): ProbeVerdictLookup => {
    const kept = verifier.lookup(uid);
    return (container, path, port) => kept(container, path, port) ?? NOT_ASKED_WHEN_JOINING;
  };
  return { normal, joining: { ...normal, probes: { lookup } } };
}

/**
 * From now to a second past the policy's rollout.progressDeadlineSeconds for a rollout started
 * at `startedAt`, within [rolloutCheckMs, resyncMs]; resyncMs for a start time that is no time
 * (a garbled record).
 */
function untilProgressDeadline(ctx: JobContext, startedAt: number, policy: ValidPolicy): number {
  const ms = startedAt + (policy.spec.rollout.progressDeadlineSeconds + 1) * 1000 - ctx.now();
  return Number.isFinite(ms) ? Math.min(ctx.resyncMs, Math.max(ctx.rolloutCheckMs, ms)) : ctx.resyncMs;
}

/** Waits a later event ends: the Deployment's own change, or a slot freed. The rest are polled. */
const EVENT_ENDS_WAIT = new Set([
  'Paused',
  'Unhealthy',
  'WaitingForNextRollout',
  'RollingOut',
  'RolloutFailed',
  'RolloutBudgetExhausted',
]);

/**
 * Whether the rollout budget, the breaker or the Deployment's own state hold a rollout back
 * now: the requeue when they do, undefined when it may start.
 */
function holdBack(
  ctx: JobContext,
  { key, deployment, log }: Target,
  policy: ValidPolicy,
  state: RolloutState,
  valid: readonly ValidPolicy[],
): JobResult {
  const rollouts = ctx.budget.rollouts(policy, valid, ctx.now());
  const decision = rolloutDecision({ policy, key, state, rollouts });
  if (decision.kind === 'Apply') return undefined;
  // Only a slot ends this wait (the watches wake the key that waited longest).
  if (decision.reason === 'RolloutBudgetExhausted') ctx.tracker.wait(policy.name, key);
  // A wait for the Deployment's own rollout or health: its status changes wake it.
  if (state.kind === 'RollingOut' || state.kind === 'Unhealthy') ctx.waitsOnStatus.add(key);
  ctx.metrics.rolloutWaits.inc({ policy: policy.name, reason: decision.reason });
  log.debug(
    { policy: policy.name, reason: decision.reason, uid: deployment.metadata?.uid },
    decision.message,
  );
  // The operator's own rollout also ends at its deadline: looked at again then.
  if (state.kind === 'OwnRollout')
    return { requeueAfterMs: untilProgressDeadline(ctx, state.startedAt, policy) };
  // A wait that ends with an event is woken by it; the resync is only a safety net. Polling the
  // budget instead had every waiting Deployment re-planned twice a second (with
  // --rollout-check-ms 500) and took a core with 200 waiting.
  return { requeueAfterMs: EVENT_ENDS_WAIT.has(decision.reason) ? ctx.resyncMs : ctx.rolloutCheckMs };
}

/**
 * The new readiness probes the plan would write that have no verdict yet and must be checked
 * on a running pod first (readinessProbe.verification Verify); none without verification.
 */
function uncheckedProbes(ctx: JobContext, deployment: V1Deployment, policy: ValidPolicy, plan: ShutdownPlan) {
  const probes = ctx.probes;
  if (!probes || policy.spec.readinessProbe.verification !== 'Verify') return [];
  const lookup = probes.verifier.lookup(deploymentUid(deployment));
  return newProbes(deployment, plan).filter((p) => lookup(p.container, p.path, p.port) === undefined);
}

/** The winning policy cannot plan the Deployment: a Warning Event; retrying cannot help. */
function skipInvalid(
  ctx: JobContext,
  { deployment, log }: Target,
  policy: ValidPolicy,
  errors: AnnotationError[],
) {
  const message = errors.map((e) => `${e.annotation}: ${e.message}`).join('; ');
  ctx.writes.event(
    deployment,
    'Warning',
    'InvalidAnnotation',
    `skipped by policy ${policy.name}: ${message}`,
  );
  log.warn({ policy: policy.name, errors }, 'skipping Deployment with invalid annotations');
  // The next update of the Deployment queues it again.
  return undefined;
}

export async function enforce(
  ctx: JobContext,
  target: Target,
  evaluation: Extract<Evaluation, { kind: 'Planned' | 'InvalidAnnotations' }>,
  record: AppliedRecord | undefined,
  state: RolloutState,
  valid: readonly ValidPolicy[],
): Promise<JobResult> {
  const { key, deployment, signal, log } = target;
  const { policy } = evaluation;
  // One write with the observed latency beats a fallback write now and a second restart once
  // it is known: wait for the refresher's first answer (its trigger wakes this Deployment).
  if (policy.spec.observedLatency.source !== 'None' && ctx.estimates.get(key) === undefined) {
    log.debug({ policy: policy.name }, 'waiting for the first latency estimate');
    ctx.requestEstimate?.();
    return undefined;
  }
  if (evaluation.kind === 'InvalidAnnotations') return skipInvalid(ctx, target, policy, evaluation.errors);
  let { planned } = evaluation;
  const unchecked = planned.diff.compliant ? [] : uncheckedProbes(ctx, deployment, policy, planned.plan);
  if (unchecked.length > 0) {
    // A write would start a rollout after a probe check: first whether it may now (no probe
    // check for a write that waits anyway), then the check, then the plan with its verdicts.
    const waiting = holdBack(ctx, target, policy, state, valid);
    if (waiting) return waiting;
    // Checked outside the workers (controllers/probe-checks.ts), whose trigger wakes the key
    // when done; planning then has the verdicts. The resync is only a safety net.
    const requested = ctx.probes?.checks.request({
      key,
      deployment,
      pods: ctx.probes.podsOf(deployment),
      probes: unchecked,
      joining: state.kind === 'RollingOut',
    });
    log.debug(
      { policy: policy.name, probes: unchecked.length, requested },
      'readiness probe checks requested',
    );
    if (state.kind !== 'RollingOut') return { requeueAfterMs: requested ? ctx.resyncMs : ctx.rolloutCheckMs };
    // Joining a template rollout: its new pods cannot be asked before the write, and the
    // rollout would be over before a check came back. Planned as for a new Deployment (no pod
    // to ask: httpGet only where the port is known to speak HTTP, tcpSocket otherwise, as the
    // webhook does); the check's verdict is kept for the next plan, and a tcpSocket fallback
    // is upgraded with the next template change (probe-recheck.ts).
    const joining = ctx.plans.plan(deployment, policy, ctx.planDeps.joining);
    if (!joining.ok) return skipInvalid(ctx, target, policy, joining.errors);
    planned = joining;
  }
  const { plan, nextRecord } = planned;
  const { compliant, changes } = planned.diff;
  // While its rollout runs, look again when rollout.progressDeadlineSeconds ends: a rollout
  // still running then has failed (the breaker opens). Its failure by the Deployment
  // controller's own deadline is a watch event; its progress and end need no reconcile.
  const settledRequeue = {
    requeueAfterMs:
      state.kind === 'OwnRollout' ? untilProgressDeadline(ctx, state.startedAt, policy) : ctx.resyncMs,
  };
  const ownedBefore = planned.record;
  if (compliant && ownedBefore?.policy === policy.name && sameOwnership(ownedBefore, nextRecord))
    return settledRequeue;
  if (compliant && !ownedBefore && ownsNothing(nextRecord)) return settledRequeue;

  if (compliant) {
    // The record alone changes (policy, ownership): no pod-template change, no rollout, no budget.
    const config = applyConfiguration(
      deployment,
      recordToWrite(record, policy, nextRecord, ctx.now()),
      plan,
      ctx.seal,
    );
    await ctx.writes.apply(key, signal, config);
    ctx.metrics.deploymentWrites.inc({ policy: policy.name, operation: 'apply' });
    log.info({ policy: policy.name }, 'recorded ownership');
    return settledRequeue;
  }

  // Another manager set back a field the operator wrote: once more, then hold.
  const conflict = conflictDecision({
    deployment,
    record,
    changes: planned.diff.fields,
    policy,
    now: ctx.now(),
  });
  if (conflict.kind === 'Hold' && record) return holdForConflict(ctx, target, policy, record, conflict);

  // Changing the pod template restarts the pods: that is what the rollout budget limits. Asked
  // (again, after a probe check: other workers may have taken the budget meanwhile) with no
  // await before the reservation.
  const waiting = holdBack(ctx, target, policy, state, valid);
  if (waiting) return waiting;
  ctx.tracker.reserve(key, policy.name, deployment.metadata?.uid);
  try {
    const remembered =
      conflict.kind === 'Reapply'
        ? conflictMemory(conflict, ctx.now())
        : carriedConflict(record, policy, ctx.now());
    const startedAt = new Date(ctx.now()).toISOString();
    const previous = previousValues(deployment, plan);
    /**
     * The record naming the generation `written` produces: every write bumps it by one (the
     * record changes). A write by someone else in between makes it one off: then only this
     * replica (the tracker) knows the rollout is its own, and the warning below says so.
     */
    const recordAfter = (written: V1Deployment): AppliedRecord => ({
      ...nextRecord,
      ...(remembered ? { conflict: remembered } : {}),
      rollout: { generation: (written.metadata?.generation ?? 0) + 1, startedAt, previous },
    });
    let base = deployment;
    const replacements = handlerReplacements(deployment, plan);
    if (replacements.length > 0) {
      // The record goes in the same write: should the apply below fail, the rollout the
      // replacement started is recorded (it takes its slot, and Revert can undo it).
      const operations = [
        ...replacements,
        ...recordOperations(deployment, recordAfter(deployment), ctx.seal),
      ];
      base = await ctx.writes.patch(deployment, operations, signal);
      ctx.metrics.deploymentWrites.inc({ policy: policy.name, operation: 'replace' });
    }
    const withRollout = recordAfter(base);
    const generation = withRollout.rollout?.generation;
    const updated = await ctx.writes.apply(
      key,
      signal,
      applyConfiguration(base, withRollout, plan, ctx.seal),
    );
    ctx.tracker.written(key, updated.metadata?.generation ?? Number.POSITIVE_INFINITY);
    if (replacements.length > 0) await ctx.writes.dropUpdateEntry(updated, signal, log);
    if (updated.metadata?.generation !== generation)
      log.warn(
        { policy: policy.name, expected: generation, got: updated.metadata?.generation },
        'the write did not produce the generation recorded for its rollout',
      );
  } catch (err) {
    ctx.tracker.release(key);
    throw err;
  }
  ctx.metrics.deploymentWrites.inc({ policy: policy.name, operation: 'apply' });
  if (conflict.kind === 'Reapply') reportConflict(ctx, deployment, policy, conflict, log);
  ctx.writes.event(
    deployment,
    'Normal',
    'ShutdownSettingsApplied',
    `policy ${policy.name}: ${changes.join('; ')} (${plan.graceExplanation}; ${plan.drain.message})`,
  );
  log.info({ policy: policy.name, changes, drain: plan.drain }, 'applied shutdown settings');
  // The write's echo changes no decision (the watches skip it); the rollout's deadline is when
  // this Deployment is looked at again, unless its failure or a change comes first.
  return { requeueAfterMs: untilProgressDeadline(ctx, ctx.now(), policy) };
}
