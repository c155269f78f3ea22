import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1Container,
  type V1ContainerStatus,
  type V1Pod,
  type V1Service,
  Watch,
} from '@kubernetes/client-node';
import { type Logger, silentLogger } from '../log.ts';
import { type FieldSet, fieldChild } from '../policy/managed-fields.ts';
import { httpStatusOf } from './client.ts';

/**
 * A list-watch cache over client-node's `Watch`, behaving like client-go's reflector where
 * client-node's own ListWatch does not (it stops on the first non-410 error and caches objects
 * whole):
 * - the list is paginated (`limit`/`continue`, falling back to one full list when a continue
 *   token expires); after it, a watch from its resourceVersion with bookmarks, which the server
 *   ends after 5-10 min and the informer resumes from the last resourceVersion, without a list;
 * - a list again only when needed: on 410 Gone, or after the watchdog restarts a watch that
 *   delivered nothing, bookmarks included, for too long (the apiserver sends a bookmark about
 *   every minute, so a healthy quiet watch is never torn down);
 * - restart with capped, jittered exponential backoff on any list or watch error;
 * - objects transformed on ingest (only what the operator reads is kept) and indexed.
 * Handlers are synchronous and should only enqueue keys; the reconciler reads the cache.
 */

export interface EventHandlers<T extends KubernetesObject> {
  onAdd?(object: T): void;
  onUpdate?(object: T, old: T): void;
  onDelete?(object: T): void;
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** A page of at most this many objects... */
  limit?: number;
  /** ...continuing the list where the previous page ended. */
  _continue?: string;
}

/** The subset of client-node's Watch the informer uses (tests may substitute it). */
export interface Watcher {
  watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController>;
}

export interface BackoffOptions {
  /** client-go reflector: 800 ms. */
  initialMs?: number;
  /** client-go reflector: 30 s. */
  maxMs?: number;
  /** Each delay is stretched by up to this fraction, at random (then capped). */
  jitter?: number;
}

export interface InformerOptions<T extends KubernetesObject> {
  /** For logs, e.g. "deployments". */
  name: string;
  kubeConfig: KubeConfig;
  /** The collection's URL path, e.g. /apis/apps/v1/deployments (all namespaces). */
  path: string;
  /**
   * Lists the collection with the given selectors, e.g.
   * `(options) => apps.listDeploymentForAllNamespaces(options)`.
   * Typed list calls return model objects (timestamps as Date) while the watch delivers JSON
   * (timestamps as strings): compare timestamps through `new Date(...)`.
   */
  list: (options: ListOptions) => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Objects to cache, asked before the transform (client-side, what no selector can say);
   * one that stops passing leaves the cache as if deleted. Default: all.
   */
  filter?: (object: T) => boolean;
  /** Applied to every object before caching; default: stripManagedFields. */
  transform?: (object: T) => T;
  /**
   * Given a new version (transformed) and the cached one it replaces, returns the version to
   * cache, which may reuse the cached one's unchanged parts (shareUnchangedParts).
   */
  share?: (next: T, previous: T) => T;
  /** Restart a watch that delivered no event (bookmarks count) for this long, and list again; default 5 min. */
  watchdogMs?: number;
  /** Objects per list page (client-go: 500). */
  pageSize?: number;
  /** Called when a watch ends, with why (bounded: the WatchEnd kinds); for metrics. */
  onWatchEnd?: (reason: WatchEndReason) => void;
  backoff?: BackoffOptions;
  logger?: Logger;
  /** Defaults to client-node's Watch over kubeConfig. */
  watcher?: Watcher;
  random?: () => number;
}

/** `namespace/name`, or `name` for cluster-scoped objects: the work-queue key. */
export function objectKey(object: KubernetesObject): string {
  const name = object.metadata?.name ?? '';
  const namespace = object.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

/** Splits a key made by objectKey. */
export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const slash = key.indexOf('/');
  return slash < 0
    ? { namespace: undefined, name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** controller-runtime's default cache transform: managedFields are never needed by a reconciler. */
export function stripManagedFields<T extends KubernetesObject>(object: T): T {
  if (object.metadata?.managedFields !== undefined) delete object.metadata.managedFields;
  return object;
}

/**
 * What another manager's managedFields entry says about the fields the operator writes: the pod
 * template's terminationGracePeriodSeconds, and each container's readinessProbe and
 * lifecycle.preStop, as bare keys (policy/conflicts.ts tells a takeover from them). Undefined
 * when it owns none of them: most entries, which are then dropped.
 */
function contestedFields(fields: unknown): FieldSet | undefined {
  const podSpec = fieldChild(fields, 'f:spec', 'f:template', 'f:spec');
  if (!podSpec) return undefined;
  const projected: FieldSet = {};
  if (podSpec['f:terminationGracePeriodSeconds']) projected['f:terminationGracePeriodSeconds'] = {};
  const containers: FieldSet = {};
  for (const [key, value] of Object.entries(fieldChild(podSpec, 'f:containers') ?? {})) {
    const container = fieldChild(value);
    const item: FieldSet = {};
    if (container?.['f:readinessProbe']) item['f:readinessProbe'] = {};
    if (fieldChild(container, 'f:lifecycle', 'f:preStop')) item['f:lifecycle'] = { 'f:preStop': {} };
    if (Object.keys(item).length > 0) containers[key] = item;
  }
  if (Object.keys(containers).length > 0) projected['f:containers'] = containers;
  return Object.keys(projected).length > 0
    ? { 'f:spec': { 'f:template': { 'f:spec': projected } } }
    : undefined;
}

/**
 * A cache transform keeping the managedFields entries of one field manager whole (the operator
 * derives what it owns from its own entry) and, of the other managers' entries (no
 * subresources), only their ownership of the fields the operator writes, without timestamps:
 * enough to name a manager that took one over (policy/conflicts.ts), a few keys per entry. No
 * entry of the manager's own: an empty list (it owns nothing, nothing it wrote can be taken over).
 */
export function keepManagedFieldsOf<T extends KubernetesObject>(manager: string): (object: T) => T {
  return (object) => {
    const entries = object.metadata?.managedFields;
    if (entries === undefined || !object.metadata) return object;
    // Empty, not absent: "the operator owns nothing" (policy/ownership.ts ownedByApply). Absent
    // would let the record annotation claim fields (a record copied from another Deployment
    // once made the operator take, then lower, a user's grace period).
    if (!entries.some((entry) => entry.manager === manager)) {
      object.metadata.managedFields = [];
      return object;
    }
    object.metadata.managedFields = entries.flatMap((entry) => {
      if (entry.manager === manager) return [entry];
      if (entry.subresource) return [];
      const fields = contestedFields(entry.fieldsV1);
      return fields
        ? [
            {
              manager: entry.manager,
              operation: entry.operation,
              fieldsType: entry.fieldsType,
              fieldsV1: fields,
            },
          ]
        : [];
    });
    return object;
  };
}

/** kubectl's client-side apply copy of the whole object: often the largest annotation, never read. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The Deployment cache's transform: the operator's own managedFields entry (what it owns), the
 * other managers' ownership of the fields it writes (keepManagedFieldsOf), and no
 * last-applied-configuration (a second copy of the object's spec).
 */
export function deploymentCacheTransform<T extends KubernetesObject>(manager: string): (object: T) => T {
  const keepOwn = keepManagedFieldsOf<T>(manager);
  return (object) => {
    const annotations = object.metadata?.annotations;
    if (annotations?.[LAST_APPLIED_ANNOTATION] !== undefined) delete annotations[LAST_APPLIED_ANNOTATION];
    return keepOwn(object);
  };
}

/**
 * Structural sharing between two versions of one object: the new version takes the cached
 * version's `spec`, labels, annotations and managedFields where they are deep-equal. Most
 * Deployment events are status updates; with this, what is computed from the unchanged parts
 * and memoized by their identity (plans, template hashes) is computed once per change of them,
 * not once per event. Another object under the same name (another uid) shares nothing.
 */
export function shareUnchangedParts<T extends KubernetesObject & { spec?: unknown }>(
  next: T,
  previous: T,
): T {
  const metadata = next.metadata;
  const before = previous.metadata;
  if (metadata === undefined || before === undefined || metadata.uid !== before.uid) return next;
  if (next.spec !== undefined && isDeepStrictEqual(next.spec, previous.spec)) next.spec = previous.spec;
  if (metadata.labels !== undefined && isDeepStrictEqual(metadata.labels, before.labels))
    metadata.labels = before.labels;
  if (metadata.annotations !== undefined && isDeepStrictEqual(metadata.annotations, before.annotations))
    metadata.annotations = before.annotations;
  if (metadata.managedFields !== undefined && isDeepStrictEqual(metadata.managedFields, before.managedFields))
    metadata.managedFields = before.managedFields;
  return next;
}

/** The Namespace cache's transform: namespaceSelector reads labels, nothing else is kept. */
export function namespaceCacheTransform<T extends KubernetesObject>(object: T): T {
  const { name, uid, resourceVersion, labels } = object.metadata ?? {};
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: { name, uid, resourceVersion, ...(labels ? { labels } : {}) },
  } as T;
}

/**
 * The Service cache's transform: what tells a container port's protocol (policy/protocols.ts):
 * the selector and, per port, its name, number, targetPort, protocol and appProtocol. No
 * clusterIPs, no status, no annotations.
 */
export function serviceCacheTransform(service: V1Service): V1Service {
  const { name, namespace, uid, resourceVersion } = service.metadata ?? {};
  const spec = service.spec ?? {};
  return {
    apiVersion: service.apiVersion,
    kind: service.kind,
    metadata: { name, namespace, uid, resourceVersion },
    spec: {
      ...(spec.selector ? { selector: spec.selector } : {}),
      ...(spec.ports
        ? {
            ports: spec.ports.map((p) => ({
              port: p.port,
              ...(p.name === undefined ? {} : { name: p.name }),
              ...(p.targetPort === undefined ? {} : { targetPort: p.targetPort }),
              ...(p.protocol === undefined ? {} : { protocol: p.protocol }),
              ...(p.appProtocol === undefined ? {} : { appProtocol: p.appProtocol }),
            })),
          }
        : {}),
    },
  };
}

/**
 * The pod cache's transform: what probe verification, the Scrape source and the shutdown
 * observer read (identity, labels, owner, deletion, containers' names, images and ports, phase,
 * IP, readiness and container states), nothing else: no env, volumes, resources, scheduling.
 */
export function podCacheTransform(pod: V1Pod): V1Pod {
  const m = pod.metadata ?? {};
  const containers = (list: V1Container[] | undefined) =>
    list?.map((c) => ({
      name: c.name,
      ...(c.image === undefined ? {} : { image: c.image }),
      ...(c.ports === undefined ? {} : { ports: c.ports }),
      ...(c.restartPolicy === undefined ? {} : { restartPolicy: c.restartPolicy }),
    }));
  const sidecars = pod.spec?.initContainers?.filter((c) => c.restartPolicy === 'Always');
  const status = pod.status ?? {};
  const ready = status.conditions?.filter((c) => c.type === 'Ready');
  return {
    apiVersion: pod.apiVersion,
    kind: pod.kind,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      ...(m.labels ? { labels: m.labels } : {}),
      ...(m.ownerReferences ? { ownerReferences: m.ownerReferences } : {}),
      ...(m.creationTimestamp === undefined ? {} : { creationTimestamp: m.creationTimestamp }),
      ...(m.deletionTimestamp === undefined ? {} : { deletionTimestamp: m.deletionTimestamp }),
      ...(m.deletionGracePeriodSeconds === undefined
        ? {}
        : { deletionGracePeriodSeconds: m.deletionGracePeriodSeconds }),
    },
    spec: {
      containers: containers(pod.spec?.containers) ?? [],
      ...(sidecars && sidecars.length > 0 ? { initContainers: containers(sidecars) } : {}),
      ...(pod.spec?.hostNetwork === undefined ? {} : { hostNetwork: pod.spec.hostNetwork }),
    },
    status: {
      ...(status.phase === undefined ? {} : { phase: status.phase }),
      ...(status.podIP === undefined ? {} : { podIP: status.podIP }),
      ...(ready && ready.length > 0 ? { conditions: ready } : {}),
      ...(status.containerStatuses === undefined
        ? {}
        : {
            containerStatuses: status.containerStatuses.map((c) => ({
              name: c.name,
              ...(c.state === undefined ? {} : { state: c.state }),
            })) as V1ContainerStatus[],
          }),
    },
  };
}

/** Handlers that enqueue the object's own key on every event (controller-runtime EnqueueRequestForObject). */
export function enqueueObject<T extends KubernetesObject>(enqueue: (key: string) => void): EventHandlers<T> {
  const handle = (object: T) => enqueue(objectKey(object));
  return { onAdd: handle, onUpdate: handle, onDelete: handle };
}

/** Why a watch ended; `closed` is the server's timeout, the normal end. */
export type WatchEndReason = WatchEnd['kind'];

type WatchEnd =
  | { kind: 'closed'; events: number; durationMs: number }
  | { kind: 'expired' }
  | { kind: 'error'; error: unknown }
  | { kind: 'watchdog' }
  | { kind: 'stopped' };

/** A watch that ends by itself this soon without events is treated as failing (no tight loop). */
const shortWatchMs = 1_000;

export class Informer<T extends KubernetesObject> {
  readonly name: string;
  readonly #options: InformerOptions<T>;
  readonly #watcher: Watcher;
  readonly #transform: (object: T) => T;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #handlers: EventHandlers<T>[] = [];
  readonly #cache = new Map<string, T>();
  /** index name -> (value -> keys), kept with the cache (client-go Indexers). */
  readonly #indexers = new Map<string, (object: T) => readonly string[]>();
  readonly #indexes = new Map<string, Map<string, Set<string>>>();
  readonly #syncWaiters: (() => void)[] = [];
  readonly #stop = new AbortController();

  #resourceVersion: string | undefined;
  #relistDue = false;
  #synced = false;
  #failures = 0;
  #interruptWatch: ((end: WatchEnd) => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: InformerOptions<T>) {
    this.name = options.name;
    this.#options = options;
    this.#watcher = options.watcher ?? quietTolerantWatch(options.kubeConfig, this.#watchdogMs());
    this.#transform = options.transform ?? stripManagedFields;
    this.#log = (options.logger ?? silentLogger()).child({ informer: options.name });
    this.#random = options.random ?? Math.random;
  }

  /**
   * Adds an index: the values an object is filed under (e.g. its namespace, its owner). Add
   * before start; byIndex then answers without scanning the cache.
   */
  addIndex(name: string, indexer: (object: T) => readonly string[]): void {
    if (this.#loop !== undefined) throw new Error(`informer ${this.name}: add index ${name} before start`);
    this.#indexers.set(name, indexer);
    this.#indexes.set(name, new Map());
  }

  /** The cached objects filed under `value` in the named index; shared, do not mutate. */
  byIndex(name: string, value: string): T[] {
    const index = this.#indexes.get(name);
    if (index === undefined) throw new Error(`informer ${this.name} has no index ${name}`);
    const objects: T[] = [];
    for (const key of index.get(value) ?? []) {
      const object = this.#cache.get(key);
      if (object !== undefined) objects.push(object);
    }
    return objects;
  }

  /** Registers handlers; register before start so the initial list reaches them. */
  addHandlers(handlers: EventHandlers<T>): void {
    this.#handlers.push(handlers);
  }

  start(): void {
    if (this.#loop !== undefined) throw new Error(`informer ${this.name} already started`);
    this.#loop = this.#run();
  }

  /** Stops watching and relisting; the cache keeps its last content. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#interruptWatch?.({ kind: 'stopped' });
    await this.#loop;
  }

  /** True once the first list has been stored and handed to the handlers. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves true once synced, false if the signal aborts or the informer stops first. */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.#synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onAbort = () => resolve(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#stop.signal.addEventListener('abort', onAbort, { once: true });
      this.#syncWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort);
        this.#stop.signal.removeEventListener('abort', onAbort);
        resolve(true);
      });
    });
  }

  /** The cached object for a key (`namespace/name`); shared, do not mutate. */
  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  /** Every cached object, without copying the cache; shared, do not mutate. */
  values(): IterableIterator<T> {
    return this.#cache.values();
  }

  /** Every cached object, copied into an array; prefer values() or byIndex(). */
  list(): T[] {
    return [...this.#cache.values()];
  }

  keys(): IterableIterator<string> {
    return this.#cache.keys();
  }

  get size(): number {
    return this.#cache.size;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      if (this.#resourceVersion === undefined || this.#relistDue) {
        try {
          await this.#relist();
        } catch (error) {
          if (signal.aborted) return;
          this.#log.warn({ err: error }, 'List failed; retrying with backoff');
          await this.#backoff();
          continue;
        }
      }
      const end = await this.#watch();
      this.#options.onWatchEnd?.(end.kind);
      switch (end.kind) {
        case 'stopped':
          return;
        case 'expired':
          // The resourceVersion is too old for the apiserver's watch cache: list again.
          this.#log.info('Watch expired (410 Gone); listing again');
          this.#relistDue = true;
          break;
        case 'watchdog':
          // No event, not even a bookmark: events may have been lost with the connection.
          this.#log.warn({ watchdogMs: this.#watchdogMs() }, 'Watch silent for too long; listing again');
          this.#relistDue = true;
          break;
        case 'error':
          this.#log.warn({ err: end.error }, 'Watch failed; restarting with backoff');
          await this.#backoff();
          break;
        case 'closed':
          if (end.events === 0 && end.durationMs < shortWatchMs) await this.#backoff();
          break;
      }
    }
  }

  /** Lists the collection page by page, then reports what changed against the cache. */
  async #relist(): Promise<void> {
    const { labelSelector, fieldSelector } = this.#options;
    const limit = this.#options.pageSize ?? 500;
    const seen = new Set<string>();
    let resourceVersion = '';
    let next: string | undefined;
    let pages = 0;
    do {
      let page: KubernetesListObject<T>;
      try {
        page = await this.#options.list({
          labelSelector,
          fieldSelector,
          limit,
          ...(next === undefined ? {} : { _continue: next }),
        });
      } catch (error) {
        // The continue token expired (410): as client-go's pager, list the rest in one go.
        if (next === undefined || httpStatusOf(error) !== 410) throw error;
        this.#log.info({ pages }, 'List continuation expired; listing in full');
        page = await this.#options.list({ labelSelector, fieldSelector });
        seen.clear();
      }
      pages++;
      for (const item of page.items) {
        if (this.#options.filter?.(item) === false) continue;
        const object = this.#transform(item);
        const key = objectKey(object);
        seen.add(key);
        this.#store(key, object);
      }
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      // Typed lists carry `_continue`, custom objects the JSON's `continue`.
      const metadata = page.metadata as { _continue?: string; continue?: string } | undefined;
      next = metadata?._continue || metadata?.continue || undefined;
    } while (next !== undefined && !this.#stop.signal.aborted);
    for (const key of [...this.#cache.keys()]) if (!seen.has(key)) this.#forget(key);
    this.#resourceVersion = resourceVersion;
    this.#relistDue = false;
    this.#failures = 0;
    if (!this.#synced) {
      this.#synced = true;
      this.#log.info({ objects: this.#cache.size, pages }, 'Cache synced');
      for (const resolve of this.#syncWaiters.splice(0)) resolve();
    }
  }

  /** Runs one watch until it ends, fails, goes silent, or is interrupted. */
  #watch(): Promise<WatchEnd> {
    const { path, labelSelector, fieldSelector } = this.#options;
    const startedAt = Date.now();
    let events = 0;
    return new Promise((resolve) => {
      let ended = false;
      let request: AbortController | undefined;
      let watchdog: NodeJS.Timeout | undefined;
      const end = (reason: WatchEnd) => {
        if (ended) return;
        ended = true;
        clearTimeout(watchdog);
        this.#interruptWatch = undefined;
        request?.abort();
        resolve(reason);
      };
      const armWatchdog = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => end({ kind: 'watchdog' }), this.#watchdogMs());
      };
      this.#interruptWatch = end;
      if (this.#stop.signal.aborted) {
        end({ kind: 'stopped' });
        return;
      }
      armWatchdog();

      const onEvent = (phase: string, apiObject: unknown) => {
        if (ended) return;
        armWatchdog();
        events++;
        const failure = this.#handleEvent(phase, apiObject);
        if (failure !== undefined) end(failure);
      };
      const onDone = (error: unknown) => {
        if (ended) return;
        if (error === null || error === undefined || isClientTimeout(error)) {
          // Closed by the server (timeoutSeconds) or by client-node's inactivity timeout: resume.
          end({ kind: 'closed', events, durationMs: Date.now() - startedAt });
        } else if (httpStatusOf(error) === 410) {
          end({ kind: 'expired' });
        } else {
          end({ kind: 'error', error });
        }
      };
      this.#watcher
        .watch(
          path,
          {
            resourceVersion: this.#resourceVersion,
            allowWatchBookmarks: true,
            labelSelector,
            fieldSelector,
            // As client-go: let the server end each watch after 5-10 min, spreading reconnects.
            timeoutSeconds: Math.floor(300 * (1 + this.#random())),
          },
          onEvent,
          onDone,
        )
        .then(
          (controller) => {
            request = controller;
            if (ended) controller.abort();
          },
          (error: unknown) => onDone(error ?? new Error('watch failed')),
        );
    });
  }

  /** Applies one watch event to the cache; returns why the watch must end, if it must. */
  #handleEvent(phase: string, apiObject: unknown): WatchEnd | undefined {
    if (phase === 'ERROR') {
      const status = apiObject as { code?: number; message?: string };
      if (status.code === 410) return { kind: 'expired' };
      return {
        kind: 'error',
        error: Object.assign(new Error(status.message ?? 'watch error event'), { code: status.code }),
      };
    }
    const object = apiObject as T;
    const resourceVersion = object.metadata?.resourceVersion;
    switch (phase) {
      case 'ADDED':
      case 'MODIFIED': {
        // An object that stops passing the filter leaves the cache as if deleted.
        if (this.#options.filter?.(object) === false) this.#forget(objectKey(object));
        else {
          const transformed = this.#transform(object);
          this.#store(objectKey(transformed), transformed);
        }
        break;
      }
      case 'DELETED':
        this.#forget(objectKey(object), this.#transform(object));
        break;
      case 'BOOKMARK':
        break;
      default:
        this.#log.warn({ phase }, 'Unknown watch event type');
        return undefined;
    }
    if (resourceVersion !== undefined) this.#resourceVersion = resourceVersion;
    this.#failures = 0;
    return undefined;
  }

  #store(key: string, next: T): void {
    const old = this.#cache.get(key);
    if (old !== undefined && old.metadata?.resourceVersion === next.metadata?.resourceVersion) return;
    const object = old !== undefined && this.#options.share ? this.#options.share(next, old) : next;
    this.#cache.set(key, object);
    this.#reindex(key, old, object);
    if (old === undefined) this.#emit((handlers) => handlers.onAdd?.(object));
    else this.#emit((handlers) => handlers.onUpdate?.(object, old));
  }

  /** Removes a cached object and tells the handlers (with its final state when known). */
  #forget(key: string, final?: T): void {
    const old = this.#cache.get(key);
    if (old === undefined) return;
    this.#remove(key, old);
    const gone = final ?? old;
    this.#emit((handlers) => handlers.onDelete?.(gone));
  }

  #remove(key: string, old: T): void {
    this.#cache.delete(key);
    this.#reindex(key, old, undefined);
  }

  #reindex(key: string, old: T | undefined, object: T | undefined): void {
    for (const [name, indexer] of this.#indexers) {
      const index = this.#indexes.get(name) as Map<string, Set<string>>;
      const before = old === undefined ? [] : indexer(old);
      const after = object === undefined ? [] : indexer(object);
      for (const value of before) {
        if (after.includes(value)) continue;
        const keys = index.get(value);
        keys?.delete(key);
        if (keys?.size === 0) index.delete(value);
      }
      for (const value of after) {
        if (before.includes(value)) continue;
        const keys = index.get(value) ?? new Set<string>();
        keys.add(key);
        index.set(value, keys);
      }
    }
  }

  #emit(call: (handlers: EventHandlers<T>) => void): void {
    for (const handlers of this.#handlers) {
      try {
        call(handlers);
      } catch (error) {
        // A throwing handler must not stop the informer or starve the other handlers.
        this.#log.error({ err: error }, 'Event handler threw');
      }
    }
  }

  async #backoff(): Promise<void> {
    const { initialMs = 800, maxMs = 30_000, jitter = 0.5 } = this.#options.backoff ?? {};
    const baseMs = Math.min(initialMs * 2 ** this.#failures, maxMs);
    this.#failures++;
    const delayMs = Math.min(baseMs * (1 + jitter * this.#random()), maxMs);
    // Rejects when the informer stops: the caller's loop checks the signal.
    await sleep(delayMs, undefined, { signal: this.#stop.signal }).catch(() => {});
  }

  #watchdogMs(): number {
    return this.#options.watchdogMs ?? 300_000;
  }
}

/**
 * client-node's Watch aborts a watch that received no bytes for `requestTimeoutMs` (30 s) with a
 * TimeoutError: every quiet watch would be torn down twice a minute, and the watchdog would
 * never fire. Set beyond the watchdog, the watchdog decides.
 */
export function quietTolerantWatch(kubeConfig: KubeConfig, watchdogMs: number): Watch {
  const watch = new Watch(kubeConfig);
  // Declared private in client-node's types, public in its JavaScript (src/watch.ts).
  const settable = watch as unknown as { requestTimeoutMs: number };
  if (typeof settable.requestTimeoutMs !== 'number')
    throw new Error("client-node's Watch has no requestTimeoutMs any more: the watch timeout cannot be set");
  settable.requestTimeoutMs = watchdogMs + 60_000;
  return watch;
}

/** client-node aborts a watch that received no bytes for requestTimeoutMs with a TimeoutError. */
function isClientTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'TimeoutError';
}
