// Shared by the controllers' unit tests: fake informer caches, object builders, and what a
// server-side apply does to a Deployment. Not part of the build.
import type { KubernetesObject, V1Deployment, V1Namespace } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import type { EventHandlers, Informer } from '../kube/informer.ts';
import { appliedFieldSet, type FieldSet } from '../policy/managed-fields.ts';
import type { ApplyConfiguration } from '../policy/ownership.ts';
import { TEST_SEAL } from '../policy/test-fixtures.ts';
import { ClusterView, type PolicyObject } from './view.ts';

/**
 * The informer methods the view and the reconcilers read, over a plain map: put and delete
 * call the handlers as the informer's cache events would.
 */
export class FakeInformer<T extends KubernetesObject> {
  readonly objects = new Map<string, T>();
  readonly #keyOf: (object: T) => string;
  readonly #handlers: EventHandlers<T>[] = [];
  readonly #indexers = new Map<string, (object: T) => readonly string[]>();
  constructor(keyOf: (object: T) => string, objects: T[] = []) {
    this.#keyOf = keyOf;
    for (const object of objects) this.put(object);
  }
  put(object: T): void {
    const key = this.#keyOf(object);
    const old = this.objects.get(key);
    this.objects.set(key, object);
    for (const h of this.#handlers) {
      if (old === undefined) h.onAdd?.(object);
      else h.onUpdate?.(object, old);
    }
  }
  delete(key: string): void {
    const old = this.objects.get(key);
    this.objects.delete(key);
    if (old !== undefined) for (const h of this.#handlers) h.onDelete?.(old);
  }
  get(key: string): T | undefined {
    return this.objects.get(key);
  }
  values(): IterableIterator<T> {
    return this.objects.values();
  }
  list(): T[] {
    return [...this.objects.values()];
  }
  keys(): IterableIterator<string> {
    return this.objects.keys();
  }
  get size(): number {
    return this.objects.size;
  }
  hasSynced(): boolean {
    return true;
  }
  addHandlers(handlers: EventHandlers<T>): void {
    this.#handlers.push(handlers);
  }
  addIndex(name: string, indexer: (object: T) => readonly string[]): void {
    this.#indexers.set(name, indexer);
  }
  byIndex(name: string, value: string): T[] {
    const indexer = this.#indexers.get(name);
    if (!indexer) throw new Error(`no index ${name}`);
    return this.list().filter((object) => indexer(object).includes(value));
  }
}

export const namespaced = (o: KubernetesObject) => `${o.metadata?.namespace}/${o.metadata?.name}`;
export const clusterScoped = (o: KubernetesObject) => o.metadata?.name ?? '';

export function policyObject(name: string, spec: unknown, generation = 1): PolicyObject {
  return {
    apiVersion: 'gracefulshutdown.dev/v1alpha1',
    kind: 'GracefulShutdownPolicy',
    metadata: { name, generation, resourceVersion: '1' },
    spec,
  };
}

export function namespace(name: string): V1Namespace {
  return { metadata: { name, labels: { 'kubernetes.io/metadata.name': name } } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every leaf path of a field set. */
function leaves(set: FieldSet, prefix: string[] = []): string[][] {
  const keys = Object.keys(set).filter((key) => key !== '.');
  if (keys.length === 0) return [prefix];
  return keys.flatMap((key) => leaves(set[key] ?? {}, [...prefix, key]));
}

function has(set: FieldSet | undefined, path: string[]): boolean {
  let current = set;
  for (const key of path) current = current?.[key];
  return current !== undefined;
}

/** Deletes the field at a field-set path, and the objects it leaves empty. */
function removeField(object: unknown, path: string[]): void {
  const [key, ...rest] = path;
  if (key === undefined) return;
  if (key.startsWith('k:') && Array.isArray(object)) {
    const name = (JSON.parse(key.slice(2)) as { name: string }).name;
    const item = object.find((i) => isRecord(i) && i.name === name);
    removeField(item, rest);
    return;
  }
  if (!isRecord(object) || !key.startsWith('f:')) return;
  const field = key.slice(2);
  if (rest.length === 0) delete object[field];
  else {
    removeField(object[field], rest);
    const value = object[field];
    if (isRecord(value) && Object.keys(value).length === 0) delete object[field];
  }
}

/** Merges an applied object into a stored one: maps field by field, named lists item by item. */
function merge(target: Record<string, unknown>, applied: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(applied)) {
    const current = target[key];
    if (isRecord(value) && isRecord(current)) merge(current, value);
    else if (
      Array.isArray(value) &&
      Array.isArray(current) &&
      value.every((i) => isRecord(i) && 'name' in i)
    ) {
      for (const item of value as Record<string, unknown>[]) {
        const existing = current.find((i) => isRecord(i) && i.name === item.name);
        if (isRecord(existing)) merge(existing, item);
        else current.push(structuredClone(item));
      }
    } else target[key] = structuredClone(value);
  }
}

/**
 * The Deployment after a server-side apply of `config` by `manager`, as the apiserver stores
 * it: applied fields merged in; fields the manager's previous apply owned and this one leaves
 * out removed (unless another manager owns them too); the manager's managedFields entry
 * replaced; the generation bumped only when the spec or the annotations changed, and observed
 * (the rollout done).
 */
export function afterApply(
  original: V1Deployment,
  config: ApplyConfiguration,
  manager = FIELD_MANAGER,
): V1Deployment {
  const result = structuredClone(original);
  const { apiVersion: _v, kind: _k, ...body } = config;
  const { name: _n, namespace: _ns, ...metadata } = body.metadata;
  const applied = appliedFieldSet(config);
  const entries = result.metadata?.managedFields ?? [];
  const previous = entries.find((e) => e.manager === manager && e.operation === 'Apply');
  const others = entries.filter((e) => e !== previous);
  for (const path of leaves((previous?.fieldsV1 as FieldSet | undefined) ?? {})) {
    // A list item's key stays: the item is the user's too (they created the container).
    if (path.at(-1) === 'f:name' && path.at(-2)?.startsWith('k:')) continue;
    if (has(applied, path) || others.some((e) => has(e.fieldsV1 as FieldSet, path))) continue;
    removeField(result, path);
  }
  merge(result as Record<string, unknown>, structuredClone({ ...body, metadata }) as Record<string, unknown>);
  // The Deployment strategy bumps the generation on a spec or an annotation change.
  const changed =
    JSON.stringify(result.spec) !== JSON.stringify(original.spec) ||
    JSON.stringify(result.metadata?.annotations) !== JSON.stringify(original.metadata?.annotations);
  const generation = (original.metadata?.generation ?? 0) + (changed ? 1 : 0);
  result.metadata = {
    ...result.metadata,
    generation,
    managedFields: [...others, { manager, operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: applied }],
  };
  result.status = { ...result.status, observedGeneration: generation };
  return result;
}

/**
 * A forced server-side apply by another manager (Argo CD, Flux): afterApply, and the fields it
 * applies are taken from every other manager's set, as the apiserver does with force=true.
 */
export function afterForcedApply(
  original: V1Deployment,
  config: ApplyConfiguration,
  manager: string,
): V1Deployment {
  const result = afterApply(original, config, manager);
  const applied = appliedFieldSet(config);
  const taken = leaves(applied);
  for (const entry of result.metadata?.managedFields ?? []) {
    if (entry.manager === manager) continue;
    const set = structuredClone(entry.fieldsV1 as FieldSet);
    for (const path of taken) if (path.at(-1) !== 'f:name') removeSetPath(set, path);
    entry.fieldsV1 = set;
  }
  return result;
}

function removeSetPath(set: FieldSet | undefined, path: string[]): void {
  const [key, ...rest] = path;
  if (set === undefined || key === undefined || set[key] === undefined) return;
  if (rest.length === 0) delete set[key];
  else {
    removeSetPath(set[key], rest);
    if (Object.keys(set[key] ?? {}).filter((k) => k !== '.').length === 0) delete set[key];
  }
}

/**
 * A ClusterView over fake informers of these Deployments and policies, with the namespaces shop
 * and graceful-shutdown-system, checking records with TEST_SEAL: the controllers' harnesses.
 */
export function testView(
  deployments: FakeInformer<V1Deployment>,
  policies: FakeInformer<PolicyObject>,
): ClusterView {
  return new ClusterView(
    {
      deployments: deployments as unknown as Informer<V1Deployment>,
      namespaces: new FakeInformer<V1Namespace>(clusterScoped, [
        namespace('shop'),
        namespace('graceful-shutdown-system'),
      ]) as unknown as Informer<V1Namespace>,
      policies: policies as unknown as Informer<PolicyObject>,
    },
    { seal: TEST_SEAL },
  );
}
