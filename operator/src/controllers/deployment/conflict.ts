// Another field manager set back a field the operator wrote (policy/conflicts.ts): written once
// more (Reapply), then held (Hold) until the conflict ends.
import type { V1Deployment } from '@kubernetes/client-node';
import type { Logger } from '../../log.ts';
import { type ConflictDecision, conflictMemory, describeField } from '../../policy/conflicts.ts';
import { type AppliedRecord, keepConfiguration, ownedFields } from '../../policy/ownership.ts';
import type { ValidPolicy } from '../../policy/types.ts';
import type { JobContext, JobResult, Target } from './job.ts';

/**
 * No write of the settings. The first time, the record remembers the hold (a metadata-only
 * write: no rollout) and a Warning Event names the manager and the field; after that, nothing is
 * written until the conflict ends (the manager's value compliant, or the field let go).
 */
export async function holdForConflict(
  ctx: JobContext,
  { key, deployment, signal, log }: Target,
  policy: ValidPolicy,
  record: AppliedRecord,
  conflict: Extract<ConflictDecision, { kind: 'Hold' }>,
): Promise<JobResult> {
  // The other manager's rollout is not the operator's: no slot, no blame.
  ctx.tracker.release(key);
  ctx.metrics.rolloutWaits.inc({ policy: policy.name, reason: 'ConflictingManager' });
  if (record.conflict?.held) return { requeueAfterMs: ctx.resyncMs };
  const held: AppliedRecord = { ...record, conflict: conflictMemory(conflict, ctx.now()) };
  const owned = ownedFields(deployment, ctx.seal) ?? record;
  await ctx.writes.apply(key, signal, keepConfiguration(deployment, owned, held, ctx.seal));
  reportConflict(ctx, deployment, policy, conflict, log);
  return { requeueAfterMs: ctx.resyncMs };
}

/** The Warning Event, the metric and the log line of a re-apply or a hold. */
export function reportConflict(
  ctx: JobContext,
  deployment: V1Deployment,
  policy: ValidPolicy,
  conflict: Exclude<ConflictDecision, { kind: 'None' }>,
  log: Logger,
): void {
  const held = conflict.kind === 'Hold';
  ctx.metrics.fieldConflicts.inc({ policy: policy.name, action: held ? 'held' : 'reapplied' });
  const reason = held ? 'ConflictingManager' : 'FieldSetBack';
  ctx.writes.event(deployment, 'Warning', reason, `policy ${policy.name}: ${conflict.message}`);
  log.warn(
    { policy: policy.name, manager: conflict.takeover.manager, field: describeField(conflict.takeover) },
    held
      ? 'held: another field manager keeps setting back a field the operator wrote'
      : 'another field manager set back a field the operator wrote: written once more',
  );
}
