// Another field manager setting back a field the operator wrote: a GitOps tool re-applying its
// manifest (Argo CD and Flux force server-side apply; kubectl client-side apply and Helm
// three-way merges do the same), or a person editing the field by hand. Re-applying each time
// would restart the pods twice per sync, forever. The operator re-applies once; a second
// set-back within rollout.conflictWindowSeconds holds the Deployment (no more writes) until the
// other manager's value is compliant or it lets go of the field (docs/gitops.md).
// Pure: managedFields, the record and the plan's diff in, a decision out.
import type { V1Deployment, V1ManagedFieldsEntry } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import type { RolloutDecision } from './budget.ts';
import type { ChangedField, FieldChange } from './diff.ts';
import { fieldChild } from './managed-fields.ts';
import { type AppliedRecord, ownedByApply } from './ownership.ts';
import type { ValidPolicy } from './types.ts';

/** A field the operator wrote that another manager now owns. */
export interface Takeover {
  field: ChangedField;
  /** The container, for a probe or a hook. */
  container?: string;
  /** The manager that owns the field now. */
  manager: string;
}

/** What the operator does about the takeovers of fields it would write again. */
export type ConflictDecision =
  | { kind: 'None' }
  /** First set-back (or the last was long ago): re-apply once, and remember it in the record. */
  | { kind: 'Reapply'; takeover: Takeover; message: string }
  /** Set back again within the window, or still held: no write. */
  | { kind: 'Hold'; takeover: Takeover; message: string };

/** Longest manager name kept in a record or a message (Kubernetes allows 128). */
const MAX_MANAGER = 128;

/** The managedFields path of a field, under the pod template's spec. */
function fieldPath(field: ChangedField, container: string | undefined): string[] {
  if (field === 'terminationGracePeriodSeconds') return ['f:terminationGracePeriodSeconds'];
  const item = `k:${JSON.stringify({ name: container })}`;
  return field === 'readinessProbe'
    ? ['f:containers', item, 'f:readinessProbe']
    : ['f:containers', item, 'f:lifecycle', 'f:preStop'];
}

function ownsPath(entry: V1ManagedFieldsEntry, path: string[]): boolean {
  return fieldChild(entry.fieldsV1, 'f:spec', 'f:template', 'f:spec', ...path) !== undefined;
}

/** A manager name safe to keep and print: bounded, one line, no control characters. */
export function managerName(name: string | undefined): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what goes.
  const clean = (name ?? '').replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, MAX_MANAGER);
  return clean === '' ? 'an unnamed manager' : clean;
}

/** The entries of other managers: not the operator's (its JSON patches included), not a subresource's. */
function otherEntries(deployment: V1Deployment): V1ManagedFieldsEntry[] {
  return (deployment.metadata?.managedFields ?? []).filter(
    (e) => e.manager !== FIELD_MANAGER && !e.subresource,
  );
}

/**
 * The fields the record says the operator wrote that another manager has taken since
 * (managedFields name it as the owner, the operator's apply no longer does). A field nobody
 * owns any more (a manager let go of it, or it was removed) is no takeover: writing it again
 * fights nobody. None when the object carries no managedFields: nothing can be told.
 */
export function fieldsTakenOver(deployment: V1Deployment, record: AppliedRecord | undefined): Takeover[] {
  if (!record) return [];
  const owned = ownedByApply(deployment);
  if (owned === undefined) return [];
  const claimed: { field: ChangedField; container?: string }[] = [];
  if (record.terminationGracePeriodSeconds !== undefined && owned.terminationGracePeriodSeconds === undefined)
    claimed.push({ field: 'terminationGracePeriodSeconds' });
  for (const [container, fields] of Object.entries(record.containers)) {
    const ours = owned.containers[container];
    if (fields.readinessProbe && !ours?.readinessProbe) claimed.push({ field: 'readinessProbe', container });
    if (fields.preStop && !ours?.preStop) claimed.push({ field: 'preStop', container });
  }
  if (claimed.length === 0) return [];
  const others = otherEntries(deployment);
  return claimed.flatMap(({ field, container }) => {
    const owner = others.find((e) => ownsPath(e, fieldPath(field, container)));
    return owner ? [{ field, ...(container ? { container } : {}), manager: managerName(owner.manager) }] : [];
  });
}

/** "terminationGracePeriodSeconds" or "containers[app].readinessProbe". */
export function describeField(takeover: { field: ChangedField; container?: string }): string {
  return takeover.container === undefined
    ? takeover.field
    : `containers[${takeover.container}].${takeover.field}`;
}

function sameField(
  a: { field: string; container?: string },
  b: { field: string; container?: string },
): boolean {
  return a.field === b.field && a.container === b.container;
}

/**
 * What to do about another manager's set-back. Only a takeover of a field the plan would change
 * counts (a value set back to a compliant one is no conflict). Holds when the record remembers
 * a set-back of the same field by the same manager within rollout.conflictWindowSeconds, or a
 * hold that the takeover has not ended since.
 */
export function conflictDecision(input: {
  deployment: V1Deployment;
  /** The record on the Deployment (readAppliedRecord), with what it remembers of conflicts. */
  record: AppliedRecord | undefined;
  /** The fields the plan would change now (diffDeployment). */
  changes: readonly FieldChange[];
  policy: ValidPolicy;
  /** Epoch milliseconds. */
  now: number;
}): ConflictDecision {
  const { deployment, record, changes, policy, now } = input;
  const takeovers = fieldsTakenOver(deployment, record).filter((t) => changes.some((c) => sameField(c, t)));
  const [takeover] = takeovers;
  if (!takeover) return { kind: 'None' };
  const change = changes.find((c) => sameField(c, takeover));
  const field = describeField(takeover);
  const value = `set it to ${change?.from ?? 'another value'}`;
  const windowSeconds = policy.spec.rollout.conflictWindowSeconds;
  const last = record?.policy === policy.name ? record.conflict : undefined;
  const lastAt = last ? Date.parse(last.at) : Number.NaN;
  const remembered =
    last !== undefined &&
    last.manager === takeover.manager &&
    sameField(last, takeover) &&
    (last.held === true || (Number.isFinite(lastAt) && now - lastAt < windowSeconds * 1000));
  if (remembered)
    return {
      kind: 'Hold',
      takeover,
      message: `field manager ${takeover.manager} ${value} again after the operator wrote ${change?.to ?? 'its value'} to ${field}: held, no more writes to this Deployment until that manager's value is compliant or it lets go of the field (docs/gitops.md)`,
    };
  return {
    kind: 'Reapply',
    takeover,
    message: `field manager ${takeover.manager} ${value} after the operator wrote ${field}: written once more (${change?.to ?? ''}); set back again within ${windowSeconds} s (rollout.conflictWindowSeconds), the Deployment is held`,
  };
}

/** The rollout decision a hold amounts to: the write waits, reason ConflictingManager. */
export function conflictWait(decision: ConflictDecision): RolloutDecision | undefined {
  return decision.kind === 'Hold'
    ? { kind: 'Wait', reason: 'ConflictingManager', message: decision.message }
    : undefined;
}

/** The record's memory of a conflict, for the write that re-applies or holds. */
export function conflictMemory(
  decision: Exclude<ConflictDecision, { kind: 'None' }>,
  now: number,
): NonNullable<AppliedRecord['conflict']> {
  const { field, container, manager } = decision.takeover;
  return {
    manager,
    field,
    ...(container ? { container } : {}),
    at: new Date(now).toISOString(),
    ...(decision.kind === 'Hold' ? { held: true } : {}),
  };
}

/**
 * The set-back a write keeps remembering (policy/conflicts.ts): one of this policy's within
 * rollout.conflictWindowSeconds, so that a second set-back still holds. A hold is never carried:
 * the operator writes only once the conflict it held for has ended.
 */
export function carriedConflict(
  record: AppliedRecord | undefined,
  policy: ValidPolicy,
  now: number,
): AppliedRecord['conflict'] {
  const conflict = record?.policy === policy.name ? record.conflict : undefined;
  if (!conflict || conflict.held) return undefined;
  const at = Date.parse(conflict.at);
  return Number.isFinite(at) && now - at < policy.spec.rollout.conflictWindowSeconds * 1000
    ? conflict
    : undefined;
}
