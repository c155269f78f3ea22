// The policy status controller (policy-status): reports one policy's status, its verdict on
// every Deployment it selects, the counts and conditions, written only when they change. This
// file answers "what wakes it?" (watchPolicyStatuses) and what a reconcile does.
//
//   Deployment and selection changes, Service changes (view) -- the policies selecting --+
//   policy changes (view): its own status, every status on a new generation ---------------+--> queue (debounced,
//   estimate changed, kill observed, probe verdict found (triggers) -----------------------+    status-pacer.ts)
//                                                                                 --> reconcile --> status write
//                                                                                               --> verdicts published
// Contract of a reconcile: given a policy name, read the policy, the other policies and the
// Deployments from the cache, compute, and write status at most once.

import type { V1Deployment } from '@kubernetes/client-node';
import {
  API_VERSION,
  type GracefulShutdownPolicyStatus,
  KIND,
  PolicyConditionTypes,
  type WorkloadStatus,
} from '../api/policy.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { PolicyStatusWriter } from '../kube/status.ts';
import type { Logger } from '../log.ts';
import { ROLLOUT_WAIT_REASONS, type RolloutState, rolloutDecision } from '../policy/budget.ts';
import {
  invalidPolicyStatus,
  latencyObservedCondition,
  latencyProblem,
  statusEquals,
  summarizePolicyStatus,
} from '../policy/compliance.ts';
import { conflictDecision, conflictWait } from '../policy/conflicts.ts';
import { type Evaluation, evaluate, type Planner, verdictFor } from '../policy/evaluate.ts';
import { deploymentKey } from '../policy/match.ts';
import { type AppliedRecord, ownsNothing, readAppliedRecord } from '../policy/ownership.ts';
import {
  type EstimateReader,
  PlanCache,
  type ProbeVerdictReader,
  type ShutdownReader,
} from '../policy/plan.ts';
import type { RecordSeal } from '../policy/record-seal.ts';
import type { ClusterFacts } from '../policy/types.ts';
import { Controller, type Reconcile } from '../runtime/controller.ts';
import type { RuntimeMetrics } from '../runtime/metrics.ts';
import type { Trigger } from '../runtime/trigger.ts';
import { TimeSlicer } from '../util/time-slicer.ts';
import {
  GRACE_BUCKETS,
  LATENCY_BUCKETS,
  type OperatorMetrics,
  removeDistribution,
  setDistribution,
} from './metrics.ts';
import type { PublishedStatuses } from './report-controller.ts';
import { RolloutBudget } from './rollout-budget.ts';
import { RolloutTracker } from './rollout-tracker.ts';
import type { StatusPacer } from './status-pacer.ts';
import type { ClusterView } from './view.ts';

export const POLICY_STATUS_CONTROLLER = 'policy-status';

export interface PolicyStatusControllerDeps {
  view: ClusterView;
  writer: PolicyStatusWriter;
  /** A Warning Event on a policy its validation rejects (`kubectl describe gsp` shows it). */
  events: EventRecorder;
  /** Latency estimates the leader's refresher publishes. */
  estimates: EstimateReader;
  /** Probe verdicts the deployment controller found (Verify); absent: none. */
  probes?: ProbeVerdictReader;
  /** Kills observed at a grace period: planning raises it (reason ShutdownKilled). */
  shutdowns?: ShutdownReader;
  facts: ClusterFacts;
  metrics: OperatorMetrics;
  /** Checks the records' seals (policy/record-seal.ts), as the Deployment controller does. */
  seal: RecordSeal;
  /** Status is recomputed this often without events (latency observations age). */
  resyncMs: number;
  /** Plans shared with the deployment controller (one planning per change); its own when absent. */
  plans?: PlanCache;
  /** Told how long each pass took (it paces the next one, status-pacer.ts). */
  pacer?: Pick<StatusPacer, 'measured' | 'wrote' | 'forget'>;
  /**
   * Every verdict of a valid policy's pass (the status lists only the first 100), with the
   * Deployments' uids: the policy reports are written from them (report-controller.ts).
   */
  published?: Pick<PublishedStatuses, 'publish'>;
  /**
   * The Deployment controller's memory of its rollouts (rollout-tracker.ts): the waits the
   * status reports are the ones the controller decides. Its own (empty) one when absent.
   */
  tracker?: RolloutTracker;
}

const verdicts = ['Compliant', 'NonCompliant', 'Exempt', 'Unknown'] as const;

export function policyStatusReconciler(deps: PolicyStatusControllerDeps): Reconcile {
  const { view, writer, metrics } = deps;
  const plans = deps.plans ?? new PlanCache();
  const budget = new RolloutBudget(view, deps.tracker ?? new RolloutTracker(), deps.seal);
  const planner: Planner = (deployment, policy) => plans.plan(deployment, policy, deps);
  return async (name, signal, log) => {
    // A pass over 10,000 Deployments is 0.1-0.2 s of work: in slices, so that admissions, watch
    // events and timers are not held up that long. What is read between slices is as current as
    // the cache; the next pass (the next event) reads it again.
    const slicer = new TimeSlicer();
    const object = view.policies.get(name);
    if (!object) {
      deps.pacer?.forget(name);
      for (const verdict of verdicts) metrics.policyWorkloads.remove({ policy: name, verdict });
      for (const reason of ROLLOUT_WAIT_REASONS) metrics.policyWaiting.remove({ policy: name, reason });
      metrics.policyAccepted.remove({ policy: name });
      for (const gauge of [
        metrics.rolloutBreakerOpen,
        metrics.heldNamespaces,
        metrics.refusedRecords,
        metrics.latencyObservedSeconds,
        metrics.latencyEstimateAgeSeconds,
        metrics.recommendedGraceSeconds,
      ])
        gauge.remove({ policy: name });
      removeDistribution(metrics.recommendedGraceDistribution, name, GRACE_BUCKETS);
      removeDistribution(metrics.observedLatencyDistribution, name, LATENCY_BUCKETS);
      return;
    }
    const { valid, invalid } = view.parsedPolicies();
    const now = new Date();
    const rejected = invalid.get(name);
    const policy = valid.find((p) => p.name === name);
    let status: ReturnType<typeof summarizePolicyStatus>;
    if (rejected || !policy) {
      const errors = rejected?.errors ?? [{ path: 'spec', message: 'Required value' }];
      status = invalidPolicyStatus(
        rejected?.generation ?? object.metadata?.generation ?? 0,
        errors,
        now,
        object.status,
      );
      log.warn({ errors }, 'policy rejected by validation');
      const message = errors.map((e) => `${e.path}: ${e.message}`).join('; ');
      deps.events.record(
        { apiVersion: API_VERSION, kind: KIND, name, uid: object.metadata?.uid },
        'Warning',
        'InvalidSpec',
        `not evaluated until fixed: ${message}`,
      );
    } else {
      const workloads: WorkloadStatus[] = [];
      const latencyProblems: ReturnType<typeof latencyProblem>[] = [];
      const gauges = { observedSeconds: 0, graceSeconds: 0, estimateAgeSeconds: 0 };
      const distributions = { grace: [] as number[], latency: [] as number[] };
      const nowMs = now.getTime();
      // The policy's own Deployments, planned; verdicts wait for the rollouts summed up over all.
      const governed: {
        deployment: V1Deployment;
        evaluation: Extract<Evaluation, { kind: 'Planned' }>;
        record: AppliedRecord | undefined;
        state: RolloutState;
        managed: boolean;
      }[] = [];
      // The Deployments it selects, from the view's index: no scan of the others.
      for (const deployment of view.selectedBy(name)) {
        await slicer.pause();
        const namespaceLabels = view.namespaceLabels(deployment.metadata?.namespace);
        const evaluation = evaluate(deployment, valid, namespaceLabels, planner);
        if (evaluation.kind !== 'Planned' || evaluation.policy.name !== name) {
          const verdict = verdictFor(deployment, evaluation, name);
          if (verdict) workloads.push(verdict);
          continue;
        }
        const { planned } = evaluation;
        const { estimate } = planned;
        if (policy.spec.observedLatency.source !== 'None') {
          latencyProblems.push(latencyProblem(estimate?.latest, policy.spec.observedLatency.minSamples));
          if (planned.observation.known) {
            gauges.observedSeconds = Math.max(gauges.observedSeconds, planned.observation.seconds);
            distributions.latency.push(planned.observation.seconds);
          }
          if (estimate) {
            const lastGood = estimate.stale ? estimate.publishedAt : estimate.refreshedAt;
            gauges.estimateAgeSeconds = Math.max(
              gauges.estimateAgeSeconds,
              (now.getTime() - lastGood) / 1000,
            );
          }
        }
        gauges.graceSeconds = Math.max(
          gauges.graceSeconds,
          planned.plan.recommended.terminationGracePeriodSeconds ?? 0,
        );
        if (planned.plan.recommended.terminationGracePeriodSeconds !== undefined)
          distributions.grace.push(planned.plan.recommended.terminationGracePeriodSeconds);
        const record = readAppliedRecord(deployment, deps.seal);
        governed.push({
          deployment,
          evaluation,
          record,
          state: budget.state(deploymentKey(deployment), deployment, record, policy, nowMs),
          managed: record?.policy === name && !ownsNothing(planned.nextRecord),
        });
      }
      const enforce = policy.spec.mode === 'Enforce';
      const rollouts = budget.rollouts(policy, valid, nowMs);
      for (const { deployment, evaluation, record, state, managed } of governed) {
        await slicer.pause();
        const { planned } = evaluation;
        const { estimate } = planned;
        const failed = state.kind === 'Failed' || state.kind === 'OwnRolloutFailed';
        // A hold for another field manager (policy/conflicts.ts) is what the controller decides
        // before the budget; a failed rollout of the operator's says more.
        const held =
          enforce && !planned.diff.compliant && !failed
            ? conflictWait(
                conflictDecision({ deployment, record, changes: planned.diff.fields, policy, now: nowMs }),
              )
            : undefined;
        const decision =
          held ??
          (enforce && (!planned.diff.compliant || failed)
            ? rolloutDecision({ policy, key: deploymentKey(deployment), state, rollouts })
            : undefined);
        const verdict = verdictFor(deployment, evaluation, name, {
          managed,
          ...(record?.refused ? { recordRefused: record.refused } : {}),
          ...(decision?.kind === 'Wait' ? { decision } : {}),
          ...(estimate
            ? {
                freshness: {
                  latest: estimate.latest,
                  stale: estimate.stale,
                  observedTime: new Date(estimate.publishedAt),
                },
              }
            : {}),
        });
        if (verdict) workloads.push(verdict);
      }
      const latency = latencyObservedCondition(policy.spec.observedLatency.source, latencyProblems);
      if (deps.published && object.metadata?.uid) {
        const uids = new Map<string, string>();
        for (const w of workloads) {
          const uid = view.deployments.get(`${w.namespace}/${w.name}`)?.metadata?.uid;
          if (uid) uids.set(`${w.namespace}/${w.name}`, uid);
        }
        deps.published.publish({ name, uid: object.metadata.uid }, workloads, uids, now);
      }
      status = summarizePolicyStatus({
        policy,
        workloads,
        now,
        previous: object.status,
        ...(latency ? { latency } : {}),
        ...(enforce ? { rollouts } : {}),
        killed: governed.filter((g) => deps.shutdowns?.killedAt(deploymentKey(g.deployment)) !== undefined)
          .length,
      });
      recordBreakerTransition(deps, { name, uid: object.metadata?.uid }, object.status, status);
      metrics.rolloutBreakerOpen.set({ policy: name }, enforce && rollouts.breaker ? 1 : 0);
      metrics.heldNamespaces.set({ policy: name }, enforce ? rollouts.held.size : 0);
      metrics.refusedRecords.set({ policy: name }, governed.filter((g) => g.record?.refused).length);
      const waiting = status.counts?.waitingReasons ?? [];
      for (const reason of ROLLOUT_WAIT_REASONS)
        metrics.policyWaiting.set(
          { policy: name, reason },
          waiting.find((w) => w.reason === reason)?.count ?? 0,
        );
      recordLatencyTransition(deps, { name, uid: object.metadata?.uid }, object.status, latency);
      if (latency) {
        metrics.latencyObservedSeconds.set({ policy: name }, gauges.observedSeconds);
        metrics.latencyEstimateAgeSeconds.set({ policy: name }, gauges.estimateAgeSeconds);
      } else {
        metrics.latencyObservedSeconds.remove({ policy: name });
        metrics.latencyEstimateAgeSeconds.remove({ policy: name });
      }
      metrics.recommendedGraceSeconds.set({ policy: name }, gauges.graceSeconds);
      deps.pacer?.measured(name, slicer.workedMs);
      setDistribution(metrics.recommendedGraceDistribution, name, GRACE_BUCKETS, distributions.grace);
      setDistribution(metrics.observedLatencyDistribution, name, LATENCY_BUCKETS, distributions.latency);
    }

    metrics.policyAccepted.set({ policy: name }, rejected ? 0 : 1);
    // From the counts, not the workload list: that list is bounded.
    const counts = status.counts ?? { matched: 0, compliant: 0, nonCompliant: 0, exempt: 0 };
    const perVerdict = {
      Compliant: counts.compliant,
      NonCompliant: counts.nonCompliant,
      Exempt: counts.exempt,
      Unknown: Math.max(0, counts.matched - counts.compliant - counts.nonCompliant),
    };
    for (const verdict of verdicts)
      metrics.policyWorkloads.set({ policy: name, verdict }, perVerdict[verdict]);
    if (!statusEquals(status, object.status)) {
      signal.throwIfAborted(); // leadership lost or stopping: another replica may write now
      const writing = performance.now();
      await writer.write(name, status, { resourceVersion: object.metadata?.resourceVersion, signal });
      deps.pacer?.wrote(name, performance.now() - writing);
      metrics.statusWrites.inc({ policy: name });
      const compliant = status.conditions?.find((c) => c.type === PolicyConditionTypes.Compliant);
      log.info({ counts: status.counts, compliant: compliant?.status }, 'status updated');
    }
    return { requeueAfterMs: deps.resyncMs };
  };
}

/** The outside triggers that change a policy's verdicts (controller-runtime source.Channel). */
export interface PolicyStatusTriggers {
  /** The refresher published another latency estimate for a Deployment the policy governs. */
  estimateChanged?: Trigger<[key: string, policy: string]>;
  /** The shutdown observer saw a Deployment's pods killed at their grace period. */
  killed?: Trigger<[key: string, policy: string]>;
  /** The probe recheck found a verdict for a Deployment the policy governs. */
  verdictFound?: Trigger<[key: string, policy: string]>;
}

type Queue = Pick<Controller, 'enqueue' | 'enqueueAfter'>;

/**
 * What wakes the reconcile; every source of a key is here. A status is computed again after a
 * delay (the pacer's debounce, longer for large policies), not at once: each status write would
 * queue the next pass while Deployments change (two a second of a status of 100 workloads, 60 ms
 * of the apiserver's CPU each). Only a policy's own new spec (or its creation) is looked at now.
 */
export function watchPolicyStatuses(
  queue: Queue,
  view: ClusterView,
  pacer: Pick<StatusPacer, 'delay'>,
  triggers: PolicyStatusTriggers = {},
): void {
  const later = (policy: string) => queue.enqueueAfter(policy, pacer.delay(policy));
  // A Deployment changed, or who selects it: the policies selecting it, before or now.
  view.onSelectionChange((_key, policies) => {
    for (const policy of policies) later(policy);
  });
  // A Service's selector or ports: the probe kinds planned for the Deployments it selects.
  view.onServicesChanged((keys) => {
    for (const key of keys) for (const policy of view.policiesSelecting(key)) later(policy);
  });
  // A policy's spec, creation or deletion: its own status now, and every status later, since
  // which policy wins may have changed. Any other update is a status or metadata write, mostly
  // this controller's own: looked at again after the debounce.
  const policyChanged = (name: string) => {
    queue.enqueue(name);
    for (const policy of view.policies.keys()) later(policy);
  };
  view.onPolicy({
    onAdd: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onDelete: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onUpdate: (policy, old) => {
      const name = policy.metadata?.name ?? '';
      if (policy.metadata?.generation !== old.metadata?.generation) policyChanged(name);
      else later(name);
    },
  });
  triggers.estimateChanged?.on((_key, policy) => later(policy));
  triggers.killed?.on((_key, policy) => later(policy));
  triggers.verdictFound?.on((_key, policy) => later(policy));
}

/** The controller with its watches, ready for the manager. */
export function policyStatusController(
  deps: PolicyStatusControllerDeps & { pacer: StatusPacer },
  triggers: PolicyStatusTriggers,
  options: { logger: Logger; metrics: RuntimeMetrics },
): Controller {
  const controller = new Controller({
    name: POLICY_STATUS_CONTROLLER,
    workers: 1,
    ...options,
    reconcile: policyStatusReconciler(deps),
  });
  watchPolicyStatuses(controller, deps.view, deps.pacer, triggers);
  return controller;
}

/**
 * One Event per transition of LatencyObserved: a Warning when it turns False (the source fails,
 * no data, too few requests), a Normal one when it recovers. `kubectl describe gsp` shows them.
 */
function recordLatencyTransition(
  deps: PolicyStatusControllerDeps,
  policy: { name: string; uid: string | undefined },
  previous: GracefulShutdownPolicyStatus | undefined,
  next: ReturnType<typeof latencyObservedCondition>,
): void {
  const before = previous?.conditions?.find((c) => c.type === PolicyConditionTypes.LatencyObserved);
  if (next === undefined || before?.status === next.status) return;
  const ref = { apiVersion: API_VERSION, kind: KIND, name: policy.name, uid: policy.uid };
  if (next.status === 'False')
    deps.events.record(ref, 'Warning', 'LatencyNotObserved', `${next.reason}: ${next.message}`);
  else if (next.status === 'True' && before?.status === 'False')
    deps.events.record(ref, 'Normal', 'LatencyObserved', next.message);
}

/**
 * One Event per transition of RolloutBreakerOpen: a Warning when it opens (a rollout the
 * operator started failed), a Normal one when it closes.
 */
function recordBreakerTransition(
  deps: PolicyStatusControllerDeps,
  policy: { name: string; uid: string | undefined },
  previous: GracefulShutdownPolicyStatus | undefined,
  next: GracefulShutdownPolicyStatus,
): void {
  const type = PolicyConditionTypes.RolloutBreakerOpen;
  const before = previous?.conditions?.find((c) => c.type === type);
  const after = next.conditions?.find((c) => c.type === type);
  if (after === undefined || before?.status === after.status) return;
  const ref = { apiVersion: API_VERSION, kind: KIND, name: policy.name, uid: policy.uid };
  if (after.status === 'True') deps.events.record(ref, 'Warning', 'RolloutBreakerOpen', after.message);
  else if (before?.status === 'True')
    deps.events.record(ref, 'Normal', 'RolloutBreakerClosed', after.message);
}
