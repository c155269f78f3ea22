import type { InFlightStats, WorkQueueMetricsSink } from './metrics.ts';

/**
 * A rate-limited work queue with client-go's semantics (util/workqueue):
 * - a key waiting in the queue is queued once however often it is added (dirty set);
 * - a key handed to a worker is not handed to another until `done` (processing set);
 * - a key added while being processed is queued again, once, when `done` is called;
 * - `addRateLimited` waits the longer of a per-key exponential backoff and a global token bucket;
 *   `forget` resets the key's backoff.
 * Difference: after `shutDown` no more keys are handed out, even those still queued (client-go
 * hands out the rest first). The next leader relists and reconciles everything anyway.
 */

/** Decides how long a key waits before its next retry. */
export interface RateLimiter {
  /** Milliseconds to wait before the key may be retried; counts as one failure. */
  when(key: string): number;
  forget(key: string): void;
  numRequeues(key: string): number;
}

export interface ExponentialBackoffOptions {
  /** First retry delay; client-go: 5 ms. */
  baseDelayMs?: number;
  /** Cap; client-go: 1000 s. */
  maxDelayMs?: number;
}

/** base * 2^failures, capped, per key. */
export class ExponentialFailureRateLimiter implements RateLimiter {
  readonly #failures = new Map<string, number>();
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;

  constructor(options: ExponentialBackoffOptions = {}) {
    this.#baseDelayMs = options.baseDelayMs ?? 5;
    this.#maxDelayMs = options.maxDelayMs ?? 1_000_000;
  }

  when(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    return Math.min(this.#baseDelayMs * 2 ** failures, this.#maxDelayMs);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

export interface TokenBucketOptions {
  /** Tokens per second; client-go: 10. */
  qps?: number;
  /** Bucket size; client-go: 100. */
  burst?: number;
  now?: () => number;
}

/**
 * One bucket for all keys, like golang.org/x/time/rate's Reserve: every call takes a token,
 * the balance may go negative, and the delay is the time until the balance is back to zero.
 */
export class TokenBucketRateLimiter implements RateLimiter {
  readonly #qps: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(options: TokenBucketOptions = {}) {
    this.#qps = options.qps ?? 10;
    this.#burst = options.burst ?? 100;
    this.#now = options.now ?? Date.now;
    this.#tokens = this.#burst;
    this.#last = this.#now();
  }

  when(_key: string): number {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#qps);
    this.#last = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#qps) * 1000;
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** The longest wait of several limiters (client-go MaxOfRateLimiter). */
export class MaxOfRateLimiter implements RateLimiter {
  readonly #limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    // Every limiter must see every failure, so no short-circuit.
    return Math.max(0, ...this.#limiters.map((limiter) => limiter.when(key)));
  }

  forget(key: string): void {
    for (const limiter of this.#limiters) limiter.forget(key);
  }

  numRequeues(key: string): number {
    return Math.max(0, ...this.#limiters.map((limiter) => limiter.numRequeues(key)));
  }
}

export interface RateLimiterOptions extends ExponentialBackoffOptions {
  qps?: number;
  burst?: number;
  now?: () => number;
}

/** client-go DefaultControllerRateLimiter: per-key 5 ms .. 1000 s, and 10 qps / burst 100 overall. */
export function defaultControllerRateLimiter(options: RateLimiterOptions = {}): RateLimiter {
  return new MaxOfRateLimiter(
    new ExponentialFailureRateLimiter(options),
    new TokenBucketRateLimiter({ qps: options.qps, burst: options.burst, now: options.now }),
  );
}

export interface WorkQueueOptions {
  rateLimiter?: RateLimiter;
  metrics?: WorkQueueMetricsSink;
  now?: () => number;
}

type Waiter = (key: string | undefined) => void;

export class WorkQueue {
  readonly #rateLimiter: RateLimiter;
  readonly #metrics: WorkQueueMetricsSink | undefined;
  readonly #now: () => number;

  /** Keys waiting for a worker, in order. */
  #queue: string[] = [];
  /** Keys that need processing: queued, or added again while being processed. */
  readonly #dirty = new Set<string>();
  /** Keys held by a worker, with when they were handed out. */
  readonly #processing = new Map<string, number>();
  /** When each dirty key was first added, for the queue-duration metric. */
  readonly #addedAt = new Map<string, number>();
  /** Delayed adds: one timer per key, the earliest wins. */
  readonly #delayed = new Map<string, { readyAt: number; timer: NodeJS.Timeout }>();
  readonly #waiters: Waiter[] = [];
  readonly #drainWaiters: (() => void)[] = [];
  #shuttingDown = false;
  /** A microtask will hand queued keys to waiting workers. */
  #serving = false;

  constructor(options: WorkQueueOptions = {}) {
    this.#rateLimiter = options.rateLimiter ?? defaultControllerRateLimiter();
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
    this.#metrics?.inFlight(() => this.#inFlightStats());
  }

  /** Queues the key unless it is already queued; a key being processed is queued again when done. */
  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#metrics?.added();
    this.#dirty.add(key);
    this.#addedAt.set(key, this.#now());
    if (this.#processing.has(key)) return;
    this.#push(key);
  }

  /** Adds the key after a delay; of several pending delays for one key the earliest wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    // As client-go: every delayed add counts as a retry.
    this.#metrics?.retried();
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const readyAt = this.#now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending !== undefined) {
      if (pending.readyAt <= readyAt) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.#delayed.set(key, { readyAt, timer });
  }

  /** Adds the key when the rate limiter allows: one more failure for this key. */
  addRateLimited(key: string): void {
    if (this.#shuttingDown) return;
    this.addAfter(key, this.#rateLimiter.when(key));
  }

  /** The key succeeded: its backoff starts again from the base delay. */
  forget(key: string): void {
    this.#rateLimiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.#rateLimiter.numRequeues(key);
  }

  /**
   * The next key to process, waiting until there is one; undefined once shut down.
   * The caller owns the key until it calls `done(key)`.
   */
  get(): Promise<string | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#metrics?.depth(this.#queue.length);
      this.#handOut(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The worker is finished with the key; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    const startedAt = this.#processing.get(key);
    if (startedAt === undefined) return;
    this.#processing.delete(key);
    this.#metrics?.worked((this.#now() - startedAt) / 1000);
    if (this.#dirty.has(key) && !this.#shuttingDown) this.#push(key);
    if (this.#shuttingDown && this.#processing.size === 0) this.#releaseDrainWaiters();
  }

  /** Keys waiting for a worker (not counting delayed or in-progress keys). */
  len(): number {
    return this.#queue.length;
  }

  isShuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Stops accepting keys and handing them out; waiting `get` calls return undefined. */
  shutDown(): void {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    for (const { timer } of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    this.#queue = [];
    this.#dirty.clear();
    this.#addedAt.clear();
    this.#metrics?.depth(0);
    for (const waiter of this.#waiters.splice(0)) waiter(undefined);
    if (this.#processing.size === 0) this.#releaseDrainWaiters();
  }

  /** `shutDown`, then resolves once every key handed out has been marked done. */
  shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Queues the key; a waiting worker takes it in a microtask, not at once: until the code that
   * added it has finished (one watch event's handlers), adding it again is deduplicated, as in
   * client-go, where a worker takes keys when it next runs. Handed out at once, a key added twice
   * by one event (its selection changed, and its policy too) was reconciled twice.
   */
  #push(key: string): void {
    this.#queue.push(key);
    this.#metrics?.depth(this.#queue.length);
    if (this.#waiters.length > 0 && !this.#serving) {
      this.#serving = true;
      queueMicrotask(() => this.#serveWaiters());
    }
  }

  #serveWaiters(): void {
    this.#serving = false;
    if (this.#shuttingDown) return;
    while (this.#waiters.length > 0 && this.#queue.length > 0) {
      const key = this.#queue.shift() as string;
      const waiter = this.#waiters.shift();
      this.#metrics?.depth(this.#queue.length);
      this.#handOut(key);
      waiter?.(key);
    }
  }

  #handOut(key: string): void {
    const now = this.#now();
    const addedAt = this.#addedAt.get(key);
    if (addedAt !== undefined) this.#metrics?.queued((now - addedAt) / 1000);
    this.#addedAt.delete(key);
    this.#dirty.delete(key);
    this.#processing.set(key, now);
  }

  #releaseDrainWaiters(): void {
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  #inFlightStats(): InFlightStats {
    const now = this.#now();
    let unfinishedSeconds = 0;
    let longestSeconds = 0;
    for (const startedAt of this.#processing.values()) {
      const seconds = (now - startedAt) / 1000;
      unfinishedSeconds += seconds;
      longestSeconds = Math.max(longestSeconds, seconds);
    }
    return { unfinishedSeconds, longestSeconds };
  }
}
