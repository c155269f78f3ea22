// What every job of the Deployment controller gets: the controller's inputs, its writes, the
// budget, and the Deployment it works on.
import type { V1Deployment } from '@kubernetes/client-node';
import type { Logger } from '../../log.ts';
import type { PlanCache, PlanDeps } from '../../policy/plan.ts';
import type { DeploymentControllerDeps } from '../deployment-controller.ts';
import type { RolloutBudget } from '../rollout-budget.ts';
import type { DeploymentWrites } from './writes.ts';

export interface JobContext extends DeploymentControllerDeps {
  writes: DeploymentWrites;
  budget: RolloutBudget;
  plans: PlanCache;
  /** What planning reads (enforce.ts enforcePlanDeps), made once: the plan cache compares by identity. */
  planDeps: { normal: PlanDeps; joining: PlanDeps };
  /** Keys whose last reconcile waits for the Deployment's own rollout or health: its status changes wake them. */
  waitsOnStatus: Set<string>;
  now(): number;
}

/** The Deployment a reconcile works on, as the cache holds it. */
export interface Target {
  key: string;
  deployment: V1Deployment;
  signal: AbortSignal;
  log: Logger;
}

/** What a job asks of the queue (controller-runtime's Result). */
export type JobResult = { requeueAfterMs: number } | undefined;
