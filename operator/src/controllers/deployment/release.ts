// Release: no policy manages the Deployment any more (none selects it, or it opted out). Its
// settings stay as they are; the record and the operator's field ownership go, in one write.
import type { Evaluation } from '../../policy/evaluate.ts';
import { type AppliedRecord, keepConfiguration, ownedFields } from '../../policy/ownership.ts';
import type { JobContext, Target } from './job.ts';

export async function release(
  ctx: JobContext,
  { key, deployment, signal, log }: Target,
  record: AppliedRecord,
  match: Extract<Evaluation, { kind: 'Unmatched' | 'OptedOut' }>,
): Promise<void> {
  const owned = ownedFields(deployment, ctx.seal) ?? record;
  await ctx.writes.apply(key, signal, keepConfiguration(deployment, owned, undefined, ctx.seal));
  ctx.metrics.deploymentWrites.inc({ policy: record.policy, operation: 'release' });
  const why = match.kind === 'OptedOut' ? 'it is opted out' : 'no policy selects it any more';
  ctx.writes.event(
    deployment,
    'Normal',
    'ShutdownSettingsReleased',
    `policy ${record.policy} no longer manages this Deployment (${why}); its settings are kept as they are`,
  );
  log.info({ policy: record.policy, why }, 'released Deployment');
}
