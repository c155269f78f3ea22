import { setTimeout as sleep } from 'node:timers/promises';
import { type Logger, silentLogger } from '../log.ts';

/**
 * Leader election over a Lease, following client-go's tools/leaderelection:
 * - a candidate acquires the Lease when it is free (no holder) or expired, and the leader renews it
 *   every retry period; writes are replaces carrying the resourceVersion read, so of two racing
 *   candidates one gets 409 and loses;
 * - "expired" is judged by this process's clock: the Lease is expired when its record has not
 *   changed for leaseDuration since *we* last saw it change, never by comparing renewTime with our
 *   clock, so clock skew between replicas does not matter;
 * - the leader that cannot renew within renewDeadline stops leading; as renewDeadline < leaseDuration,
 *   it stops before any other candidate may take over;
 * - on a clean stop the leader releases the Lease (holder empty, duration 1 s), so the next leader
 *   takes over at once instead of after leaseDuration.
 */

/** The Lease spec fields leader election uses. */
export interface LeaderElectionRecord {
  /** Empty when nobody holds the Lease (released). */
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime: Date | undefined;
  renewTime: Date | undefined;
  leaseTransitions: number;
}

export interface ObservedLease {
  record: LeaderElectionRecord;
  resourceVersion: string;
}

/** Thrown by a LeaseClient when a create or replace lost a race (HTTP 409). */
export class LeaseConflictError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LeaseConflictError';
  }
}

/**
 * The three calls leader election makes; one Lease, named by the implementation. `signal`
 * aborts the request in flight: an attempt past its deadline must not land later.
 */
export interface LeaseClient {
  /** `namespace/name`, for logs and the leader_election_master_status label. */
  readonly description: string;
  /** undefined when the Lease does not exist. */
  get(signal: AbortSignal): Promise<ObservedLease | undefined>;
  /** Throws LeaseConflictError when it already exists. */
  create(record: LeaderElectionRecord, signal: AbortSignal): Promise<ObservedLease>;
  /** Optimistic: throws LeaseConflictError when resourceVersion is no longer current. */
  replace(record: LeaderElectionRecord, resourceVersion: string, signal: AbortSignal): Promise<ObservedLease>;
}

export interface LeaderElectorOptions {
  client: LeaseClient;
  /** Unique per replica: the pod name. */
  identity: string;
  /** How long others wait, after last seeing the record change, before taking over; default 15 s. */
  leaseDurationMs?: number;
  /** How long the leader keeps retrying a failing renew before giving up; default 10 s. */
  renewDeadlineMs?: number;
  /** Between attempts to acquire or renew; default 2 s. */
  retryPeriodMs?: number;
  /** Release the Lease when run's signal aborts while leading; default true. */
  releaseOnCancel?: boolean;
  onStartedLeading?: () => void;
  /** Called once when leadership ends: lost, or released after the signal aborted. */
  onStoppedLeading?: () => void;
  /** Called when the observed holder changes (including to ourselves). */
  onNewLeader?: (identity: string) => void;
  logger?: Logger;
  /**
   * A monotonic clock in milliseconds for every duration (renew deadline, lease expiry as this
   * replica observes it); default performance.now. The wall clock only stamps the Lease's
   * acquireTime and renewTime: an NTP step or a VM's clock jump neither ends nor extends a term.
   */
  now?: () => number;
  /** For the acquire retry jitter; tests pin it. */
  random?: () => number;
}

/** client-go's JitterFactor for acquire retries. */
const acquireJitterFactor = 1.2;

export class LeaderElector {
  readonly #client: LeaseClient;
  readonly #identity: string;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #releaseOnCancel: boolean;
  readonly #onStartedLeading: () => void;
  readonly #onStoppedLeading: () => void;
  readonly #onNewLeader: (identity: string) => void;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #random: () => number;

  #observed: ObservedLease | undefined;
  /** Our monotonic clock when the record was last seen to change. */
  #observedAt = 0;
  #reportedLeader: string | undefined;
  #leading = false;
  #lastRenewAt = 0;

  constructor(options: LeaderElectorOptions) {
    this.#client = options.client;
    this.#identity = options.identity;
    this.#leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.#retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (this.#leaseDurationMs <= this.#renewDeadlineMs)
      throw new Error('leaseDuration must exceed renewDeadline');
    if (this.#renewDeadlineMs <= acquireJitterFactor * this.#retryPeriodMs) {
      throw new Error('renewDeadline must exceed retryPeriod * 1.2');
    }
    if (this.#identity === '') throw new Error('leader election identity must not be empty');
    this.#releaseOnCancel = options.releaseOnCancel ?? true;
    this.#onStartedLeading = options.onStartedLeading ?? (() => {});
    this.#onStoppedLeading = options.onStoppedLeading ?? (() => {});
    this.#onNewLeader = options.onNewLeader ?? (() => {});
    this.#log = (options.logger ?? silentLogger()).child({
      lease: options.client.description,
      identity: options.identity,
    });
    this.#now = options.now ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
  }

  get identity(): string {
    return this.#identity;
  }

  /**
   * True while leading and the last renew is less than renewDeadline old. A process frozen (or
   * starved) past that may have lost the lease without knowing it yet: its renew loop only
   * finds out on its next attempt. Writers check this right before each write (fencing).
   */
  isLeader(): boolean {
    return this.#leading && this.#now() - this.#lastRenewAt < this.#renewDeadlineMs;
  }

  /** In the leading phase (acquired, not lost), however long ago the last renew was. */
  isLeading(): boolean {
    return this.#leading;
  }

  /** The holder last observed, undefined before the first read or when free. */
  leader(): string | undefined {
    const holder = this.#observed?.record.holderIdentity;
    return holder === '' ? undefined : holder;
  }

  /**
   * Campaigns until leading, then renews until the lease is lost or the signal aborts (then
   * releases it). Resolves when leadership has ended, or when aborted before ever leading.
   * One-shot, like client-go: after losing, build a new elector (or, as we do, exit).
   */
  async run(signal: AbortSignal): Promise<void> {
    this.#log.info('Attempting to acquire leader lease');
    if (!(await this.#acquire(signal))) return;
    this.#leading = true;
    this.#log.info('Successfully acquired lease');
    this.#onStartedLeading();
    await this.#renew(signal);
    if (signal.aborted && this.#releaseOnCancel) await this.#release();
    this.#leading = false;
    this.#onStoppedLeading();
  }

  /**
   * A liveness check (client-go HealthzAdaptor): fails when we believe we lead but have not
   * renewed for leaseDuration + tolerance, i.e. the renew loop is wedged.
   */
  check(toleranceMs = 20_000): void {
    if (!this.#leading) return;
    const sinceRenew = this.#now() - this.#lastRenewAt;
    if (sinceRenew > this.#leaseDurationMs + toleranceMs) {
      throw new Error(`leader lease not renewed for ${Math.round(sinceRenew / 1000)} s`);
    }
  }

  async #acquire(signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted) {
      if (await this.#attempt(this.#renewDeadlineMs)) return true;
      const delay = this.#retryPeriodMs * (1 + this.#random() * acquireJitterFactor);
      // The waits here reject when the signal aborts: each loop checks the signal next.
      await sleep(delay, undefined, { signal }).catch(() => {});
    }
    return false;
  }

  /** Renews every retry period; returns when the signal aborts or a renew missed its deadline. */
  async #renew(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      // Each round has the whole renew deadline, as in client-go, so a process that was frozen or
      // starved keeps trying: a renew succeeds only if nobody touched the lease meanwhile (the
      // update checks its resourceVersion). Until one does, isLeader() is false: no write goes out.
      const deadline = this.#now() + this.#renewDeadlineMs;
      let renewed = false;
      while (!signal.aborted) {
        renewed = await this.#attempt(deadline - this.#now());
        if (renewed || this.#now() + this.#retryPeriodMs >= deadline) break;
        await sleep(this.#retryPeriodMs, undefined, { signal }).catch(() => {});
      }
      if (signal.aborted) return;
      if (!renewed) {
        this.#log.error({ renewDeadlineMs: this.#renewDeadlineMs }, 'Failed to renew lease: leadership lost');
        return;
      }
      await sleep(this.#retryPeriodMs, undefined, { signal }).catch(() => {});
    }
  }

  /** One tryAcquireOrRenew, given up after timeoutMs so a hung request cannot hold leadership. */
  #attempt(timeoutMs: number): Promise<boolean> {
    return this.#withDeadline(
      timeoutMs,
      (signal) =>
        this.#tryAcquireOrRenew(signal).catch((error: unknown) => {
          this.#log.warn({ err: error }, 'Error acquiring or renewing lease');
          return false;
        }),
      false,
    );
  }

  /**
   * Runs `call` with a signal that aborts after timeoutMs, cancelling its request; resolves
   * `onTimeout` then, also if the call ignores its signal.
   */
  async #withDeadline<T>(
    timeoutMs: number,
    call: (signal: AbortSignal) => Promise<T>,
    onTimeout: T,
  ): Promise<T> {
    const deadline = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<T>((resolve) => {
      timer = setTimeout(
        () => {
          deadline.abort(new Error(`lease request took longer than ${Math.round(timeoutMs)} ms`));
          resolve(onTimeout);
        },
        Math.max(0, timeoutMs),
      );
    });
    try {
      return await Promise.race([call(deadline.signal), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const now = this.#now();
    const stamp = new Date();
    const desired: LeaderElectionRecord = {
      holderIdentity: this.#identity,
      leaseDurationSeconds: Math.ceil(this.#leaseDurationMs / 1000),
      acquireTime: stamp,
      renewTime: stamp,
      leaseTransitions: 0,
    };

    // client-go's fast path: the leader renews from the Lease it last wrote, without reading it
    // first (half the requests); a conflict means someone else wrote it: read, as below.
    const mine = this.#observed;
    if (this.#leading && mine !== undefined && mine.record.holderIdentity === this.#identity) {
      try {
        const renewed: LeaderElectionRecord = {
          ...desired,
          acquireTime: mine.record.acquireTime,
          leaseTransitions: mine.record.leaseTransitions,
        };
        this.#observe(await this.#client.replace(renewed, mine.resourceVersion, signal), this.#now());
        this.#lastRenewAt = now;
        return true;
      } catch (error) {
        if (!(error instanceof LeaseConflictError)) throw error;
      }
    }

    const current = await this.#client.get(signal);
    if (current === undefined) {
      try {
        this.#observe(await this.#client.create(desired, signal), this.#now());
      } catch (error) {
        if (error instanceof LeaseConflictError) return false;
        throw error;
      }
      this.#lastRenewAt = now;
      return true;
    }

    // The clock after the read: the record may have changed while the request was in flight.
    const readAt = this.#now();
    if (this.#observed === undefined || !sameRecord(this.#observed.record, current.record)) {
      this.#observe(current, readAt);
    } else {
      this.#observed = current;
    }
    const holder = current.record.holderIdentity;
    const heldByUs = holder === this.#identity;
    if (
      holder !== '' &&
      !heldByUs &&
      this.#observedAt + current.record.leaseDurationSeconds * 1000 > readAt
    ) {
      return false;
    }
    if (heldByUs) {
      desired.acquireTime = current.record.acquireTime;
      desired.leaseTransitions = current.record.leaseTransitions;
    } else {
      desired.leaseTransitions = current.record.leaseTransitions + 1;
    }
    try {
      this.#observe(await this.#client.replace(desired, current.resourceVersion, signal), this.#now());
    } catch (error) {
      if (error instanceof LeaseConflictError) return false;
      throw error;
    }
    this.#lastRenewAt = now;
    return true;
  }

  /** Bounded by the renew deadline: a hung apiserver cannot hold up shutdown; the Lease then expires. */
  async #release(): Promise<void> {
    const observed = this.#observed;
    if (observed === undefined || observed.record.holderIdentity !== this.#identity) return;
    const stamp = new Date();
    const record: LeaderElectionRecord = {
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: stamp,
      renewTime: stamp,
      leaseTransitions: observed.record.leaseTransitions,
    };
    await this.#withDeadline(
      this.#renewDeadlineMs,
      async (signal) => {
        try {
          this.#observe(await this.#client.replace(record, observed.resourceVersion, signal), this.#now());
          this.#log.info('Released leader lease');
        } catch (error) {
          this.#log.warn({ err: error }, 'Failed to release lease; the next leader waits for it to expire');
        }
      },
      undefined,
    );
  }

  #observe(lease: ObservedLease, now: number): void {
    this.#observed = lease;
    this.#observedAt = now;
    const holder = lease.record.holderIdentity;
    if (holder !== '' && holder !== this.#reportedLeader) {
      this.#reportedLeader = holder;
      this.#log.info({ leader: holder }, 'New leader elected');
      this.#onNewLeader(holder);
    }
  }
}

function sameRecord(a: LeaderElectionRecord, b: LeaderElectionRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.leaseTransitions === b.leaseTransitions &&
    a.acquireTime?.getTime() === b.acquireTime?.getTime() &&
    a.renewTime?.getTime() === b.renewTime?.getTime()
  );
}
