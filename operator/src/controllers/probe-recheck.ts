// The check a tcpSocket fallback is owed. Where no pod could answer the readiness path, the
// operator wrote a tcpSocket probe instead of a blind httpGet one (policy/desired.ts
// decideProbe); once pods run, the httpGet probe is checked on them here, in the background, so
// that the next pod-template change can take it without a restart of its own: the webhook joins
// that change when this replica holds a Verified verdict, the deployment controller joins a
// template rollout under OnNextRollout. Every replica runs it (the webhook answers on each);
// it only sends the kubelet's GET to pods, it writes nothing.
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';
import { deploymentKey, deploymentUid, matchDeployment } from '../policy/match.ts';
import type { PlanCache, PlanDeps } from '../policy/plan.ts';
import type { ValidPolicy } from '../policy/types.ts';
import { type ProbeVerifier, runningPods } from '../probes/verifier.ts';
import type { Runnable } from '../runtime/manager.ts';
import { Trigger } from '../runtime/trigger.ts';
import type { ClusterView } from './view.ts';

export const PROBE_RECHECK = 'probe-recheck';

export interface OwedCheck {
  deployment: V1Deployment;
  policy: ValidPolicy;
  container: string;
  path: string;
  port: number | string;
  timeoutMs: number;
}

export interface ProbeRecheckDeps {
  view: Pick<ClusterView, 'parsedPolicies' | 'selectedBy' | 'namespaceLabels'>;
  plans: PlanCache;
  /** The sources the controllers plan with (the same objects: the cache's entries are shared). */
  planDeps: PlanDeps;
  verifier: ProbeVerifier;
  podsOf(deployment: V1Deployment): V1Pod[];
  intervalMs: number;
  logger: Logger;
}

const hasTcpProbe = (d: V1Deployment) =>
  (d.spec?.template?.spec?.containers ?? []).some((c) => c.readinessProbe?.tcpSocket !== undefined);

/**
 * The Deployments whose plan owes a check (ShutdownPlan.probeCheck) that running pods could
 * answer now: no verdict yet, or NoPods from before they ran (a verdict is kept five minutes).
 * Enforce policies with verification Verify, the Deployments they win that have a tcpSocket
 * probe. With no running pod nothing is owed yet: asking would only keep a NoPods verdict.
 * Reads the caches and the plan cache only.
 */
export function owedChecks(
  deps: Pick<ProbeRecheckDeps, 'view' | 'plans' | 'planDeps' | 'verifier' | 'podsOf'>,
): OwedCheck[] {
  const { valid } = deps.view.parsedPolicies();
  const owed: OwedCheck[] = [];
  for (const policy of valid) {
    if (policy.spec.mode !== 'Enforce' || policy.spec.readinessProbe.verification !== 'Verify') continue;
    for (const deployment of deps.view.selectedBy(policy.name)) {
      if (!hasTcpProbe(deployment)) continue;
      const match = matchDeployment(
        valid,
        deployment,
        deps.view.namespaceLabels(deployment.metadata?.namespace),
      );
      if (match.kind !== 'Matched' || match.policy.name !== policy.name) continue;
      const planned = deps.plans.plan(deployment, policy, deps.planDeps);
      const check = planned.ok ? planned.plan.probeCheck : undefined;
      if (check === undefined) continue;
      const verdict = deps.verifier.lookup(deploymentUid(deployment))(
        check.container,
        check.path,
        check.port,
      );
      if (verdict !== undefined && verdict.state !== 'NoPods') continue;
      if (runningPods(deps.podsOf(deployment), check.container).length === 0) continue;
      owed.push({
        deployment,
        policy,
        ...check,
        timeoutMs: policy.spec.readinessProbe.timeoutSeconds * 1000,
      });
    }
  }
  return owed;
}

export class ProbeRecheck implements Runnable {
  readonly name = PROBE_RECHECK;
  readonly needLeaderElection = false;
  /** A verdict arrived for the Deployment (key), governed by the policy: its status may change. */
  readonly verdictFound = new Trigger<[key: string, policy: string]>();
  readonly #deps: ProbeRecheckDeps;

  constructor(deps: ProbeRecheckDeps) {
    this.#deps = deps;
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.pass(signal);
      // Rejects when stopped: the loop ends on the signal.
      await sleep(this.#deps.intervalMs, undefined, { signal }).catch(() => {});
    }
  }

  /** Checks every owed probe once; a Pending verdict (pods too young) waits for the next pass. */
  async pass(signal: AbortSignal): Promise<void> {
    const { verifier, podsOf, logger } = this.#deps;
    for (const owed of owedChecks(this.#deps)) {
      if (signal.aborted) return;
      const { deployment, policy, container, path, port, timeoutMs } = owed;
      try {
        const verdict = await verifier.verify({
          deployment,
          pods: podsOf(deployment),
          container,
          path,
          port,
          timeoutMs,
          signal,
        });
        const key = deploymentKey(deployment);
        logger[verdict.state === 'Pending' ? 'debug' : 'info'](
          { deployment: key, policy: policy.name, container, verdict },
          'fallback readiness probe: httpGet checked',
        );
        if (verdict.state !== 'Pending') this.verdictFound.emit(key, policy.name);
      } catch (err) {
        if (signal.aborted) return;
        logger.warn({ err, deployment: deploymentKey(deployment) }, 'fallback readiness probe check failed');
      }
    }
  }
}
