import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  Watch,
} from '@kubernetes/client-node';
import { type Logger, silentLogger } from '../log.ts';
import { sleep } from '../runtime/sleep.ts';
import { httpStatusOf } from './client.ts';

/**
 * A list-watch cache over client-node's `Watch`, with what client-node's own ListWatch lacks
 * (it stops on the first non-410 error, never relists and caches objects whole):
 * - restart with capped, jittered exponential backoff on any list or watch error;
 * - a watchdog restarting a watch that has delivered nothing for too long;
 * - a periodic full relist that reports drift (objects changed or deleted behind a silent watch);
 * - objects cached without metadata.managedFields (often half of a Deployment's size).
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
  /** Applied to every object before caching; default: stripManagedFields. */
  transform?: (object: T) => T;
  /** Restart a watch that delivered no event (bookmarks count) for this long; default 5 min. */
  watchdogMs?: number;
  /** Relist this often, ±10 % jitter; default 10 min. 0 disables. */
  relistIntervalMs?: number;
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
 * A cache transform keeping only the managedFields entries of one field manager: the operator
 * derives what it owns from its own entry, and the other managers' entries are dropped.
 */
export function keepManagedFieldsOf<T extends KubernetesObject>(manager: string): (object: T) => T {
  return (object) => {
    const entries = object.metadata?.managedFields;
    if (entries !== undefined && object.metadata)
      object.metadata.managedFields = entries.filter((entry) => entry.manager === manager);
    return object;
  };
}

/** kubectl's client-side apply copy of the whole object: often the largest annotation, never read. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The Deployment cache's transform: only the operator's own managedFields entry (what it owns),
 * and no last-applied-configuration (a second copy of the object's spec).
 */
export function deploymentCacheTransform<T extends KubernetesObject>(manager: string): (object: T) => T {
  const keepOwn = keepManagedFieldsOf<T>(manager);
  return (object) => {
    const annotations = object.metadata?.annotations;
    if (annotations?.[LAST_APPLIED_ANNOTATION] !== undefined) delete annotations[LAST_APPLIED_ANNOTATION];
    return keepOwn(object);
  };
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

/** Handlers that enqueue the object's own key on every event (controller-runtime EnqueueRequestForObject). */
export function enqueueObject<T extends KubernetesObject>(enqueue: (key: string) => void): EventHandlers<T> {
  const handle = (object: T) => enqueue(objectKey(object));
  return { onAdd: handle, onUpdate: handle, onDelete: handle };
}

/**
 * Handlers that enqueue the keys an event maps to (controller-runtime EnqueueRequestsFromMapFunc),
 * e.g. a policy change to the keys of the Deployments it selects. On update both the old and the
 * new object are mapped, so objects that stopped matching are reconciled too.
 */
export function enqueueMapped<T extends KubernetesObject>(
  map: (object: T) => Iterable<string>,
  enqueue: (key: string) => void,
): EventHandlers<T> {
  const handle = (object: T) => {
    for (const key of map(object)) enqueue(key);
  };
  const onUpdate = (object: T, old: T) => {
    handle(old);
    handle(object);
  };
  return { onAdd: handle, onUpdate, onDelete: handle };
}

type WatchEnd =
  | { kind: 'closed'; events: number; durationMs: number }
  | { kind: 'expired' }
  | { kind: 'error'; error: unknown }
  | { kind: 'watchdog' }
  | { kind: 'relist' }
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
  readonly #syncWaiters: (() => void)[] = [];
  readonly #stop = new AbortController();

  #resourceVersion: string | undefined;
  #relistDue = false;
  #relistTimer: NodeJS.Timeout | undefined;
  #synced = false;
  #failures = 0;
  #interruptWatch: ((end: WatchEnd) => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: InformerOptions<T>) {
    this.name = options.name;
    this.#options = options;
    this.#watcher = options.watcher ?? new Watch(options.kubeConfig);
    this.#transform = options.transform ?? stripManagedFields;
    this.#log = (options.logger ?? silentLogger()).child({ informer: options.name });
    this.#random = options.random ?? Math.random;
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
    clearTimeout(this.#relistTimer);
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

  /** Every cached object; shared, do not mutate. */
  list(): T[] {
    return [...this.#cache.values()];
  }

  keys(): string[] {
    return [...this.#cache.keys()];
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
      switch (end.kind) {
        case 'stopped':
          return;
        case 'expired':
          // The resourceVersion is too old for the apiserver's watch cache: list again.
          this.#log.info('Watch expired (410 Gone); relisting');
          this.#resourceVersion = undefined;
          break;
        case 'relist':
          this.#log.debug('Periodic relist');
          break;
        case 'watchdog':
          this.#log.warn({ watchdogMs: this.#watchdogMs() }, 'Watch silent for too long; restarting it');
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

  async #relist(): Promise<void> {
    const { labelSelector, fieldSelector } = this.#options;
    const list = await this.#options.list({ labelSelector, fieldSelector });
    const seen = new Set<string>();
    for (const item of list.items) {
      const object = this.#transform(item);
      const key = objectKey(object);
      seen.add(key);
      this.#store(key, object);
    }
    for (const [key, old] of this.#cache) {
      if (!seen.has(key)) {
        this.#cache.delete(key);
        this.#emit((handlers) => handlers.onDelete?.(old));
      }
    }
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
    this.#relistDue = false;
    this.#failures = 0;
    this.#scheduleRelist();
    if (!this.#synced) {
      this.#synced = true;
      this.#log.info({ objects: this.#cache.size }, 'Cache synced');
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
        const transformed = this.#transform(object);
        this.#store(objectKey(transformed), transformed);
        break;
      }
      case 'DELETED': {
        const transformed = this.#transform(object);
        const key = objectKey(transformed);
        if (this.#cache.delete(key)) this.#emit((handlers) => handlers.onDelete?.(transformed));
        break;
      }
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

  #store(key: string, object: T): void {
    const old = this.#cache.get(key);
    this.#cache.set(key, object);
    if (old === undefined) {
      this.#emit((handlers) => handlers.onAdd?.(object));
    } else if (old.metadata?.resourceVersion !== object.metadata?.resourceVersion) {
      this.#emit((handlers) => handlers.onUpdate?.(object, old));
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

  #scheduleRelist(): void {
    clearTimeout(this.#relistTimer);
    const intervalMs = this.#options.relistIntervalMs ?? 600_000;
    if (intervalMs <= 0 || this.#stop.signal.aborted) return;
    const delayMs = intervalMs * (0.9 + 0.2 * this.#random());
    this.#relistTimer = setTimeout(() => {
      this.#relistDue = true;
      this.#interruptWatch?.({ kind: 'relist' });
    }, delayMs);
    this.#relistTimer.unref?.();
  }

  async #backoff(): Promise<void> {
    const { initialMs = 800, maxMs = 30_000, jitter = 0.5 } = this.#options.backoff ?? {};
    const baseMs = Math.min(initialMs * 2 ** this.#failures, maxMs);
    this.#failures++;
    const delayMs = Math.min(baseMs * (1 + jitter * this.#random()), maxMs);
    await sleep(delayMs, this.#stop.signal);
  }

  #watchdogMs(): number {
    return this.#options.watchdogMs ?? 300_000;
  }
}

/** client-node aborts a watch that received no bytes for 30 s with a TimeoutError. */
function isClientTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'TimeoutError';
}
