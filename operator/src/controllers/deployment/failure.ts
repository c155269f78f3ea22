// A rollout the operator started does not progress: record the failure (it holds the
// Deployment's namespace, and with others the policy's breaker) and, with rollout.onFailure
// Revert, write back the values the Deployment had before.
import type { V1Deployment } from '@kubernetes/client-node';
import { templateHash } from '../../policy/budget.ts';
import {
  type AppliedRecord,
  keepConfiguration,
  ownedFields,
  revertOperations,
} from '../../policy/ownership.ts';
import type { ValidPolicy } from '../../policy/types.ts';
import type { JobContext, JobResult, Target } from './job.ts';

export async function recordFailure(
  ctx: JobContext,
  target: Target,
  policy: ValidPolicy,
  record: AppliedRecord,
  failure: { reason: string; message: string },
): Promise<JobResult> {
  const { key, deployment, signal, log } = target;
  const revert = policy.spec.rollout.onFailure === 'Revert';
  const owned = ownedFields(deployment, ctx.seal) ?? record;
  const failed: AppliedRecord = {
    ...record,
    failure: {
      policyGeneration: policy.generation,
      reason: failure.reason,
      message: failure.message,
      at: new Date(ctx.now()).toISOString(),
      // Pause holds for this template; a revert records the template it leaves behind.
      ...(revert ? {} : { template: templateHash(deployment) }),
    },
  };
  await ctx.writes.apply(key, signal, keepConfiguration(deployment, owned, failed, ctx.seal));
  // The rollout is over (failed): it holds no slot and is no longer this replica's to watch.
  ctx.tracker.release(key);
  ctx.metrics.rolloutFailures.inc({ policy: policy.name, action: policy.spec.rollout.onFailure });
  ctx.writes.event(
    deployment,
    'Warning',
    'RolloutFailed',
    `policy ${policy.name}: ${failure.message}; no new rollouts in namespace ${deployment.metadata?.namespace} until it is fixed (rollout.onFailure ${policy.spec.rollout.onFailure})`,
  );
  log.warn({ policy: policy.name, reason: failure.reason }, failure.message);
  if (revert) return revertRollout(ctx, target, failed);
  return { requeueAfterMs: ctx.resyncMs };
}

/**
 * Writes the previous values back, then records the template the revert left. `record` is
 * sealed (readAppliedRecord drops an unsealed rollout): only values the operator recorded
 * when it made the change go back.
 */
export async function revertRollout(
  ctx: JobContext,
  { key, deployment, signal, log }: Target,
  record: AppliedRecord,
): Promise<JobResult> {
  const operations = revertOperations(deployment, record.rollout?.previous ?? {});
  let reverted: V1Deployment = deployment;
  if (operations.length > 0) {
    reverted = await ctx.writes.patch(deployment, operations, signal);
    ctx.metrics.deploymentWrites.inc({ policy: record.policy, operation: 'revert' });
  }
  const failure = record.failure ? { ...record.failure, template: templateHash(reverted) } : undefined;
  const done: AppliedRecord = { ...record, ...(failure ? { failure } : {}) };
  const owned = ownedFields(reverted, ctx.seal) ?? done;
  const recorded = await ctx.writes.apply(key, signal, keepConfiguration(reverted, owned, done, ctx.seal));
  // The restored values are the user's again: no entry of the operator's co-owns them.
  if (operations.length > 0) await ctx.writes.dropUpdateEntry(recorded, signal, log);
  ctx.writes.event(
    deployment,
    'Normal',
    'RolloutReverted',
    `policy ${record.policy}: the values before the operator's change are back (${operations.length} patch operations)`,
  );
  log.info({ policy: record.policy, operations: operations.length }, 'reverted a failed rollout');
  return { requeueAfterMs: ctx.resyncMs };
}
