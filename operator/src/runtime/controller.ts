import { randomUUID } from 'node:crypto';
import { controllerLogger, type Logger, silentLogger } from '../log.ts';
import { TimeSlicer } from '../util/time-slicer.ts';
import { NotLeaderError } from './fencing.ts';
import { type ReconcileResultLabel, type RuntimeMetrics, reconcileResults } from './metrics.ts';
import {
  defaultControllerRateLimiter,
  type RateLimiter,
  type RateLimiterOptions,
  WorkQueue,
} from './queue.ts';

/** What a reconcile asks for besides "done": look again after a while (level-triggered polling). */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

/**
 * Reconciles one object, named by its key (`namespace/name`, or `name` for cluster objects).
 * Level-triggered: read the current state from the cache, compute, act; the event that queued
 * the key is deliberately not passed. Throw to retry with backoff; throw TerminalError to give up.
 * `signal` aborts when the controller stops past its grace period, leadership is lost, or the
 * reconcile times out; pass it to every request, so an abort also cancels the write in flight.
 */
export type Reconcile = (
  key: string,
  signal: AbortSignal,
  log: Logger,
  // biome-ignore lint/suspicious/noConfusingVoidType: a reconciler with nothing to ask is a plain async function.
) => Promise<ReconcileResult | undefined | void>;

/** An error that retrying cannot fix (invalid spec, ...): counted and logged, not requeued. */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

/**
 * A write lost an optimistic-concurrency race (HTTP 409: the object changed since it was read, so
 * the cache is behind). Retried with backoff like any error, but logged at info: by the retry the
 * cache holds the newer object.
 */
export class ConflictError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConflictError';
  }
}

/** True for a TerminalError, also when wrapped as the `cause` of another error. */
export function isTerminalError(error: unknown): boolean {
  return hasCause(error, TerminalError);
}

/** True when the error, or an error in its `cause` chain, is an instance of `type`. */
function hasCause<T>(error: unknown, type: new (...args: never[]) => T): boolean {
  for (
    let current = error, depth = 0;
    current instanceof Error && depth < 10;
    current = current.cause, depth++
  ) {
    if (current instanceof type) return true;
  }
  return false;
}

export interface ControllerOptions {
  /** Used in logs (`controller` field) and metrics (`controller` / `name` labels). */
  name: string;
  reconcile: Reconcile;
  /** Concurrent reconciles (controller-runtime MaxConcurrentReconciles); default 1. */
  workers?: number;
  logger?: Logger;
  metrics?: RuntimeMetrics;
  /** Retry backoff and global rate limit; client-go defaults when absent. */
  rateLimiter?: RateLimiter | RateLimiterOptions;
  /** Aborts the signal of a reconcile running longer than this; none when absent. */
  reconcileTimeoutMs?: number;
}

export interface ControllerStopOptions {
  /** How long to wait for in-flight reconciles before aborting their signals; default 30 s. */
  graceMs?: number;
}

/**
 * Workers taking keys from a work queue and reconciling them. Keys may be enqueued before
 * `start` (the informers fill the queue while this replica waits for leadership).
 * One-shot: after `stop` a controller does not start again.
 */
export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  readonly #reconcile: Reconcile;
  readonly #workers: number;
  readonly #log: Logger;
  readonly #metrics: RuntimeMetrics | undefined;
  readonly #reconcileTimeoutMs: number | undefined;
  /** Aborted when stop runs out of patience; every reconcile's signal follows it. */
  readonly #abort = new AbortController();
  readonly #inFlight = new Map<string, number>();
  #running: Promise<void>[] = [];
  #started = false;

  constructor(options: ControllerOptions) {
    this.name = options.name;
    this.#reconcile = options.reconcile;
    this.#workers = Math.max(1, options.workers ?? 1);
    this.#log = controllerLogger(options.logger ?? silentLogger(), options.name);
    this.#metrics = options.metrics;
    this.#reconcileTimeoutMs = options.reconcileTimeoutMs;
    const rateLimiter =
      options.rateLimiter !== undefined && 'when' in options.rateLimiter
        ? options.rateLimiter
        : defaultControllerRateLimiter(options.rateLimiter);
    this.queue = new WorkQueue({ rateLimiter, metrics: options.metrics?.workQueue(options.name) });
    this.#initMetrics();
  }

  /** Queues a reconcile of the key (deduplicated). Bound, so it can be handed to event handlers as is. */
  readonly enqueue = (key: string): void => {
    this.queue.add(key);
  };

  /** Queues a reconcile of the key after a delay. */
  readonly enqueueAfter = (key: string, delayMs: number): void => {
    this.queue.addAfter(key, delayMs);
  };

  /** Starts the workers. */
  start(): void {
    if (this.#started) throw new Error(`controller ${this.name} already started`);
    if (this.queue.isShuttingDown()) throw new Error(`controller ${this.name} was stopped`);
    this.#started = true;
    this.#log.info({ workers: this.#workers }, 'Starting workers');
    this.#running = Array.from({ length: this.#workers }, () => this.#work());
  }

  /**
   * Stops taking keys and waits for in-flight reconciles. Past the grace period their signals
   * are aborted and stop waits for them to settle: nothing they started is still in flight when
   * it returns (so the Lease may be released). Resolves true if all finished within the grace.
   */
  async stop(options: ControllerStopOptions = {}): Promise<boolean> {
    const graceMs = options.graceMs ?? 30_000;
    this.queue.shutDown();
    if (this.#inFlight.size > 0)
      this.#log.info({ inFlight: [...this.#inFlight.keys()] }, 'Waiting for in-flight reconciles');
    const finished = Promise.all(this.#running).then(() => true);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), graceMs);
    });
    const drained = await Promise.race([finished, expired]);
    clearTimeout(timer);
    if (!drained) {
      this.#log.warn(
        { inFlight: [...this.#inFlight.keys()] },
        'Reconciles still running after the grace period; aborting them',
      );
      this.#abort.abort(new Error(`controller ${this.name} stopped`));
      await finished;
    }
    this.#log.info('Stopped workers');
    return drained;
  }

  /** Stops at once: signals of in-flight reconciles abort now (leadership lost). */
  async abort(): Promise<void> {
    this.queue.shutDown();
    this.#abort.abort(new Error(`controller ${this.name} aborted`));
    await Promise.all(this.#running);
  }

  /** Milliseconds the oldest in-flight reconcile has been running; 0 when idle. */
  longestRunningMs(now: number = Date.now()): number {
    let longest = 0;
    for (const startedAt of this.#inFlight.values()) longest = Math.max(longest, now - startedAt);
    return longest;
  }

  async #work(): Promise<void> {
    // A reconcile that finds nothing to do awaits no I/O, and the queue hands out a waiting key
    // at once: thousands of them (a resync, a policy change) would run as one chain of
    // microtasks, holding up timers, watch events and webhook requests until the queue drains.
    // The worker gives the event loop a turn every few milliseconds of that.
    const slicer = new TimeSlicer();
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      await this.#process(key);
      await slicer.pause();
    }
  }

  async #process(key: string): Promise<void> {
    const log = this.#log.child({ key, reconcileID: randomUUID() });
    const labels = { controller: this.name };
    const startedAt = Date.now();
    this.#inFlight.set(key, startedAt);
    this.#metrics?.activeWorkers.inc(labels);
    const { signal, dispose } = this.#reconcileSignal();
    try {
      log.debug('Reconciling');
      const result = await this.#reconcile(key, signal, log);
      this.queue.forget(key);
      const requeueAfterMs = result?.requeueAfterMs;
      if (requeueAfterMs !== undefined && requeueAfterMs > 0) {
        this.queue.addAfter(key, requeueAfterMs);
        this.#count('requeue_after');
        log.debug({ requeueAfterMs }, 'Reconciled; requeue after');
      } else {
        this.#count('success');
        log.debug('Reconciled');
      }
    } catch (error) {
      this.#count('error');
      this.#metrics?.reconcileErrors.inc(labels);
      if (isTerminalError(error)) {
        this.#metrics?.terminalReconcileErrors.inc(labels);
        this.queue.forget(key);
        log.error({ err: error }, 'Reconciler error (terminal, not retried)');
      } else {
        this.queue.addRateLimited(key);
        const retries = this.queue.numRequeues(key);
        if (hasCause(error, ConflictError))
          log.info({ err: error, retries }, 'Conflict: the object changed since it was read; retrying');
        else if (hasCause(error, NotLeaderError))
          log.info({ err: error, retries }, 'Not the leader right now: the write was held back');
        else log.error({ err: error, retries }, 'Reconciler error');
      }
    } finally {
      dispose();
      this.#metrics?.reconcileTime.observe(labels, (Date.now() - startedAt) / 1000);
      this.#metrics?.activeWorkers.dec(labels);
      this.#inFlight.delete(key);
      this.queue.done(key);
    }
  }

  #reconcileSignal(): { signal: AbortSignal; dispose: () => void } {
    if (this.#reconcileTimeoutMs === undefined) return { signal: this.#abort.signal, dispose: () => {} };
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new Error(`reconcile timed out after ${this.#reconcileTimeoutMs} ms`)),
      this.#reconcileTimeoutMs,
    );
    return {
      signal: AbortSignal.any([this.#abort.signal, timeout.signal]),
      dispose: () => clearTimeout(timer),
    };
  }

  #count(result: ReconcileResultLabel): void {
    this.#metrics?.reconcileTotal.inc({ controller: this.name, result });
  }

  #initMetrics(): void {
    const metrics = this.#metrics;
    if (metrics === undefined) return;
    const labels = { controller: this.name };
    // Series exist from the start, as controller-runtime's initMetrics does.
    for (const result of reconcileResults) {
      metrics.reconcileTotal.inc({ ...labels, result }, 0);
    }
    metrics.reconcileErrors.inc(labels, 0);
    metrics.terminalReconcileErrors.inc(labels, 0);
    metrics.reconcileTime.zero(labels);
    metrics.maxConcurrentReconciles.set(labels, this.#workers);
    metrics.activeWorkers.set(labels, 0);
  }
}
