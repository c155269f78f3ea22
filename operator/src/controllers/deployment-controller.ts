// Enforces the winning policy's shutdown settings on one Deployment. Contract: given a
// Deployment's key, read it and the policies from the cache, compute, and write: apply the plan
// (Enforce, non-compliant, within the rollout budget, the breaker closed), release the
// Deployment (no policy manages it any more), handle a failed rollout of the operator's
// (rollout.onFailure), or nothing (Audit, compliant, waiting).
import type { V1Deployment, V1ObjectReference, V1Pod } from '@kubernetes/client-node';
import type { DeploymentWriter } from '../kube/apply.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { Logger } from '../log.ts';
import {
  policyRollouts,
  type RolloutState,
  rolloutDecision,
  rolloutState,
  templateHash,
} from '../policy/budget.ts';
import {
  type ConflictDecision,
  carriedConflict,
  conflictDecision,
  conflictMemory,
  describeField,
} from '../policy/conflicts.ts';
import { ownUpdateEntryRemoval } from '../policy/managed-fields.ts';
import { matchDeployment } from '../policy/match.ts';
import {
  type AppliedRecord,
  type ApplyConfiguration,
  applyConfiguration,
  handlerReplacements,
  keepConfiguration,
  ownedFields,
  ownsNothing,
  previousValues,
  readAppliedRecord,
  recordOperations,
  revertOperations,
} from '../policy/ownership.ts';
import type { RecordSeal } from '../policy/record-seal.ts';
import type {
  ClusterFacts,
  ProbeVerdict,
  ProbeVerdictLookup,
  ShutdownPlan,
  ValidPolicy,
} from '../policy/types.ts';
import { deploymentUid, type ProbeVerifier } from '../probes/verifier.ts';
import type { Reconcile } from '../runtime/controller.ts';
import type { OperatorMetrics } from './metrics.ts';
import {
  type EstimateReader,
  newProbes,
  PlanMemo,
  recordToWrite,
  type ShutdownReader,
  sameOwnership,
} from './plan.ts';
import type { ProbeChecks } from './probe-checks.ts';
import type { RolloutTracker } from './rollout-tracker.ts';
import type { ClusterView } from './view.ts';

export const DEPLOYMENT_CONTROLLER = 'deployment-shutdown';

const NOT_ASKED_WHEN_JOINING: ProbeVerdict = {
  state: 'NoPods',
  message: 'joining a template rollout: its new pods are not asked before the write',
};

export interface DeploymentControllerDeps {
  view: ClusterView;
  writer: DeploymentWriter;
  events: EventRecorder;
  /** Latency estimates the leader's refresher publishes. */
  estimates: EstimateReader;
  /** Asks the refresher for an early pass (a Deployment has no estimate yet). */
  requestEstimate?: () => void;
  facts: ClusterFacts;
  /** Kills observed at a grace period (shutdown-observer.ts): planning raises it. */
  shutdowns?: ShutdownReader;
  /** Plans shared with the status pass (one planning per change); a memo of its own when absent. */
  plans?: PlanMemo;
  tracker: RolloutTracker;
  metrics: OperatorMetrics;
  /** Seals the records written and checks those read (policy/record-seal.ts). */
  seal: RecordSeal;
  /**
   * How soon a Deployment waiting for the breaker to close, or for a probe check, is looked at
   * again; also the shortest wait for the operator's own rollout (which waits for its deadline).
   */
  rolloutCheckMs: number;
  /** How soon a settled Deployment is looked at again without events. */
  resyncMs: number;
  /** The clock (tests); epoch milliseconds. */
  now?: () => number;
  /**
   * Probe verification (readinessProbe.verification Verify): the verdicts, the checks (run
   * outside the workers, controllers/probe-checks.ts), and the pods of a Deployment to check a
   * new probe on. Absent: probes are written unverified.
   */
  probes?: {
    verifier: ProbeVerifier;
    checks: Pick<ProbeChecks, 'request'>;
    podsOf(deployment: V1Deployment): V1Pod[];
  };
}

function reference(deployment: V1Deployment): V1ObjectReference {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    namespace: deployment.metadata?.namespace,
    name: deployment.metadata?.name,
    uid: deployment.metadata?.uid,
    resourceVersion: deployment.metadata?.resourceVersion,
  };
}

/**
 * The rollout state of the Deployments this policy wins whose record names a rollout or a
 * failure of it (the view's index, kept from events): the only states that take budget or open
 * the breaker. No scan of the policy's other Deployments.
 */
function policyStates(
  policy: ValidPolicy,
  all: ValidPolicy[],
  deps: Pick<DeploymentControllerDeps, 'view' | 'tracker' | 'seal'>,
  now: number,
): Map<string, RolloutState> {
  const { view, tracker, seal } = deps;
  const states = new Map<string, RolloutState>();
  for (const key of view.rolloutsOf(policy.name)) {
    const deployment = view.deployments.get(key);
    if (!deployment) continue;
    const match = matchDeployment(all, deployment, view.namespaceLabels(deployment.metadata?.namespace));
    if (match.kind === 'Matched' && match.policy.name === policy.name)
      states.set(
        key,
        rolloutState(deployment, readAppliedRecord(deployment, seal), policy, now, {
          startedHere: tracker.startedHere(key, deployment),
        }),
      );
  }
  return states;
}

export function deploymentReconciler(deps: DeploymentControllerDeps): Reconcile {
  const { view, writer, events, tracker, metrics, seal } = deps;
  const now = deps.now ?? Date.now;
  /**
   * key -> the Deployment (uid) and its generation after this replica's last write. Every write
   * bumps a Deployment's generation (annotations included), so a cached object of the same uid
   * below it predates the write: reconciling it would write the same thing again. client-go
   * calls this "expectations".
   */
  const written = new Map<string, { uid: string | undefined; generation: number }>();
  const apply = async (key: string, signal: AbortSignal, config: ApplyConfiguration) => {
    // Leadership lost or stopping: another replica may be writing now.
    signal.throwIfAborted();
    const updated = await writer.apply(config, signal);
    const generation = updated.metadata?.generation;
    if (generation !== undefined) written.set(key, { uid: updated.metadata?.uid, generation });
    return updated;
  };

  /** A JSON Patch of the Deployment (what server-side apply cannot express). */
  const patch = (deployment: V1Deployment, operations: object[], signal: AbortSignal) => {
    // Leadership lost or stopping: another replica may be writing now.
    signal.throwIfAborted();
    const { namespace = '', name = '' } = deployment.metadata ?? {};
    return writer.patch(namespace, name, operations, signal);
  };

  /**
   * After a JSON Patch of the operator's, its `Update` entry goes from managedFields (policy/
   * managed-fields.ts ownUpdateEntryRemoval): no lingering co-owner of the fields it touched.
   * Best effort: a write in between fails the guard, and the next patch of the operator's
   * removes it then.
   */
  const dropUpdateEntry = async (updated: V1Deployment, signal: AbortSignal, log: Logger) => {
    const operations = ownUpdateEntryRemoval(updated);
    if (operations.length === 0) return;
    try {
      await patch(updated, operations, signal);
    } catch (err) {
      log.info({ err }, "the operator's Update entry stays in managedFields for now");
    }
  };

  /**
   * A rollout the operator started does not progress: record the failure (it holds the policy's
   * breaker open) and, with onFailure Revert, write back the values the Deployment had before.
   */
  const onRolloutFailure = async (
    key: string,
    signal: AbortSignal,
    log: Logger,
    deployment: V1Deployment,
    policy: ValidPolicy,
    record: AppliedRecord,
    failure: { reason: string; message: string },
  ) => {
    const revert = policy.spec.rollout.onFailure === 'Revert';
    const owned = ownedFields(deployment, seal) ?? record;
    const failed: AppliedRecord = {
      ...record,
      failure: {
        policyGeneration: policy.generation,
        reason: failure.reason,
        message: failure.message,
        at: new Date(now()).toISOString(),
        // Pause holds for this template; a revert records the template it leaves behind.
        ...(revert ? {} : { template: templateHash(deployment) }),
      },
    };
    await apply(key, signal, keepConfiguration(deployment, owned, failed, seal));
    // The rollout is over (failed): it holds no slot and is no longer this replica's to watch.
    tracker.release(key);
    metrics.rolloutFailures.inc({ policy: policy.name, action: policy.spec.rollout.onFailure });
    events.record(
      reference(deployment),
      'Warning',
      'RolloutFailed',
      `policy ${policy.name}: ${failure.message}; no new rollouts in namespace ${deployment.metadata?.namespace} until it is fixed (rollout.onFailure ${policy.spec.rollout.onFailure})`,
    );
    log.warn({ policy: policy.name, reason: failure.reason }, failure.message);
    if (revert) return finishRevert(key, signal, log, deployment, failed);
    return { requeueAfterMs: deps.resyncMs };
  };

  /**
   * Writes the previous values back, then records the template the revert left. `record` is
   * sealed (readAppliedRecord drops an unsealed rollout): only values the operator recorded
   * when it made the change go back.
   */
  const finishRevert = async (
    key: string,
    signal: AbortSignal,
    log: Logger,
    deployment: V1Deployment,
    record: AppliedRecord,
  ) => {
    const operations = revertOperations(deployment, record.rollout?.previous ?? {});
    let reverted = deployment;
    if (operations.length > 0) {
      reverted = await patch(deployment, operations, signal);
      metrics.deploymentWrites.inc({ policy: record.policy, operation: 'revert' });
    }
    const failure = record.failure ? { ...record.failure, template: templateHash(reverted) } : undefined;
    const done: AppliedRecord = { ...record, ...(failure ? { failure } : {}) };
    const owned = ownedFields(reverted, seal) ?? done;
    const recorded = await apply(key, signal, keepConfiguration(reverted, owned, done, seal));
    // The restored values are the user's again: no entry of the operator's co-owns them.
    if (operations.length > 0) await dropUpdateEntry(recorded, signal, log);
    events.record(
      reference(deployment),
      'Normal',
      'RolloutReverted',
      `policy ${record.policy}: the values before the operator's change are back (${operations.length} patch operations)`,
    );
    log.info({ policy: record.policy, operations: operations.length }, 'reverted a failed rollout');
    return { requeueAfterMs: deps.resyncMs };
  };

  /**
   * Another manager set a field back again (policy/conflicts.ts): no write of the settings. The
   * first time, the record remembers the hold (a metadata-only write: no rollout) and a Warning
   * Event names the manager and the field; after that, nothing is written until the conflict
   * ends (the manager's value compliant, or the field let go).
   */
  const holdForConflict = async (
    key: string,
    signal: AbortSignal,
    log: Logger,
    deployment: V1Deployment,
    policy: ValidPolicy,
    record: AppliedRecord,
    conflict: Extract<ConflictDecision, { kind: 'Hold' }>,
  ) => {
    // The other manager's rollout is not the operator's: no slot, no blame.
    tracker.release(key);
    metrics.rolloutWaits.inc({ policy: policy.name, reason: 'ConflictingManager' });
    if (record.conflict?.held) return { requeueAfterMs: deps.resyncMs };
    const held: AppliedRecord = { ...record, conflict: conflictMemory(conflict, now()) };
    await apply(
      key,
      signal,
      keepConfiguration(deployment, ownedFields(deployment, seal) ?? record, held, seal),
    );
    reportConflict(deployment, policy, conflict, log);
    return { requeueAfterMs: deps.resyncMs };
  };

  /** The Warning Event, the metric and the log line of a re-apply or a hold. */
  const reportConflict = (
    deployment: V1Deployment,
    policy: ValidPolicy,
    conflict: Exclude<ConflictDecision, { kind: 'None' }>,
    log: Logger,
  ) => {
    const held = conflict.kind === 'Hold';
    metrics.fieldConflicts.inc({ policy: policy.name, action: held ? 'held' : 'reapplied' });
    const reason = held ? 'ConflictingManager' : 'FieldSetBack';
    events.record(reference(deployment), 'Warning', reason, `policy ${policy.name}: ${conflict.message}`);
    log.warn(
      { policy: policy.name, manager: conflict.takeover.manager, field: describeField(conflict.takeover) },
      held
        ? 'held: another field manager keeps setting back a field the operator wrote'
        : 'another field manager set back a field the operator wrote: written once more',
    );
  };

  const plans = deps.plans ?? new PlanMemo();
  const planDeps = {
    estimates: deps.estimates,
    facts: deps.facts,
    ...(deps.shutdowns ? { shutdowns: deps.shutdowns } : {}),
    ...(deps.probes ? { probes: deps.probes.verifier } : {}),
  };
  /** planDeps whose probe lookup answers NoPods where no verdict is kept: a rollout being joined. */
  const joiningDeps = {
    ...planDeps,
    ...(deps.probes
      ? {
          probes: {
            lookup: (uid: string): ProbeVerdictLookup => {
              const kept = deps.probes?.verifier.lookup(uid);
              return (container, path, port) => kept?.(container, path, port) ?? NOT_ASKED_WHEN_JOINING;
            },
          },
        }
      : {}),
  };
  /**
   * From now to a second past the policy's rollout.progressDeadlineSeconds for a rollout started
   * at `startedAt`, within [rolloutCheckMs, resyncMs]; resyncMs for a start time that is no time
   * (a garbled record).
   */
  const untilProgressDeadline = (startedAt: number, policy: ValidPolicy) => {
    const ms = startedAt + (policy.spec.rollout.progressDeadlineSeconds + 1) * 1000 - now();
    return Number.isFinite(ms) ? Math.min(deps.resyncMs, Math.max(deps.rolloutCheckMs, ms)) : deps.resyncMs;
  };

  /**
   * Whether the rollout budget, the breaker or the Deployment's own state hold a rollout back
   * now: the requeue when they do (the key waits for a slot), undefined when it may start.
   */
  const holdBack = (
    key: string,
    deployment: V1Deployment,
    policy: ValidPolicy,
    state: RolloutState,
    valid: ValidPolicy[],
    log: Logger,
  ) => {
    const rollouts = policyRollouts(
      policyStates(policy, valid, deps, now()),
      policy.spec.rollout.breakerNamespaces,
      tracker.active(policy.name, view.deployments),
    );
    const decision = rolloutDecision({ policy, key, state, rollouts });
    if (decision.kind === 'Apply') return undefined;
    // Only a slot ends this wait: the others end with the Deployment's own change, or are polled.
    if (decision.reason === 'RolloutBudgetExhausted') tracker.wait(policy.name, key);
    metrics.rolloutWaits.inc({ policy: policy.name, reason: decision.reason });
    log.debug(
      { policy: policy.name, reason: decision.reason, uid: deployment.metadata?.uid },
      decision.message,
    );
    // The operator's own rollout also ends at its deadline: looked at again then.
    if (state.kind === 'OwnRollout')
      return {
        requeueAfterMs: untilProgressDeadline(state.startedAt, policy),
      };
    // A wait that ends with an event is woken by it; the resync is only a safety net: the
    // Deployment's own change (resumed, healthy again, a new template, its rollout done, its
    // failure fixed), or a slot of the budget freed (routing.ts wakes the key that waited
    // longest). Polling the budget instead had every waiting Deployment re-planned twice a
    // second (with --rollout-check-ms 500) and took a core with 200 waiting.
    const eventEndsIt = [
      'Paused',
      'Unhealthy',
      'WaitingForNextRollout',
      'RollingOut',
      'RolloutFailed',
      'RolloutBudgetExhausted',
    ].includes(decision.reason);
    return { requeueAfterMs: eventEndsIt ? deps.resyncMs : deps.rolloutCheckMs };
  };

  /**
   * The new readiness probes the plan would write that have no verdict yet and must be checked
   * on a running pod first (readinessProbe.verification Verify); none without verification.
   */
  const uncheckedProbes = (deployment: V1Deployment, policy: ValidPolicy, plan: ShutdownPlan) => {
    const probes = deps.probes;
    if (!probes || policy.spec.readinessProbe.verification !== 'Verify') return [];
    const lookup = probes.verifier.lookup(deploymentUid(deployment));
    return newProbes(deployment, plan).filter((p) => lookup(p.container, p.path, p.port) === undefined);
  };

  // A key a freed slot woke passes the slot on when it does not take it (routing.ts).
  return async (key, signal, log) => {
    const woken = tracker.takeWoken(key);
    try {
      return await reconcile(key, signal, log);
    } finally {
      if (woken !== undefined) tracker.passOn(woken, key);
    }
  };

  async function reconcile(key: string, signal: AbortSignal, log: Logger) {
    const deployment = view.deployments.get(key);
    if (!deployment) {
      tracker.release(key);
      written.delete(key);
      return;
    }
    const expected = written.get(key);
    if (expected !== undefined) {
      const sameObject = expected.uid === deployment.metadata?.uid;
      // Our own write has not reached the cache yet; its watch event queues the key again.
      if (sameObject && (deployment.metadata?.generation ?? 0) < expected.generation) {
        return { requeueAfterMs: deps.rolloutCheckMs };
      }
      written.delete(key);
    }
    const { valid, invalid } = view.parsedPolicies();
    const record = readAppliedRecord(deployment, seal);
    if (record?.refused)
      events.record(
        reference(deployment),
        'Warning',
        'RecordRefused',
        `the gracefulshutdown.dev/applied record was refused (${record.refused}): its rollout, failure and conflict are ignored; the operator's next write replaces it`,
      );
    // The policy that wrote it still exists but is invalid: keep still until it is fixed,
    // rather than let another policy take over (and restart the pods) meanwhile.
    if (record && invalid.has(record.policy)) return;
    const match = matchDeployment(valid, deployment, view.namespaceLabels(deployment.metadata?.namespace));

    if (match.kind !== 'Matched') {
      if (!record) return;
      await apply(
        key,
        signal,
        keepConfiguration(deployment, ownedFields(deployment, seal) ?? record, undefined, seal),
      );
      metrics.deploymentWrites.inc({ policy: record.policy, operation: 'release' });
      const why = match.kind === 'OptedOut' ? 'it is opted out' : 'no policy selects it any more';
      events.record(
        reference(deployment),
        'Normal',
        'ShutdownSettingsReleased',
        `policy ${record.policy} no longer manages this Deployment (${why}); its settings are kept as they are`,
      );
      log.info({ policy: record.policy, why }, 'released Deployment');
      return;
    }

    const policy = match.policy;
    // Audit writes nothing to workloads; its verdicts are the status controller's job.
    if (policy.spec.mode !== 'Enforce') return;

    const state = rolloutState(deployment, record, policy, now(), {
      startedHere: tracker.startedHere(key, deployment),
      templateChanged: tracker.templateChanged(key, deployment),
    });
    if (state.kind === 'OwnRolloutFailed' && record)
      return onRolloutFailure(key, signal, log, deployment, policy, record, state);
    if (state.kind === 'Failed' && record?.failure?.template === undefined && record)
      return finishRevert(key, signal, log, deployment, record);

    // One write with the observed latency beats a fallback write now and a second restart once
    // it is known: wait for the refresher's first answer (it enqueues this Deployment then).
    if (policy.spec.observedLatency.source !== 'None' && deps.estimates.get(key) === undefined) {
      log.debug({ policy: policy.name }, 'waiting for the first latency estimate');
      deps.requestEstimate?.();
      return;
    }
    let planned = plans.plan(deployment, policy, planDeps);
    const unchecked =
      planned.ok && !planned.diff.compliant ? uncheckedProbes(deployment, policy, planned.plan) : [];
    if (unchecked.length > 0) {
      // A write would start a rollout after a probe check: first whether it may now (no probe
      // check for a write that waits anyway), then the check, then the plan with its verdicts.
      const waiting = holdBack(key, deployment, policy, state, valid, log);
      if (waiting) return waiting;
      // Checked outside the workers (controllers/probe-checks.ts), which queue the key again
      // when done; planning then has the verdicts. The resync is only a safety net.
      const requested = deps.probes?.checks.request({
        key,
        deployment,
        pods: deps.probes.podsOf(deployment),
        probes: unchecked,
        joining: state.kind === 'RollingOut',
      });
      log.debug(
        { policy: policy.name, probes: unchecked.length, requested },
        'readiness probe checks requested',
      );
      if (state.kind !== 'RollingOut')
        return { requeueAfterMs: requested ? deps.resyncMs : deps.rolloutCheckMs };
      // Joining a template rollout: its new pods cannot be asked before the write, and the
      // rollout would be over before a check came back. Planned as for a new Deployment (no pod
      // to ask: httpGet only where the port is known to speak HTTP, tcpSocket otherwise, as the
      // webhook does); the check's verdict is kept for the next plan, and a tcpSocket fallback
      // is upgraded with the next template change (probe-recheck.ts).
      planned = plans.plan(deployment, policy, joiningDeps);
    }
    if (!planned.ok) {
      const message = planned.errors.map((e) => `${e.annotation}: ${e.message}`).join('; ');
      events.record(
        reference(deployment),
        'Warning',
        'InvalidAnnotation',
        `skipped by policy ${policy.name}: ${message}`,
      );
      log.warn(
        { policy: policy.name, errors: planned.errors },
        'skipping Deployment with invalid annotations',
      );
      return; // Retrying cannot help: the next update of the Deployment queues it again.
    }
    const { plan, nextRecord } = planned;
    const { compliant, changes } = planned.diff;
    // While its rollout runs, look again when rollout.progressDeadlineSeconds ends: a rollout
    // still running then has failed (the breaker opens). Its progress, its end and the
    // Deployment controller's own deadline are watch events: they need no polling.
    const settledRequeue = {
      requeueAfterMs:
        state.kind === 'OwnRollout' ? untilProgressDeadline(state.startedAt, policy) : deps.resyncMs,
    };
    const ownedBefore = planned.record;
    if (compliant && ownedBefore?.policy === policy.name && sameOwnership(ownedBefore, nextRecord))
      return settledRequeue;
    if (compliant && !ownedBefore && ownsNothing(nextRecord)) return settledRequeue;

    if (compliant) {
      // The record alone changes (policy, ownership): no pod-template change, no rollout, no budget.
      await apply(
        key,
        signal,
        applyConfiguration(deployment, recordToWrite(record, policy, nextRecord, now()), plan, seal),
      );
      metrics.deploymentWrites.inc({ policy: policy.name, operation: 'apply' });
      log.info({ policy: policy.name }, 'recorded ownership');
      return settledRequeue;
    }

    // Another manager set back a field the operator wrote: once more, then hold.
    const conflict = conflictDecision({
      deployment,
      record,
      changes: planned.diff.fields,
      policy,
      now: now(),
    });
    if (conflict.kind === 'Hold' && record)
      return holdForConflict(key, signal, log, deployment, policy, record, conflict);

    // Changing the pod template restarts the pods: that is what the rollout budget limits. Asked
    // (again, after a probe check: other workers may have taken the budget meanwhile) with no
    // await before the reservation.
    const waiting = holdBack(key, deployment, policy, state, valid, log);
    if (waiting) return waiting;
    tracker.reserve(key, policy.name, deployment.metadata?.uid);
    try {
      const remembered =
        conflict.kind === 'Reapply'
          ? conflictMemory(conflict, now())
          : carriedConflict(record, policy, now());
      const startedAt = new Date(now()).toISOString();
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
        base = await patch(
          deployment,
          [...replacements, ...recordOperations(deployment, recordAfter(deployment), seal)],
          signal,
        );
        metrics.deploymentWrites.inc({ policy: policy.name, operation: 'replace' });
      }
      const withRollout = recordAfter(base);
      const generation = withRollout.rollout?.generation;
      const config = applyConfiguration(base, withRollout, plan, seal);
      const updated = await apply(key, signal, config);
      tracker.written(key, updated.metadata?.generation ?? Number.POSITIVE_INFINITY);
      if (replacements.length > 0) await dropUpdateEntry(updated, signal, log);
      if (updated.metadata?.generation !== generation)
        log.warn(
          { policy: policy.name, expected: generation, got: updated.metadata?.generation },
          'the write did not produce the generation recorded for its rollout',
        );
    } catch (err) {
      tracker.release(key);
      throw err;
    }
    metrics.deploymentWrites.inc({ policy: policy.name, operation: 'apply' });
    if (conflict.kind === 'Reapply') reportConflict(deployment, policy, conflict, log);
    events.record(
      reference(deployment),
      'Normal',
      'ShutdownSettingsApplied',
      `policy ${policy.name}: ${changes.join('; ')} (${plan.graceExplanation}; ${plan.drain.message})`,
    );
    log.info({ policy: policy.name, changes, drain: plan.drain }, 'applied shutdown settings');
    // The write's watch event queues the key again; the rollout's deadline is the safety net.
    return { requeueAfterMs: untilProgressDeadline(now(), policy) };
  }
}
