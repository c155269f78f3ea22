// The managedFields entry a server-side apply of an apply configuration would leave, written by
// the admission webhook itself. The apiserver does not attribute a mutating webhook's changes to
// anyone (kubernetes#78469 was closed), so fields the webhook adds would belong to no manager and
// the operator would not own them (ownership.ts reads ownership from its Apply entry). The webhook
// therefore records the entry an apply of the same configuration would have produced; the
// apiserver validates managedFields after admission and resets them when invalid
// (kubernetes#98074), so a malformed entry can never corrupt the object.
import type { V1Deployment, V1ManagedFieldsEntry } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import { isRecord } from '../util/is-record.ts';
import type { ApplyConfiguration, JsonPatchOperation } from './ownership.ts';

/** A fieldsV1 set: `f:<field>`, `k:<list-map key JSON>`, `.` for the list item itself. */
export type FieldSet = { [key: string]: FieldSet };

/** Lists merged by key under server-side apply (the pod spec's containers, keyed by name). */
const KEYED_LISTS: Record<string, string> = { containers: 'name' };

/**
 * The set at `path` below `set` (a managedFields entry's fieldsV1, as read: anything), or
 * undefined where the path leaves the sets.
 */
export function fieldChild(set: unknown, ...path: string[]): FieldSet | undefined {
  let current: unknown = set;
  for (const key of path) current = isRecord(current) ? current[key] : undefined;
  return isRecord(current) ? (current as FieldSet) : undefined;
}

function setOf(value: Record<string, unknown>): FieldSet {
  const set: FieldSet = {};
  for (const [field, child] of Object.entries(value)) {
    const key = KEYED_LISTS[field];
    if (key !== undefined && Array.isArray(child)) {
      const items: FieldSet = {};
      for (const item of child) {
        if (!isRecord(item) || typeof item[key] !== 'string') continue;
        items[`k:${JSON.stringify({ [key]: item[key] })}`] = { '.': {}, ...setOf(item) };
      }
      set[`f:${field}`] = items;
    } else if (isRecord(child)) {
      set[`f:${field}`] = setOf(child);
    } else {
      // Scalars and atomic lists (exec.command) are leaves.
      set[`f:${field}`] = {};
    }
  }
  return set;
}

/**
 * The fields an apply of `config` owns, as the apiserver writes them: apiVersion, kind, name and
 * namespace are not fields anyone owns.
 */
export function appliedFieldSet(config: ApplyConfiguration): FieldSet {
  const { annotations } = config.metadata;
  return setOf({
    ...(annotations ? { metadata: { annotations } } : {}),
    ...(config.spec ? { spec: config.spec } : {}),
  });
}

/**
 * managedFields with the operator's Apply entry replaced by one for `config` (an apply replaces
 * the manager's whole set). `time` is the entry's timestamp (RFC 3339, whole seconds).
 */
export function withOperatorApplyEntry(
  managedFields: readonly V1ManagedFieldsEntry[] | undefined,
  config: ApplyConfiguration,
  time: Date,
): V1ManagedFieldsEntry[] {
  const entry = {
    manager: FIELD_MANAGER,
    operation: 'Apply',
    apiVersion: config.apiVersion,
    time: `${time.toISOString().slice(0, 19)}Z`,
    fieldsType: 'FieldsV1',
    fieldsV1: appliedFieldSet(config),
  } as unknown as V1ManagedFieldsEntry;
  const others = (managedFields ?? []).filter(
    (e) => !(e.manager === FIELD_MANAGER && e.operation === 'Apply' && !e.subresource),
  );
  return [...others, entry];
}

/**
 * `object` with `config` merged in the way server-side apply merges it: maps field by field,
 * keyed lists (containers) item by key, scalars and atomic lists replaced. Only items already in
 * the object are merged into (the operator never adds a container). A new object; `object` is
 * not changed.
 */
export function mergeApplyConfiguration(object: object, config: ApplyConfiguration): object {
  const { annotations } = config.metadata;
  return merge(object, {
    ...(annotations ? { metadata: { annotations } } : {}),
    ...(config.spec ? { spec: config.spec } : {}),
  });
}

function merge(target: unknown, applied: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [field, value] of Object.entries(applied)) {
    const key = KEYED_LISTS[field];
    const current = result[field];
    if (key !== undefined && Array.isArray(value) && Array.isArray(current)) {
      result[field] = current.map((item: unknown) => {
        const patch = value.find((v) => isRecord(v) && isRecord(item) && v[key] === item[key]);
        return isRecord(patch) ? merge(item, patch) : item;
      });
    } else if (isRecord(value)) {
      result[field] = merge(current, value);
    } else {
      result[field] = value;
    }
  }
  return result;
}

/**
 * JSON Patch removing the operator's `Update` entry from managedFields, guarded by tests of its
 * manager and operation; empty when there is none. A JSON Patch of the operator's (a handler
 * replacement, a revert) leaves such an entry beside its Apply entry: it would co-own the fields
 * it touched after the operator lets go of them, so that a user's later server-side apply of
 * those fields conflicts with a manager that no longer manages them. The Apply entry keeps what
 * the operator still owns; the values a revert restored then belong to nobody, as before the
 * operator's change, and the next apply of anyone takes them without a conflict.
 */
export function ownUpdateEntryRemoval(deployment: V1Deployment): JsonPatchOperation[] {
  const entries = deployment.metadata?.managedFields ?? [];
  const index = entries.findIndex(
    (entry) => entry.manager === FIELD_MANAGER && entry.operation === 'Update' && !entry.subresource,
  );
  if (index < 0) return [];
  const path = `/metadata/managedFields/${index}`;
  return [
    { op: 'test', path: `${path}/manager`, value: FIELD_MANAGER },
    { op: 'test', path: `${path}/operation`, value: 'Update' },
    { op: 'remove', path },
  ];
}
