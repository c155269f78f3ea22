// What the operator owns on a Deployment, and the apply configurations that write it.
// The operator's record lives in the gracefulshutdown.dev/applied annotation on the Deployment's
// own metadata (never the pod template: changing it must not restart pods). Under server-side
// apply every apply must name all the fields the operator still wants to own — a field left out
// is removed — so the record says which fields are the operator's. That includes the pod-template
// annotations mirroring the grace period and the preStop wait for the app (withMirrorAnnotations).
import type { V1Container, V1Deployment, V1LifecycleHandler, V1Probe } from '@kubernetes/client-node';
import { LRUCache } from 'lru-cache';
import {
  ANNOTATION_PREFIX,
  APPLIED_ANNOTATION,
  FIELD_MANAGER,
  GRACE_PERIOD_SECONDS_ANNOTATION,
  PRESTOP_SECONDS_ANNOTATION,
} from '../api/annotations.ts';
import { isRecord } from '../util/is-record.ts';
import { type ChangedField, diffDeployment, templateAnnotations } from './diff.ts';
import { fieldChild } from './managed-fields.ts';
import {
  currentGraceSeconds,
  handlerSatisfies,
  handlersEqual,
  preStopSummary,
  probesEqual,
  regularContainers,
  sameHandlerKinds,
} from './podspec.ts';
import { type RecordSeal, stableJson } from './record-seal.ts';
import type { ShutdownPlan } from './types.ts';

export interface AppliedRecord {
  policy: string;
  policyGeneration: number;
  /** Set when the operator owns the pod's terminationGracePeriodSeconds. */
  terminationGracePeriodSeconds?: number;
  /** Per container name, the fields the operator owns. */
  containers: Record<string, { readinessProbe?: boolean; preStop?: boolean }>;
  /** The pod-template annotations the operator owns (the mirrors of the values above), by key. */
  templateAnnotations?: string[];
  /** Why these values, for humans (drain time and its source). */
  reason: string;
  /**
   * The rollout the operator's last pod-template change started: the generation it produced,
   * when, and the values it replaced (null: absent), which rollout.onFailure Revert writes back.
   */
  rollout?: { generation: number; startedAt: string; previous: PreviousValues };
  /**
   * That rollout failed. It holds (no writes, the policy's breaker open) until the policy's
   * generation or the pod template changes; `template` is the template hash it holds for,
   * unset while a revert is still to be written.
   */
  failure?: { policyGeneration: number; reason: string; message: string; at: string; template?: string };
  /**
   * Another field manager set back a field the operator wrote (policy/conflicts.ts): which one,
   * which field, when the operator last wrote it again, and whether it now holds the Deployment.
   */
  conflict?: { manager: string; field: ChangedField; container?: string; at: string; held?: boolean };
  /**
   * Set on a record as read, never written: why its rollout, failure and conflict were ignored
   * (they carry no seal of this operator's for this Deployment, policy/record-seal.ts).
   */
  refused?: string;
}

/** The parts of a record that count only with a valid seal: they decide beyond the record's Deployment. */
const SEALED_PARTS = ['rollout', 'failure', 'conflict'] as const;

/** What a write replaced, to revert it: per field its value before, null when there was none. */
export interface PreviousValues {
  terminationGracePeriodSeconds?: number;
  containers?: Record<string, { readinessProbe?: V1Probe | null; preStop?: V1LifecycleHandler | null }>;
  annotations?: Record<string, string | null>;
}

/** Keys of the operator's own group only: a record cannot make it claim someone else's annotation. */
function ownedAnnotationKeys(value: unknown): { templateAnnotations?: string[] } {
  if (!Array.isArray(value)) return {};
  const keys = value.filter((k): k is string => typeof k === 'string' && k.startsWith(ANNOTATION_PREFIX));
  return keys.length > 0 ? { templateAnnotations: keys } : {};
}

function rolloutOf(value: unknown): Pick<AppliedRecord, 'rollout'> {
  if (!isRecord(value)) return {};
  const { generation, startedAt, previous } = value as Record<string, unknown>;
  if (typeof generation !== 'number' || typeof startedAt !== 'string') return {};
  return {
    rollout: { generation, startedAt, previous: isRecord(previous) ? (previous as PreviousValues) : {} },
  };
}

const CHANGED_FIELDS: readonly string[] = ['terminationGracePeriodSeconds', 'readinessProbe', 'preStop'];

function conflictOf(value: unknown): Pick<AppliedRecord, 'conflict'> {
  if (!isRecord(value)) return {};
  const { manager, field, container, at, held } = value as Record<string, unknown>;
  if (typeof manager !== 'string' || typeof field !== 'string' || typeof at !== 'string') return {};
  if (!CHANGED_FIELDS.includes(field) || manager.length > 128) return {};
  return {
    conflict: {
      manager,
      field: field as ChangedField,
      ...(typeof container === 'string' ? { container } : {}),
      at,
      ...(held === true ? { held: true } : {}),
    },
  };
}

function failureOf(value: unknown): Pick<AppliedRecord, 'failure'> {
  if (!isRecord(value)) return {};
  const { policyGeneration, reason, message, at, template } = value as Record<string, unknown>;
  if (typeof policyGeneration !== 'number' || typeof at !== 'string') return {};
  return {
    failure: {
      policyGeneration,
      reason: String(reason ?? 'RolloutFailed'),
      message: String(message ?? ''),
      at,
      ...(typeof template === 'string' ? { template } : {}),
    },
  };
}

interface ParsedRecord {
  /** Every part, as written. */
  record: AppliedRecord;
  /** Without SEALED_PARTS (the same object when it has none). */
  unsealed: AppliedRecord;
  /** What the seal covers: the record's JSON as written, without the seal, keys sorted. */
  body: string;
  seal?: string;
}

/**
 * Records read lately (the one read longest ago goes first), by the annotation's text: the
 * rollout budget reads the record of every Deployment in rollout on each reconcile of one waiting
 * for budget, and JSON.parse was most of that (a CPU profile of 300 Deployments under
 * maxConcurrent 100). Shared: never mutate a record. `false` is an unreadable record (an LRUCache
 * holds no undefined).
 */
const parsedRecords = new LRUCache<string, ParsedRecord | false>({ max: 4096 });

export const RECORD_REFUSED = {
  unsealed: 'it carries no seal of the operator: not written by it',
  mismatch:
    'its seal does not match this Deployment: copied from another Deployment, edited, or sealed with another key',
} as const;

/**
 * The operator's record on a Deployment; undefined when absent or unreadable (then nothing is
 * owned). Its rollout, failure and conflict are kept only when `seal` verifies the record for
 * this Deployment's UID; otherwise they are dropped and, when there was a seal to check with,
 * `refused` says why. Without `seal` (readers that decide nothing with them) they are dropped.
 */
export function readAppliedRecord(deployment: V1Deployment, seal?: RecordSeal): AppliedRecord | undefined {
  const raw = deployment.metadata?.annotations?.[APPLIED_ANNOTATION];
  if (!raw) return undefined;
  let parsed = parsedRecords.get(raw);
  if (parsed === undefined) {
    parsed = parseAppliedRecord(raw) ?? false;
    parsedRecords.set(raw, parsed);
  }
  if (parsed === false) return undefined;
  if (parsed.unsealed === parsed.record || seal === undefined) return parsed.unsealed;
  const uid = deployment.metadata?.uid ?? '';
  if (parsed.seal !== undefined && seal.verify(uid, parsed.body, parsed.seal)) return parsed.record;
  return {
    ...parsed.unsealed,
    refused: parsed.seal === undefined ? RECORD_REFUSED.unsealed : RECORD_REFUSED.mismatch,
  };
}

function parseAppliedRecord(raw: string): ParsedRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  const { seal, ...written } = value as Record<string, unknown> & Partial<AppliedRecord>;
  if (
    typeof written.policy !== 'string' ||
    !isRecord(written.containers) ||
    // Every entry is read as an object: one null entry would throw in every reconcile.
    !Object.values(written.containers).every(isRecord)
  ) {
    return undefined;
  }
  const record: AppliedRecord = {
    policy: written.policy,
    policyGeneration: Number(written.policyGeneration) || 0,
    containers: written.containers as AppliedRecord['containers'],
    reason: String(written.reason ?? ''),
    ...(typeof written.terminationGracePeriodSeconds === 'number'
      ? { terminationGracePeriodSeconds: written.terminationGracePeriodSeconds }
      : {}),
    ...ownedAnnotationKeys(written.templateAnnotations),
    ...rolloutOf(written.rollout),
    ...failureOf(written.failure),
    ...conflictOf(written.conflict),
  };
  return {
    record,
    unsealed: withoutSealedParts(record),
    body: stableJson(written),
    ...(typeof seal === 'string' ? { seal } : {}),
  };
}

/** The record without the parts that need a seal; the same object when it has none. */
function withoutSealedParts(record: AppliedRecord): AppliedRecord {
  if (SEALED_PARTS.every((part) => record[part] === undefined)) return record;
  const { rollout: _r, failure: _f, conflict: _c, ...rest } = record;
  return rest;
}

/**
 * The annotation's text for a record written to `deployment`: sealed for its UID when there is a
 * seal and a UID; otherwise (a Deployment being created has no UID yet) without the parts that
 * would need the seal.
 */
export function recordAnnotation(deployment: V1Deployment, record: AppliedRecord, seal?: RecordSeal): string {
  const { refused: _refused, ...written } = record;
  const uid = deployment.metadata?.uid;
  if (seal === undefined || !uid) return JSON.stringify(withoutSealedParts(written));
  // The seal covers the record as it will be parsed back: JSON drops undefined members.
  const body = stableJson(JSON.parse(JSON.stringify(written)));
  return JSON.stringify({ ...written, seal: seal.sign(uid, body) });
}

/** The container name of a `k:{"name":"app"}` key; undefined for any other key. */
function containerName(key: string): string | undefined {
  if (!key.startsWith('k:')) return undefined;
  try {
    const parsed = JSON.parse(key.slice(2)) as { name?: unknown };
    return typeof parsed.name === 'string' ? parsed.name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pod-template fields the operator's server-side applies own, as the apiserver records them
 * in managedFields; undefined when the object carries no managedFields at all (then only the
 * record annotation can tell). Only ownership counts, not the record: a record deleted or
 * written by another policy does not make the operator forget fields it still owns, so the
 * next apply keeps them instead of deleting them (a pod-template change, a restart).
 */
export function ownedByApply(
  deployment: V1Deployment,
): Pick<AppliedRecord, 'containers' | 'templateAnnotations' | 'terminationGracePeriodSeconds'> | undefined {
  const entries = deployment.metadata?.managedFields;
  if (entries === undefined) return undefined;
  const containers: AppliedRecord['containers'] = {};
  const annotations = new Set<string>();
  let grace = false;
  for (const entry of entries) {
    if (entry.manager !== FIELD_MANAGER || entry.operation !== 'Apply') continue;
    const template = fieldChild(entry.fieldsV1, 'f:spec', 'f:template');
    for (const key of Object.keys(fieldChild(template, 'f:metadata', 'f:annotations') ?? {})) {
      const name = key.slice(2);
      if (key.startsWith('f:') && name.startsWith(ANNOTATION_PREFIX)) annotations.add(name);
    }
    const podSpec = fieldChild(template, 'f:spec');
    if (fieldChild(podSpec, 'f:terminationGracePeriodSeconds')) grace = true;
    for (const [key, fields] of Object.entries(fieldChild(podSpec, 'f:containers') ?? {})) {
      const name = containerName(key);
      if (name === undefined) continue;
      const probe = fieldChild(fields, 'f:readinessProbe') !== undefined;
      const preStop = fieldChild(fields, 'f:lifecycle', 'f:preStop') !== undefined;
      if (!probe && !preStop) continue;
      containers[name] = {
        ...containers[name],
        ...(probe ? { readinessProbe: true } : {}),
        ...(preStop ? { preStop: true } : {}),
      };
    }
  }
  const currentGrace = deployment.spec?.template?.spec?.terminationGracePeriodSeconds;
  return {
    containers,
    ...(annotations.size > 0 ? { templateAnnotations: [...annotations].sort() } : {}),
    // Owned means no other manager has changed it since: the value there is the operator's.
    ...(grace && currentGrace !== undefined ? { terminationGracePeriodSeconds: currentGrace } : {}),
  };
}

/** True when the operator owns (or would own) no field. */
export function ownsNothing(
  owned: Pick<AppliedRecord, 'containers' | 'templateAnnotations' | 'terminationGracePeriodSeconds'>,
): boolean {
  return (
    owned.terminationGracePeriodSeconds === undefined &&
    Object.keys(owned.containers).length === 0 &&
    (owned.templateAnnotations ?? []).length === 0
  );
}

/**
 * What the operator owns on the Deployment: the fields from managedFields (the record's claim
 * where the object has none), with the record's policy and reason. Undefined when it owns
 * nothing and has no record. A Deployment released (no record) whose fields the operator still
 * owns gets a record with an empty policy name: re-adopting it keeps those fields.
 */
export function ownedFields(deployment: V1Deployment, seal?: RecordSeal): AppliedRecord | undefined {
  const record = readAppliedRecord(deployment, seal);
  const owned = ownedByApply(deployment);
  if (owned === undefined) return record;
  if (!record && ownsNothing(owned)) return undefined;
  const {
    containers: _c,
    templateAnnotations: _a,
    terminationGracePeriodSeconds: _g,
    ...rest
  } = record ?? {
    policy: '',
    policyGeneration: 0,
    containers: {},
    reason: '',
  };
  return { ...rest, ...owned };
}

/**
 * A copy of the Deployment with the operator's own probes, hooks and pod-template annotations
 * removed: what the Deployment would be without the operator. Planning on it keeps "IfMissing"
 * about the user's settings, not ours. The grace period stays (the apiserver always defaults
 * one): desiredSettings tells the operator's from the user's by the record's value.
 */
export function withoutOwnedFields(
  deployment: V1Deployment,
  record: AppliedRecord | undefined,
): V1Deployment {
  const template = deployment.spec?.template;
  if (!record || !deployment.spec || !template) return deployment;
  // Copies only the path to what is removed; the rest is shared with the cached object, which
  // planning reads and never writes (it plans on cached objects as they are when no record).
  const owned = new Set(record.templateAnnotations ?? []);
  const annotations = template.metadata?.annotations;
  const metadata =
    template.metadata && annotations
      ? {
          ...template.metadata,
          annotations: Object.fromEntries(Object.entries(annotations).filter(([key]) => !owned.has(key))),
        }
      : template.metadata;
  const podSpec = template.spec && {
    ...template.spec,
    containers: template.spec.containers.map((container) => {
      const ours = record.containers[container.name];
      if (!ours?.readinessProbe && !(ours?.preStop && container.lifecycle)) return container;
      return {
        ...container,
        ...(ours.readinessProbe ? { readinessProbe: undefined } : {}),
        ...(ours.preStop && container.lifecycle
          ? { lifecycle: { ...container.lifecycle, preStop: undefined } }
          : {}),
      };
    }),
  };
  return { ...deployment, spec: { ...deployment.spec, template: { ...template, metadata, spec: podSpec } } };
}

function identity(deployment: V1Deployment): { name: string; namespace: string } {
  return { name: deployment.metadata?.name ?? '', namespace: deployment.metadata?.namespace ?? '' };
}

/**
 * The plan plus the fields the operator owns that the plan no longer writes (the policy says
 * Never now, or a user's value takes over), at their current values. Left out of an apply,
 * server-side apply would delete them: a pod template change, a restart outside the rollout
 * budget. Kept, they change nothing; releaseConfiguration follows the same rule. Owned
 * pod-template annotations are kept the same way, in plan.annotations; withMirrorAnnotations
 * then decides which get a new value.
 */
export function retainOwnedFields(
  deployment: V1Deployment,
  record: AppliedRecord | undefined,
  plan: ShutdownPlan,
): ShutdownPlan {
  if (!record) return plan;
  const podSpec = deployment.spec?.template?.spec;
  const containers = plan.containers.map((c) => ({ ...c }));
  for (const current of podSpec?.containers ?? []) {
    const owned = record.containers[current.name];
    if (!owned) continue;
    let entry = containers.find((c) => c.name === current.name);
    const keepProbe = owned.readinessProbe && current.readinessProbe && !entry?.readinessProbe;
    const keepHook = owned.preStop && current.lifecycle?.preStop && !entry?.preStop;
    if (!keepProbe && !keepHook) continue;
    if (!entry) {
      entry = { name: current.name };
      containers.push(entry);
    }
    if (keepProbe) entry.readinessProbe = current.readinessProbe;
    if (keepHook) entry.preStop = current.lifecycle?.preStop;
  }
  const order = new Map((podSpec?.containers ?? []).map((c, i) => [c.name, i]));
  containers.sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0));
  const grace =
    plan.terminationGracePeriodSeconds ??
    (record.terminationGracePeriodSeconds !== undefined
      ? (podSpec?.terminationGracePeriodSeconds ?? undefined)
      : undefined);
  const annotations = { ...ownedAnnotations(deployment, record), ...plan.annotations };
  return {
    ...plan,
    containers,
    ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
}

/** The owned pod-template annotations still on the Deployment, at their current values. */
function ownedAnnotations(deployment: V1Deployment, record: AppliedRecord): Record<string, string> {
  const current = templateAnnotations(deployment);
  const owned: Record<string, string> = {};
  for (const key of record.templateAnnotations ?? []) {
    const value = current[key];
    if (value !== undefined) owned[key] = value;
  }
  return owned;
}

/**
 * What the mirror annotations say for a plan: the grace period it writes, and the seconds of the
 * preStop sleep it writes to the serving container (`sleep: {seconds}` or `exec sleep N`). An
 * annotation is absent when the operator does not own the field it mirrors: a user's value is
 * the user's to announce.
 */
export function mirroredAnnotations(plan: ShutdownPlan): Record<string, string> {
  const mirrored: Record<string, string> = {};
  if (plan.terminationGracePeriodSeconds !== undefined)
    mirrored[GRACE_PERIOD_SECONDS_ANNOTATION] = String(plan.terminationGracePeriodSeconds);
  const serving = plan.containers.find((c) => c.name === plan.servingContainer);
  const preStop = preStopSummary(serving?.preStop);
  if (preStop !== undefined) mirrored[PRESTOP_SECONDS_ANNOTATION] = String(preStop.seconds);
  return mirrored;
}

/**
 * The plan with the mirror annotations it writes. An annotation is written at its new value
 * when the Deployment already has that value (writing keeps or takes ownership, changes
 * nothing) or when the write changes the pod template anyway (the plan is not compliant): the
 * pods restart for that change and read the new value. Otherwise — the mirrored field already
 * right, only the annotation missing or stale, typically on a Deployment managed before the
 * operator wrote annotations — it is not written: changing a pod-template annotation restarts
 * every pod, and a value is written only if it changes something. It follows at the next write
 * that happens anyway. An owned annotation not written anew keeps its current value
 * (retainOwnedFields), never deleted.
 */
export function withMirrorAnnotations(deployment: V1Deployment, plan: ShutdownPlan): ShutdownPlan {
  const wanted = Object.entries(mirroredAnnotations(plan));
  if (wanted.length === 0) return plan;
  const current = templateAnnotations(deployment);
  const templateChanges = !diffDeployment(deployment, plan).compliant;
  const annotations = { ...plan.annotations };
  for (const [key, value] of wanted) {
    if (templateChanges || current[key] === value) annotations[key] = value;
  }
  return Object.keys(annotations).length > 0 ? { ...plan, annotations } : plan;
}

/** The record for a plan: exactly the fields the plan writes. */
export function recordFor(policy: { name: string; generation: number }, plan: ShutdownPlan): AppliedRecord {
  const containers: AppliedRecord['containers'] = {};
  for (const c of plan.containers) {
    if (c.readinessProbe || c.preStop) {
      containers[c.name] = {
        ...(c.readinessProbe ? { readinessProbe: true } : {}),
        ...(c.preStop ? { preStop: true } : {}),
      };
    }
  }
  const annotations = Object.keys(plan.annotations ?? {}).sort();
  return {
    policy: policy.name,
    policyGeneration: policy.generation,
    ...(plan.terminationGracePeriodSeconds !== undefined
      ? { terminationGracePeriodSeconds: plan.terminationGracePeriodSeconds }
      : {}),
    containers,
    ...(annotations.length > 0 ? { templateAnnotations: annotations } : {}),
    reason: plan.drain.message,
  };
}

export interface ApplyConfiguration {
  apiVersion: 'apps/v1';
  kind: 'Deployment';
  metadata: { name: string; namespace: string; annotations?: Record<string, string> };
  spec?: {
    template: { metadata?: { annotations: Record<string, string> }; spec: Record<string, unknown> };
  };
}

function templateFields(
  grace: number | undefined,
  containers: { name: string; readinessProbe?: unknown; preStop?: unknown }[],
  annotations: Record<string, string> | undefined,
): ApplyConfiguration['spec'] {
  const written = containers.filter((c) => c.readinessProbe !== undefined || c.preStop !== undefined);
  const annotated = annotations !== undefined && Object.keys(annotations).length > 0;
  if (grace === undefined && written.length === 0 && !annotated) return undefined;
  return {
    template: {
      ...(annotated ? { metadata: { annotations } } : {}),
      spec: {
        ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}),
        ...(written.length > 0
          ? {
              containers: written.map((c) => ({
                name: c.name,
                ...(c.readinessProbe !== undefined ? { readinessProbe: c.readinessProbe } : {}),
                ...(c.preStop !== undefined ? { lifecycle: { preStop: c.preStop } } : {}),
              })),
            }
          : {}),
      },
    },
  };
}

/** The apply configuration that writes a plan and records it. */
export function applyConfiguration(
  deployment: V1Deployment,
  record: AppliedRecord,
  plan: ShutdownPlan,
  seal?: RecordSeal,
): ApplyConfiguration {
  const spec = templateFields(plan.terminationGracePeriodSeconds, plan.containers, plan.annotations);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      ...identity(deployment),
      annotations: { [APPLIED_ANNOTATION]: recordAnnotation(deployment, record, seal) },
    },
    ...(spec ? { spec } : {}),
  };
}

/**
 * An apply configuration that keeps every field the operator owns exactly as it is and writes
 * `record` (none: the record annotation goes). Releasing a Deployment the operator no longer
 * manages is this without a record: removing the values would restart the pods and could bring
 * back dropped requests; managedFields still name the operator as their owner, so re-adopting
 * the Deployment later keeps them too (ownedFields). The mirror annotations stay as well (they
 * still describe the values kept).
 */
export function keepConfiguration(
  deployment: V1Deployment,
  owned: AppliedRecord,
  record?: AppliedRecord,
  seal?: RecordSeal,
): ApplyConfiguration {
  const podSpec = deployment.spec?.template?.spec;
  const byName = new Map<string, V1Container>((podSpec?.containers ?? []).map((c) => [c.name, c]));
  const containers = Object.entries(owned.containers).flatMap(([name, fields]) => {
    const current = byName.get(name);
    if (!current) return [];
    return [
      {
        name,
        ...(fields.readinessProbe && current.readinessProbe
          ? { readinessProbe: current.readinessProbe }
          : {}),
        ...(fields.preStop && current.lifecycle?.preStop ? { preStop: current.lifecycle.preStop } : {}),
      },
    ];
  });
  const grace =
    owned.terminationGracePeriodSeconds !== undefined ? podSpec?.terminationGracePeriodSeconds : undefined;
  const spec = templateFields(grace ?? undefined, containers, ownedAnnotations(deployment, owned));
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      ...identity(deployment),
      ...(record
        ? { annotations: { [APPLIED_ANNOTATION]: recordAnnotation(deployment, record, seal) } }
        : {}),
    },
    ...(spec ? { spec } : {}),
  };
}

/**
 * What a write of `plan` replaces on the Deployment, field by field (null where it adds a field
 * that was absent): recorded with the rollout it starts, for rollout.onFailure Revert.
 */
export function previousValues(deployment: V1Deployment, plan: ShutdownPlan): PreviousValues {
  const previous: PreviousValues = {};
  const grace = deployment.spec?.template?.spec?.terminationGracePeriodSeconds;
  if (plan.terminationGracePeriodSeconds !== undefined && plan.terminationGracePeriodSeconds !== grace)
    previous.terminationGracePeriodSeconds = currentGraceSeconds(deployment);
  const byName = new Map(regularContainers(deployment).map((c) => [c.name, c]));
  for (const planned of plan.containers) {
    const current = byName.get(planned.name);
    if (!current) continue;
    const entry: NonNullable<PreviousValues['containers']>[string] = {};
    if (planned.readinessProbe && !probesEqual(current.readinessProbe, planned.readinessProbe))
      entry.readinessProbe = current.readinessProbe ?? null;
    const hook = current.lifecycle?.preStop;
    if (planned.preStop && !handlersEqual(hook, planned.preStop)) entry.preStop = hook ?? null;
    if (Object.keys(entry).length > 0)
      previous.containers = { ...previous.containers, [planned.name]: entry };
  }
  const annotations = templateAnnotations(deployment);
  for (const [key, value] of Object.entries(plan.annotations ?? {}))
    if (annotations[key] !== value)
      previous.annotations = { ...previous.annotations, [key]: annotations[key] ?? null };
  return previous;
}

/**
 * JSON Patch writing the previous values back (rollout.onFailure Revert), for the fields that
 * still differ from them; empty when nothing does. Each container is guarded by a test of its
 * name. A JSON Patch, not an apply: the restored values are then no longer the operator's
 * (managedFields move them to an Update entry), so they count as the user's again.
 */
export function revertOperations(deployment: V1Deployment, previous: PreviousValues): JsonPatchOperation[] {
  const operations: JsonPatchOperation[] = [];
  const podSpec = deployment.spec?.template?.spec;
  if (
    previous.terminationGracePeriodSeconds !== undefined &&
    previous.terminationGracePeriodSeconds !== podSpec?.terminationGracePeriodSeconds
  )
    operations.push({
      op: 'add',
      path: '/spec/template/spec/terminationGracePeriodSeconds',
      value: previous.terminationGracePeriodSeconds,
    });
  (podSpec?.containers ?? []).forEach((container, index) => {
    const wanted = previous.containers?.[container.name];
    if (!wanted) return;
    const base = `/spec/template/spec/containers/${index}`;
    const ops: JsonPatchOperation[] = [];
    if (
      wanted.readinessProbe !== undefined &&
      !probesEqual(container.readinessProbe, wanted.readinessProbe ?? undefined)
    ) {
      if (wanted.readinessProbe === null) ops.push({ op: 'remove', path: `${base}/readinessProbe` });
      else ops.push({ op: 'add', path: `${base}/readinessProbe`, value: wanted.readinessProbe });
    }
    const hook = container.lifecycle?.preStop;
    if (wanted.preStop !== undefined && !handlersEqual(hook, wanted.preStop ?? undefined)) {
      // The hook was all of the lifecycle: remove it whole, as it was absent before.
      const onlyHook = Object.keys(container.lifecycle ?? {}).every((k) => k === 'preStop');
      if (wanted.preStop === null)
        ops.push({ op: 'remove', path: onlyHook ? `${base}/lifecycle` : `${base}/lifecycle/preStop` });
      else if (container.lifecycle)
        ops.push({ op: 'add', path: `${base}/lifecycle/preStop`, value: wanted.preStop });
      else ops.push({ op: 'add', path: `${base}/lifecycle`, value: { preStop: wanted.preStop } });
    }
    if (ops.length > 0) operations.push({ op: 'test', path: `${base}/name`, value: container.name }, ...ops);
  });
  const current = deployment.spec?.template?.metadata?.annotations;
  const restored: Record<string, string> = {};
  for (const [key, value] of Object.entries(previous.annotations ?? {})) {
    const path = `/spec/template/metadata/annotations/${pointerToken(key)}`;
    if (value === null && current?.[key] !== undefined) operations.push({ op: 'remove', path });
    else if (value !== null && current?.[key] !== value) {
      if (current === undefined) restored[key] = value;
      else operations.push({ op: 'add', path, value });
    }
  }
  if (Object.keys(restored).length > 0)
    operations.push({ op: 'add', path: '/spec/template/metadata/annotations', value: restored });
  return operations;
}

/** One JSON Patch operation (RFC 6902), as the handler replacement uses them. */
export type JsonPatchOperation =
  | { op: 'remove'; path: string }
  | { op: 'test'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'add'; path: string; value: unknown };

/** A JSON Pointer token (RFC 6901): "~" and "/" escaped. */
function pointerToken(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

/**
 * The plan's pod-template annotations that differ from the Deployment's and whose field is right
 * once the patch is applied (already right, or the serving container's hook replaced by it), as
 * JSON Patch: one `add` per key into an existing map; with no map at all, the whole map, guarded
 * by a test of the resourceVersion so that a map the cache has not seen yet is never replaced.
 * An annotation whose field only the apply writes waits for that apply: should the apply fail,
 * no annotation announces a value the pods do not have.
 */
function annotationOperations(
  deployment: V1Deployment,
  plan: ShutdownPlan,
  preStopReplaced: ReadonlySet<string>,
): JsonPatchOperation[] {
  const existing = deployment.spec?.template?.metadata?.annotations;
  const serving = plan.containers.find((c) => c.name === plan.servingContainer);
  const current = regularContainers(deployment).find((c) => c.name === plan.servingContainer);
  const fieldRightAfterPatch = (key: string): boolean => {
    if (key === GRACE_PERIOD_SECONDS_ANNOTATION)
      return plan.terminationGracePeriodSeconds === currentGraceSeconds(deployment);
    if (key === PRESTOP_SECONDS_ANNOTATION)
      return (
        serving?.preStop !== undefined &&
        (preStopReplaced.has(serving.name) || handlerSatisfies(current?.lifecycle?.preStop, serving.preStop))
      );
    return false;
  };
  const changed = Object.entries(plan.annotations ?? {}).filter(
    ([key, value]) => existing?.[key] !== value && fieldRightAfterPatch(key),
  );
  return annotationAdds(deployment, '/spec/template/metadata/annotations', existing, changed);
}

/**
 * JSON Patch adding `entries` to the annotations map at `path`: key by key into an existing
 * map; with none, the whole map, guarded by a test of the resourceVersion, so that a map the
 * cache has not seen yet is never replaced.
 */
function annotationAdds(
  deployment: V1Deployment,
  path: string,
  existing: Record<string, string> | undefined,
  entries: [string, string][],
): JsonPatchOperation[] {
  if (entries.length === 0) return [];
  if (existing !== undefined)
    return entries.map(([key, value]) => ({ op: 'add', path: `${path}/${pointerToken(key)}`, value }));
  const resourceVersion = deployment.metadata?.resourceVersion;
  return [
    ...(resourceVersion === undefined
      ? []
      : [{ op: 'test' as const, path: '/metadata/resourceVersion', value: resourceVersion }]),
    { op: 'add', path, value: Object.fromEntries(entries) },
  ];
}

/**
 * JSON Patch writing the record annotation (sealed for the Deployment, recordAnnotation): into the
 * existing annotations map, or, with none, the whole map guarded by a test of the
 * resourceVersion (a map the cache has not seen yet is never replaced). Sent with a handler
 * replacement, so that the rollout it starts is recorded in the same write.
 */
export function recordOperations(
  deployment: V1Deployment,
  record: AppliedRecord,
  seal?: RecordSeal,
): JsonPatchOperation[] {
  return annotationAdds(deployment, '/metadata/annotations', deployment.metadata?.annotations, [
    [APPLIED_ANNOTATION, recordAnnotation(deployment, record, seal)],
  ]);
}

/**
 * JSON Patch replacing whole probes and preStop hooks where the plan brings a different handler
 * kind (an httpGet probe over a user's tcpSocket one). Server-side apply cannot do that: it
 * would merge both handlers, and the apiserver refuses a probe with two. An ordinary patch
 * removes the old handler for every manager; the apply that follows then owns the new one.
 * Empty when there is nothing to replace. Each replaced container is guarded by a test of its
 * name, so a concurrent change to the container list fails the patch instead of hitting
 * another container. The plan's mirror annotations go into the same patch where their field is
 * right after it: when the replacements are all the template change, the apply that follows
 * changes nothing in the pod template, and the pods restart once.
 */
export function handlerReplacements(deployment: V1Deployment, plan: ShutdownPlan): JsonPatchOperation[] {
  const containers = deployment.spec?.template?.spec?.containers ?? [];
  const operations: JsonPatchOperation[] = [];
  const preStopReplaced = new Set<string>();
  containers.forEach((container, index) => {
    const planned = plan.containers.find((c) => c.name === container.name);
    if (!planned) return;
    const base = `/spec/template/spec/containers/${index}`;
    const replace: JsonPatchOperation[] = [];
    const probe = container.readinessProbe;
    if (planned.readinessProbe && probe && !sameHandlerKinds(probe, planned.readinessProbe)) {
      replace.push({ op: 'replace', path: `${base}/readinessProbe`, value: planned.readinessProbe });
    }
    const hook = container.lifecycle?.preStop;
    if (planned.preStop && hook && !sameHandlerKinds(hook, planned.preStop)) {
      replace.push({ op: 'replace', path: `${base}/lifecycle/preStop`, value: planned.preStop });
      preStopReplaced.add(container.name);
    }
    if (replace.length > 0)
      operations.push({ op: 'test', path: `${base}/name`, value: container.name }, ...replace);
  });
  if (operations.length === 0) return operations;
  return [...operations, ...annotationOperations(deployment, plan, preStopReplaced)];
}
