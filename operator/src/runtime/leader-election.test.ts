import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LeaderElector, type LeaderElectorOptions } from './leader-election.ts';
import { InMemoryLeaseClient as FakeLeaseClient, InMemoryLeaseStore as LeaseStore } from './testing.ts';

interface Candidate {
  elector: LeaderElector;
  client: FakeLeaseClient;
  abort: AbortController;
  events: string[];
  done: Promise<void>;
}

function candidate(
  store: LeaseStore,
  identity: string,
  options: Partial<LeaderElectorOptions> = {},
): Candidate {
  const client = new FakeLeaseClient(store);
  const events: string[] = [];
  const abort = new AbortController();
  const elector = new LeaderElector({
    client,
    identity,
    random: () => 0.5,
    onStartedLeading: () => events.push('started'),
    onStoppedLeading: () => events.push('stopped'),
    ...options,
  });
  return { elector, client, abort, events, done: elector.run(abort.signal) };
}

beforeEach(() => {
  // The elector waits with node:timers/promises' setTimeout: fake it too.
  vi.useFakeTimers({ fakeNodeBuiltins: true });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('LeaderElector', () => {
  it('acquires an absent lease and renews it every retry period', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.events).toEqual(['started']);
    const first = store.lease?.record;
    expect(first?.holderIdentity).toBe('a');
    expect(first?.leaseDurationSeconds).toBe(15);

    await vi.advanceTimersByTimeAsync(2_000);
    const renewed = store.lease?.record;
    expect(renewed?.renewTime?.getTime()).toBe((first?.renewTime?.getTime() ?? 0) + 2_000);
    expect(renewed?.acquireTime).toEqual(first?.acquireTime);
    expect(renewed?.leaseTransitions).toBe(first?.leaseTransitions);
    a.abort.abort();
    await a.done;
  });

  it('the leader renews without reading the Lease first; after a write by someone else it reads again', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    const gets = vi.spyOn(a.client, 'get');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(gets).not.toHaveBeenCalled();
    expect(store.lease?.record.holderIdentity).toBe('a');
    // Someone else writes the Lease (a new resourceVersion): the fast path conflicts, then reads.
    store.put({ ...(store.lease?.record as NonNullable<typeof store.lease>['record']) });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(gets).toHaveBeenCalledTimes(1);
    expect(a.elector.isLeader()).toBe(true);
    a.abort.abort();
    await a.done;
  });

  it('does not take a lease that its holder keeps renewing', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    const b = candidate(store, 'b');
    await vi.advanceTimersByTimeAsync(120_000);
    expect(a.elector.isLeader()).toBe(true);
    expect(b.elector.isLeader()).toBe(false);
    expect(b.elector.leader()).toBe('a');
    b.abort.abort();
    a.abort.abort();
    await Promise.all([a.done, b.done]);
  });

  it('judges expiry by when it saw the record change, not by the renewTime in it (clock skew)', async () => {
    const store = new LeaseStore();
    // Written by a dead holder whose clock ran an hour behind: renewTime looks long expired.
    const skewed = new Date(Date.now() - 3_600_000);
    store.put({
      holderIdentity: 'dead',
      leaseDurationSeconds: 15,
      acquireTime: skewed,
      renewTime: skewed,
      leaseTransitions: 4,
    });
    const b = candidate(store, 'b');
    await vi.advanceTimersByTimeAsync(14_000);
    expect(b.elector.isLeader()).toBe(false);
    // Retries come every 2 s * (1 + 0.5 * 1.2) = 3.2 s: the first one after 15 s of no change wins.
    await vi.advanceTimersByTimeAsync(4_000);
    expect(b.elector.isLeader()).toBe(true);
    expect(store.lease?.record.holderIdentity).toBe('b');
    expect(store.lease?.record.leaseTransitions).toBe(5);
    b.abort.abort();
    await b.done;
  });

  it('a holder whose clock runs ahead cannot block the lease once it stops renewing', async () => {
    const store = new LeaseStore();
    const future = new Date(Date.now() + 3_600_000);
    store.put({
      holderIdentity: 'dead',
      leaseDurationSeconds: 15,
      acquireTime: future,
      renewTime: future,
      leaseTransitions: 0,
    });
    const b = candidate(store, 'b');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(b.elector.isLeader()).toBe(true);
    b.abort.abort();
    await b.done;
  });

  it('frozen past the renew deadline: not leader at once (no write goes out); another took the lease: stops', async () => {
    const store = new LeaseStore();
    let frozen = 0;
    const a = candidate(store, 'a', { now: () => performance.now() + frozen });
    await vi.advanceTimersByTimeAsync(0);
    expect(a.elector.isLeader()).toBe(true);
    // A 30 s freeze: the (monotonic) clock moves, no timer of a's ran; meanwhile b took the
    // expired lease.
    frozen += 30_000;
    vi.setSystemTime(Date.now() + 30_000);
    expect(a.elector.isLeader()).toBe(false);
    const taken = store.lease?.record;
    if (!taken) throw new Error('no lease');
    store.put({ ...taken, holderIdentity: 'b', renewTime: new Date() });
    await vi.advanceTimersByTimeAsync(2_000);
    // Still trying within its renew round, but writing nothing meanwhile.
    expect(a.elector.isLeader()).toBe(false);
    expect(a.elector.isLeading()).toBe(true);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(a.events).toEqual(['started', 'stopped']);
    expect(a.elector.isLeader()).toBe(false);
    expect(store.lease?.record.holderIdentity).toBe('b');
    await a.done;
  });

  it('frozen past the renew deadline, nobody took the lease: one renew, and it leads again', async () => {
    const store = new LeaseStore();
    let frozen = 0;
    const a = candidate(store, 'a', { now: () => performance.now() + frozen });
    await vi.advanceTimersByTimeAsync(0);
    frozen += 30_000;
    expect(a.elector.isLeader()).toBe(false);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.events).toEqual(['started']);
    a.abort.abort();
    await a.done;
  });

  it('a wall-clock step (NTP, a resumed VM) of an hour either way neither ends the term nor lets another take it', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    const b = candidate(store, 'b');
    await vi.advanceTimersByTimeAsync(0);
    expect(a.elector.isLeader()).toBe(true);
    vi.setSystemTime(Date.now() + 3_600_000);
    expect(a.elector.isLeader()).toBe(true);
    await vi.advanceTimersByTimeAsync(4_000);
    vi.setSystemTime(Date.now() - 7_200_000);
    await vi.advanceTimersByTimeAsync(4_000);
    expect(a.elector.isLeader()).toBe(true);
    expect(b.elector.isLeader()).toBe(false);
    expect(a.events).toEqual(['started']);
    expect(store.lease?.record.holderIdentity).toBe('a');
    b.abort.abort();
    a.abort.abort();
    await Promise.all([a.done, b.done]);
  });

  it('stops leading when it cannot renew within the renew deadline', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    a.client.mode = 'fail';
    await vi.advanceTimersByTimeAsync(9_000);
    expect(a.elector.isLeader()).toBe(true);
    await vi.advanceTimersByTimeAsync(4_000);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events).toEqual(['started', 'stopped']);
    await a.done;
  });

  it('stops leading in time also when the apiserver hangs instead of failing', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    a.client.mode = 'hang';
    await vi.advanceTimersByTimeAsync(13_000);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events).toEqual(['started', 'stopped']);
  });

  it('aborts the request of an attempt past its deadline, so that it cannot land later', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    a.client.mode = 'hang';
    await vi.advanceTimersByTimeAsync(2_000);
    expect(a.client.hanging).toBe(1);
    await vi.advanceTimersByTimeAsync(11_000);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.client.hanging).toBe(0);
    await a.done;
  });

  it('gives up releasing after the renew deadline when the apiserver hangs: the lease is left to expire', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    a.client.mode = 'hang';
    a.abort.abort();
    let done = false;
    void a.done.then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(9_999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(true);
    expect(a.client.hanging).toBe(0);
    expect(store.lease?.record.holderIdentity).toBe('a');
  });

  it('releases the lease on stop so that another candidate takes over at once', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    await vi.advanceTimersByTimeAsync(0);
    const b = candidate(store, 'b');
    await vi.advanceTimersByTimeAsync(1_000);
    a.abort.abort();
    await a.done;
    expect(a.events).toEqual(['started', 'stopped']);
    expect(store.lease?.record.holderIdentity).toBe('');
    expect(store.lease?.record.leaseDurationSeconds).toBe(1);
    // b's next retry (3.2 s after its first attempt) finds the lease free: far sooner than 15 s.
    await vi.advanceTimersByTimeAsync(3_200);
    expect(b.elector.isLeader()).toBe(true);
    b.abort.abort();
    await b.done;
  });

  it('does not release when releaseOnCancel is false', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a', { releaseOnCancel: false });
    await vi.advanceTimersByTimeAsync(0);
    a.abort.abort();
    await a.done;
    expect(store.lease?.record.holderIdentity).toBe('a');
  });

  it('of two candidates racing for an absent lease exactly one leads', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    const b = candidate(store, 'b');
    await vi.advanceTimersByTimeAsync(30_000);
    expect([a.elector.isLeader(), b.elector.isLeader()].filter(Boolean)).toHaveLength(1);
    a.abort.abort();
    b.abort.abort();
    await Promise.all([a.done, b.done]);
  });

  it('two electors never lead at the same time, through partitions and hand-overs', async () => {
    const store = new LeaseStore();
    const a = candidate(store, 'a');
    const b = candidate(store, 'b');
    const leaders = new Set<string>();
    const step = async (ms: number) => {
      for (let elapsed = 0; elapsed < ms; elapsed += 100) {
        await vi.advanceTimersByTimeAsync(100);
        expect(a.elector.isLeader() && b.elector.isLeader()).toBe(false);
        if (a.elector.isLeader()) leaders.add('a');
        if (b.elector.isLeader()) leaders.add('b');
      }
    };
    await step(10_000);
    const [first, second] = a.elector.isLeader() ? [a, b] : [b, a];
    first.client.mode = 'fail';
    await step(30_000);
    expect(second.elector.isLeader()).toBe(true);
    expect(first.elector.isLeader()).toBe(false);
    expect(leaders).toEqual(new Set(['a', 'b']));
    second.abort.abort();
    first.abort.abort();
    await Promise.all([a.done, b.done]);
  });

  it('the liveness check fails when the leader has not renewed for lease duration plus tolerance', async () => {
    let now = Date.now();
    const store = new LeaseStore();
    const a = candidate(store, 'a', { now: () => now });
    await vi.advanceTimersByTimeAsync(0);
    expect(() => a.elector.check(20_000)).not.toThrow();
    // The event loop was blocked: our clock moved on but no renew could run.
    now += 36_000;
    expect(() => a.elector.check(20_000)).toThrow(/not renewed/);
    now = Date.now();
    a.abort.abort();
    await a.done;
  });

  it('rejects timings that would let two leaders overlap', () => {
    const client = new FakeLeaseClient(new LeaseStore());
    expect(
      () => new LeaderElector({ client, identity: 'a', leaseDurationMs: 10_000, renewDeadlineMs: 10_000 }),
    ).toThrow();
  });
});
