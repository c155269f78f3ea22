// The Deployment controller (deployment-shutdown): enforces the winning policy's shutdown
// settings on one Deployment. This file answers "what wakes it?" (watchDeployments: its watches,
// change filter, mapped keys and outside triggers) and "what does a reconcile do?" (a dispatch
// to one job of deployment/: enforce, release, record a failure, revert).
//
//   Deployment events (view, after its indexes) -- change filter --+
//   policy, namespace and Service changes (view) -- mapped keys ----+
//   slot freed (view, tracker) -- the keys waiting longest ---------+--> queue --> reconcile --> job --> write
//   estimate changed, kill observed, probe check done (triggers) ---+
//
// Contract of a reconcile: given a Deployment's key, read it and the policies from the cache and
// the sources, decide, and write at most what one job writes.
import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_PREFIX } from '../api/annotations.ts';
import type { DeploymentWriter } from '../kube/apply.ts';
import type { EventRecorder } from '../kube/events.ts';
import { enqueueObject } from '../kube/informer.ts';
import type { Logger } from '../log.ts';
import { isRolling, progressDeadlineExceeded, rolloutSignature } from '../policy/budget.ts';
import { evaluate, type Planner } from '../policy/evaluate.ts';
import { deploymentKey } from '../policy/match.ts';
import { readAppliedRecord } from '../policy/ownership.ts';
import { type EstimateReader, PlanCache, type ShutdownReader } from '../policy/plan.ts';
import type { RecordSeal } from '../policy/record-seal.ts';
import type { ClusterFacts } from '../policy/types.ts';
import type { ProbeVerifier } from '../probes/verifier.ts';
import { Controller, type Reconcile } from '../runtime/controller.ts';
import type { RuntimeMetrics } from '../runtime/metrics.ts';
import type { Trigger } from '../runtime/trigger.ts';
import { enforce, enforcePlanDeps } from './deployment/enforce.ts';
import { recordFailure, revertRollout } from './deployment/failure.ts';
import type { JobContext } from './deployment/job.ts';
import { release } from './deployment/release.ts';
import { DeploymentWrites, Expectations } from './deployment/writes.ts';
import type { OperatorMetrics } from './metrics.ts';
import type { ProbeChecks } from './probe-checks.ts';
import { RolloutBudget } from './rollout-budget.ts';
import type { RolloutTracker } from './rollout-tracker.ts';
import type { ClusterView } from './view.ts';

export const DEPLOYMENT_CONTROLLER = 'deployment-shutdown';

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
  plans?: PlanCache;
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

/** What a reconcile leaves behind that the watches read: which events can change its decision. */
export class DeploymentMemory {
  /** The generation each write of this replica produced: its echo changes no decision. */
  readonly expectations = new Expectations();
  /** Keys whose last reconcile waits for the Deployment's own rollout or health. */
  readonly waitsOnStatus = new Set<string>();
}

export function deploymentReconciler(
  deps: DeploymentControllerDeps,
  memory: DeploymentMemory = new DeploymentMemory(),
): Reconcile {
  const { view, tracker, seal } = deps;
  const ctx: JobContext = {
    ...deps,
    writes: new DeploymentWrites(deps.writer, deps.events, memory.expectations),
    budget: new RolloutBudget(view, tracker, seal),
    plans: deps.plans ?? new PlanCache(),
    planDeps: enforcePlanDeps(deps),
    waitsOnStatus: memory.waitsOnStatus,
    now: deps.now ?? Date.now,
  };

  const planner: Planner = (deployment, policy) => ctx.plans.plan(deployment, policy, ctx.planDeps.normal);

  const reconcile: Reconcile = async (key, signal, log) => {
    memory.waitsOnStatus.delete(key);
    const deployment = view.deployments.get(key);
    if (!deployment) {
      tracker.release(key);
      memory.expectations.forget(key);
      return;
    }
    // Our own write has not reached the cache yet; its watch event queues the key again.
    if (memory.expectations.unmet(key, deployment)) return { requeueAfterMs: deps.rolloutCheckMs };
    const target = { key, deployment, signal, log };
    const { valid, invalid } = view.parsedPolicies();
    const record = readAppliedRecord(deployment, seal);
    if (record?.refused)
      ctx.writes.event(
        deployment,
        'Warning',
        'RecordRefused',
        `the gracefulshutdown.dev/applied record was refused (${record.refused}): its rollout, failure and conflict are ignored; the operator's next write replaces it`,
      );
    // The policy that wrote it still exists but is invalid: keep still until it is fixed,
    // rather than let another policy take over (and restart the pods) meanwhile.
    if (record && invalid.has(record.policy)) return;
    const labels = view.namespaceLabels(deployment.metadata?.namespace);
    const evaluation = evaluate(deployment, valid, labels, planner);
    if (evaluation.kind === 'Unmatched' || evaluation.kind === 'OptedOut')
      return record ? release(ctx, target, record, evaluation) : undefined;
    const { policy } = evaluation;
    // Audit writes nothing to workloads; its verdicts are the status controller's job.
    if (policy.spec.mode !== 'Enforce') return;
    const state = ctx.budget.state(key, deployment, record, policy, ctx.now());
    if (state.kind === 'OwnRolloutFailed' && record) return recordFailure(ctx, target, policy, record, state);
    if (state.kind === 'Failed' && record?.failure?.template === undefined && record)
      return revertRollout(ctx, target, record);
    return enforce(ctx, target, evaluation, record, state, valid);
  };

  // A key a freed slot woke passes the slot on when it does not take it.
  return async (key, signal, log) => {
    try {
      return await reconcile(key, signal, log);
    } finally {
      tracker.settleWoken(key);
    }
  };
}

/** The outside triggers that change what a reconcile reads (controller-runtime source.Channel). */
export interface DeploymentTriggers {
  /** The refresher published another latency estimate for the Deployment. */
  estimateChanged?: Trigger<[key: string, policy: string]>;
  /** The shutdown observer saw the Deployment's pods killed at their grace period. */
  killed?: Trigger<[key: string, policy: string]>;
  /** The Deployment's probe checks are done; `pending` when its pods had only just started. */
  probeChecksDone?: Trigger<[key: string, pending: boolean]>;
}

type Queue = Pick<Controller, 'enqueue' | 'enqueueAfter'>;

/**
 * The annotations a decision reads (the operator's own, gracefulshutdown.dev/) are the same.
 * Others change without a new spec: the Deployment controller bumps deployment.kubernetes.io/
 * revision as each rollout starts (testdata/rollout-events.json).
 */
function sameOwnAnnotations(a: Record<string, string> = {}, b: Record<string, string> = {}): boolean {
  if (a === b) return true;
  const own = (annotations: Record<string, string>) =>
    Object.entries(annotations).filter(([key]) => key.startsWith(ANNOTATION_PREFIX));
  const [x, y] = [own(a), own(b)];
  return x.length === y.length && x.every(([key, value]) => b[key] === value);
}

/**
 * Spec, labels, the operator's annotations, managedFields, identity or deletion are the same
 * (the cache shares unchanged parts: kube/informer.ts shareUnchangedParts).
 */
function sameObject(old: V1Deployment, current: V1Deployment): boolean {
  const [a, b] = [old.metadata, current.metadata];
  return (
    old.spec === current.spec &&
    a?.labels === b?.labels &&
    sameOwnAnnotations(a?.annotations, b?.annotations) &&
    a?.managedFields === b?.managedFields &&
    a?.generation === b?.generation &&
    a?.uid === b?.uid &&
    String(a?.deletionTimestamp) === String(b?.deletionTimestamp)
  );
}

/**
 * The change filter (controller-runtime's predicate): whether an update of a Deployment can
 * change the reconcile's decision.
 * - A new spec or metadata does, except the echo of this replica's own write (the cache
 *   reaching the generation the write produced: the reconcile that wrote decided with it).
 * - A status update does only where the reconcile waits for it: for the Deployment's own
 *   rollout or health to end (memory.waitsOnStatus), or when the Deployment controller gives
 *   up on a rollout (a failure of the operator's). The progress and end of the operator's own
 *   rollouts decide nothing for their Deployment (they free a slot: the slot watch wakes
 *   another); a rollout reconciled at each of its status events took 7 reconciles per
 *   Deployment to converge.
 */
export function deploymentChangeMatters(
  key: string,
  old: V1Deployment,
  current: V1Deployment,
  memory: DeploymentMemory,
): boolean {
  if (!sameObject(old, current)) return !memory.expectations.isEcho(key, current, old);
  if (rolloutSignature(old) === rolloutSignature(current)) return false;
  return (
    memory.waitsOnStatus.has(key) || (progressDeadlineExceeded(current) && !progressDeadlineExceeded(old))
  );
}

/** What wakes the reconcile; every source of a key is here. */
export function watchDeployments(
  queue: Queue,
  deps: Pick<DeploymentControllerDeps, 'view' | 'tracker' | 'seal' | 'rolloutCheckMs' | 'now'>,
  memory: DeploymentMemory,
  triggers: DeploymentTriggers = {},
): void {
  const { view, tracker } = deps;
  const budget = new RolloutBudget(view, tracker, deps.seal);
  const now = deps.now ?? Date.now;

  // The Deployment's own changes, filtered; a Deployment that stops rolling (or goes while
  // rolling) may free a slot of the policy whose record it carries.
  const own = enqueueObject<V1Deployment>(queue.enqueue);
  view.onDeployment({
    onAdd: own.onAdd,
    onDelete: (deployment) => {
      own.onDelete?.(deployment);
      if (isRolling(deployment)) wakeForFreeSlots(readAppliedRecord(deployment)?.policy);
    },
    onUpdate: (deployment, old) => {
      const key = deploymentKey(deployment);
      if (view.policiesSelecting(key).length > 0) tracker.observe(key, deployment);
      // During a write of the operator's, decided once its answer says which is the echo.
      const held = memory.expectations.hold(key, old, deployment);
      if (!held && deploymentChangeMatters(key, old, deployment, memory)) queue.enqueue(key);
      if (isRolling(old) && !isRolling(deployment)) wakeForFreeSlots(readAppliedRecord(deployment)?.policy);
    },
  });
  memory.expectations.onReleased((key, held) => {
    if (held.some(([old, current]) => deploymentChangeMatters(key, old, current, memory))) queue.enqueue(key);
  });
  // Who selects it changed (a policy's, a namespace's labels): a release or another policy's plan.
  view.onSelectionChange((key, _policies, selectionChanged) => {
    if (selectionChanged) queue.enqueue(key);
  });
  // A policy's spec (a new generation), its creation or deletion: the Deployments it selects now
  // (those it stopped selecting come through the selection change).
  const policyChanged = (name: string) => {
    for (const deployment of view.selectedBy(name)) queue.enqueue(deploymentKey(deployment));
  };
  view.onPolicy({
    onAdd: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onDelete: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onUpdate: (policy, old) => {
      if (policy.metadata?.generation !== old.metadata?.generation)
        policyChanged(policy.metadata?.name ?? '');
    },
  });
  // A Service's selector or ports changed: the probe kind planned for the Deployments it selects
  // may change (a port's appProtocol, policy/protocols.ts).
  view.onServicesChanged((keys) => {
    for (const key of keys) queue.enqueue(key);
  });

  // A slot of a policy's budget may be free: a rollout of the operator's finished (or its
  // Deployment went, or left the policy), a failure gone, a write that failed, a woken key that
  // did not take its slot. As many keys as slots are free are woken, those that waited longest,
  // less the keys already woken and not yet reconciled: two events for one slot wake one key.
  // Waits for the budget end by these events alone (their requeue is the resync, a safety net).
  function wakeForFreeSlots(name: string | undefined): void {
    if (name === undefined) return;
    const { valid } = view.parsedPolicies();
    const policy = valid.find((p) => p.name === name);
    if (!policy) return;
    const free = budget.freeSlots(policy, valid, now()) - tracker.wokenCount(name);
    if (free > 0) for (const key of tracker.takeWaiting(name, free)) queue.enqueue(key);
  }
  view.onRolloutEnded(wakeForFreeSlots);
  tracker.onSlotFreed(wakeForFreeSlots);

  // Outside triggers: what planning reads changed.
  triggers.estimateChanged?.on((key) => queue.enqueue(key));
  triggers.killed?.on((key) => queue.enqueue(key));
  triggers.probeChecksDone?.on((key, pending) =>
    pending ? queue.enqueueAfter(key, deps.rolloutCheckMs) : queue.enqueue(key),
  );
}

/** The controller with its watches, ready for the manager. */
export function deploymentController(
  deps: DeploymentControllerDeps,
  triggers: DeploymentTriggers,
  options: { workers: number; logger: Logger; metrics: RuntimeMetrics },
): Controller {
  const memory = new DeploymentMemory();
  const controller = new Controller({
    name: DEPLOYMENT_CONTROLLER,
    ...options,
    reconcile: deploymentReconciler(deps, memory),
  });
  watchDeployments(controller, deps, memory, triggers);
  return controller;
}
