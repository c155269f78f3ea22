// Enforces the winning policy's shutdown settings on one Deployment. Contract: given a
// Deployment's key, read it and the policies from the cache, compute, and write at most once:
// apply the plan (Enforce, non-compliant, within the rollout budget), release the Deployment
// (no policy manages it any more), or nothing (Audit, compliant, waiting).
import type { V1Deployment, V1ObjectReference } from '@kubernetes/client-node';
import type { DeploymentWriter } from '../kube/apply.ts';
import type { EventRecorder } from '../kube/events.ts';
import { rolloutDecision } from '../policy/budget.ts';
import { deploymentKey, matchDeployment } from '../policy/match.ts';
import {
  type ApplyConfiguration,
  applyConfiguration,
  handlerReplacements,
  readAppliedRecord,
  releaseConfiguration,
} from '../policy/ownership.ts';
import type { ClusterFacts, ValidPolicy } from '../policy/types.ts';
import type { Reconcile } from '../runtime/controller.ts';
import type { OperatorMetrics } from './metrics.ts';
import { type EstimateReader, ownsNothing, planWorkload, sameOwnership } from './plan.ts';
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
  tracker: RolloutTracker;
  metrics: OperatorMetrics;
  /** How soon a Deployment held back by the rollout budget is looked at again. */
  rolloutCheckMs: number;
  /** How soon a settled Deployment is looked at again without events. */
  resyncMs: number;
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

/** The Deployments in the cache that this policy wins, by key. */
function deploymentsWonBy(
  policy: ValidPolicy,
  all: ValidPolicy[],
  view: ClusterView,
): Map<string, V1Deployment> {
  const won = new Map<string, V1Deployment>();
  for (const deployment of view.deployments.list()) {
    const match = matchDeployment(all, deployment, view.namespaceLabels(deployment.metadata?.namespace));
    if (match.kind === 'Matched' && match.policy.name === policy.name)
      won.set(deploymentKey(deployment), deployment);
  }
  return won;
}

export function deploymentReconciler(deps: DeploymentControllerDeps): Reconcile {
  const { view, writer, events, tracker, metrics } = deps;
  /**
   * key -> the Deployment (uid) and its generation after this replica's last write. Every write
   * bumps a Deployment's generation (annotations included), so a cached object of the same uid
   * below it predates the write: reconciling it would write the same thing again. client-go
   * calls this "expectations".
   */
  const written = new Map<string, { uid: string | undefined; generation: number }>();
  const write = async (key: string, signal: AbortSignal, config: ApplyConfiguration) => {
    // Leadership lost or stopping: another replica may be writing now.
    signal.throwIfAborted();
    const updated = await writer.apply(config);
    const generation = updated.metadata?.generation;
    if (generation !== undefined) written.set(key, { uid: updated.metadata?.uid, generation });
    return updated;
  };
  return async (key, signal, log) => {
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
    const record = readAppliedRecord(deployment);
    // The policy that wrote it still exists but is invalid: keep still until it is fixed,
    // rather than let another policy take over (and restart the pods) meanwhile.
    if (record && invalid.has(record.policy)) return;
    const match = matchDeployment(valid, deployment, view.namespaceLabels(deployment.metadata?.namespace));

    if (match.kind !== 'Matched') {
      if (!record) return;
      await write(key, signal, releaseConfiguration(deployment, record));
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

    // One write with the observed latency beats a fallback write now and a second restart once
    // it is known: wait for the refresher's first answer (it enqueues this Deployment then).
    if (policy.spec.observedLatency.source !== 'None' && deps.estimates.get(key) === undefined) {
      log.debug({ policy: policy.name }, 'waiting for the first latency estimate');
      deps.requestEstimate?.();
      return;
    }
    const planned = planWorkload(deployment, policy, deps);
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
    if (compliant && sameOwnership(record, nextRecord)) return { requeueAfterMs: deps.resyncMs };
    if (compliant && !record && ownsNothing(nextRecord)) return { requeueAfterMs: deps.resyncMs };

    // Changing the pod template restarts the pods: that is what the rollout budget limits.
    // A compliant Deployment whose record alone changes keeps its template (owned fields the
    // plan no longer writes are kept at their values): no rollout, no budget.
    if (!compliant) {
      const rolling = tracker.rollingKeys(policy.name, deploymentsWonBy(policy, valid, view));
      const decision = rolloutDecision({ policy, deployment, rollingKeys: rolling, key });
      if (decision.kind === 'Wait') {
        tracker.wait(policy.name, key);
        metrics.rolloutWaits.inc({ policy: policy.name, reason: decision.reason });
        log.debug({ policy: policy.name, reason: decision.reason }, decision.message);
        return { requeueAfterMs: deps.rolloutCheckMs };
      }
      tracker.reserve(key, policy.name, deployment.metadata?.uid);
    }
    try {
      const replacements = handlerReplacements(deployment, plan);
      if (replacements.length > 0) {
        signal.throwIfAborted();
        await writer.patch(
          deployment.metadata?.namespace ?? '',
          deployment.metadata?.name ?? '',
          replacements,
        );
        metrics.deploymentWrites.inc({ policy: policy.name, operation: 'replace' });
      }
      const updated = await write(key, signal, applyConfiguration(deployment, nextRecord, plan));
      if (!compliant) tracker.patched(key, updated.metadata?.generation ?? Number.POSITIVE_INFINITY);
    } catch (err) {
      tracker.release(key);
      throw err;
    }
    metrics.deploymentWrites.inc({ policy: policy.name, operation: 'apply' });
    if (!compliant) {
      events.record(
        reference(deployment),
        'Normal',
        'ShutdownSettingsApplied',
        `policy ${policy.name}: ${changes.join('; ')} (${plan.graceExplanation}; ${plan.drain.message})`,
      );
    }
    log.info(
      { policy: policy.name, changes, drain: plan.drain },
      compliant ? 'recorded ownership' : 'applied shutdown settings',
    );
    return { requeueAfterMs: deps.resyncMs };
  };
}
