import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { Controller, type Reconcile } from './controller.ts';
import {
  LeadershipLostError,
  Manager,
  type ManagerOptions,
  type SignalTarget,
  type Source,
} from './manager.ts';
import { createRuntimeMetrics } from './metrics.ts';
import { InMemoryLeaseClient, InMemoryLeaseStore } from './testing.ts';

/** An informer stand-in that syncs when the test says so. */
class FakeSource implements Source {
  readonly name: string;
  started = false;
  #synced = false;
  readonly #waiters: (() => void)[] = [];
  readonly #log: string[];

  constructor(name: string, log: string[] = []) {
    this.name = name;
    this.#log = log;
  }

  start(): void {
    this.started = true;
  }

  async stop(): Promise<void> {
    this.#log.push(`${this.name} stopped`);
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.#synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      signal?.addEventListener('abort', () => resolve(false), { once: true });
      this.#waiters.push(() => resolve(true));
    });
  }

  sync(): void {
    this.#synced = true;
    for (const resolve of this.#waiters.splice(0)) resolve();
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!condition()) throw new Error(`never happened: ${what}`);
}

async function status(url: string): Promise<number> {
  return (await fetch(url)).status;
}

/** Short but safe timings (lease > renew deadline > 1.2 retry) so tests take milliseconds. */
const fastElection = { leaseDurationMs: 600, renewDeadlineMs: 400, retryPeriodMs: 50 };

const managers: Manager[] = [];
function manager(options: ManagerOptions): Manager {
  const created = new Manager(options);
  managers.push(created);
  return created;
}

afterEach(async () => {
  await Promise.all(managers.splice(0).map((created) => created.stop().catch(() => {})));
});

/** A leader-only runnable that records when it ran and stops on its signal. */
function recordingRunnable(name: string) {
  const state = { running: false, runs: 0, stopped: 0 };
  return {
    state,
    runnable: {
      name,
      run: (signal: AbortSignal) =>
        new Promise<void>((resolve) => {
          state.running = true;
          state.runs++;
          signal.addEventListener('abort', () => {
            state.running = false;
            state.stopped++;
            resolve();
          });
        }),
    },
  };
}

describe('Manager', () => {
  it('starts runnables only on the leader once synced, and stops them on stop()', async () => {
    const store = new InMemoryLeaseStore();
    const source = new FakeSource('deployments');
    const leader = recordingRunnable('refresher');
    const mgr = manager({
      leaderElection: { client: new InMemoryLeaseClient(store), identity: 'a', ...fastElection },
    })
      .addSource(source)
      .addRunnable(leader.runnable);
    const follower = recordingRunnable('refresher');
    const synced = new FakeSource('deployments');
    synced.sync();
    await mgr.start();
    await until(() => mgr.isLeader(), 'a leads');
    // Leading but not synced: nothing runs yet.
    expect(leader.state.runs).toBe(0);
    const other = manager({
      leaderElection: { client: new InMemoryLeaseClient(store), identity: 'b', ...fastElection },
    })
      .addSource(synced)
      .addRunnable(follower.runnable);
    await other.start();
    source.sync();
    await until(() => leader.state.running, 'the leader runs its runnable');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(follower.state.runs).toBe(0);
    await mgr.stop();
    expect(leader.state).toEqual({ running: false, runs: 1, stopped: 1 });
    await until(() => follower.state.running, 'the next leader runs its runnable');
  });

  it('answers /healthz at once and /readyz only once every source has synced', async () => {
    const deployments = new FakeSource('deployments');
    const policies = new FakeSource('policies');
    const reconciled: string[] = [];
    const controller = new Controller({
      name: 'deployment',
      reconcile: async (key) => void reconciled.push(key),
    });
    const mgr = manager({ probeAddress: { host: '127.0.0.1', port: 0 } })
      .addSource(deployments)
      .addSource(policies)
      .addController(controller);
    controller.enqueue('ns/web');
    await mgr.start();
    const url = mgr.probeServer?.url;
    expect(deployments.started && policies.started).toBe(true);
    expect(await status(`${url}/healthz`)).toBe(200);
    expect(await status(`${url}/readyz`)).toBe(500);
    deployments.sync();
    expect(await status(`${url}/readyz`)).toBe(500);
    expect(reconciled).toEqual([]);
    policies.sync();
    expect(await status(`${url}/readyz`)).toBe(200);
    await until(() => reconciled.length === 1, 'reconcile after sync');
    expect(mgr.controllersRunning()).toBe(true);
  });

  it('serves controller-runtime metrics on the metrics port', async () => {
    const metrics = createRuntimeMetrics({ defaultMetrics: false });
    const controller = new Controller({ name: 'deployment', metrics, reconcile: async () => {} });
    const mgr = manager({ metrics, metricsAddress: { host: '127.0.0.1', port: 0 } }).addController(
      controller,
    );
    await mgr.start();
    const body = await (await fetch(`${mgr.metricsServer?.url}/metrics`)).text();
    expect(body).toContain('controller_runtime_reconcile_total{controller="deployment",result="success"} 0');
    expect(body).toContain('workqueue_depth{name="deployment",controller="deployment",priority=""} 0');
  });

  it('runs controllers only on the leader; a clean stop hands over at once', async () => {
    const store = new InMemoryLeaseStore();
    const metrics = createRuntimeMetrics({ defaultMetrics: false });
    const replicas = ['a', 'b'].map((identity) => {
      const source = new FakeSource('deployments');
      source.sync();
      const reconciled: string[] = [];
      const controller = new Controller({
        name: 'deployment',
        reconcile: async (key) => void reconciled.push(key),
      });
      controller.enqueue('ns/web');
      const mgr = manager({
        metrics: identity === 'a' ? metrics : undefined,
        // Long enough that only a released lease explains a quick take-over.
        leaderElection: {
          client: new InMemoryLeaseClient(store),
          identity,
          ...fastElection,
          leaseDurationMs: 60_000,
        },
      })
        .addSource(source)
        .addController(controller);
      return { identity, mgr, reconciled };
    });
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    await a.mgr.start();
    await until(() => a.reconciled.length === 1, 'a reconciles as leader');
    expect(await metrics.registry.metrics()).toContain('leader_election_master_status{name="test/lease"} 1');
    await b.mgr.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(b.mgr.isLeader()).toBe(false);
    expect(b.reconciled).toEqual([]);

    await a.mgr.stop();
    expect(await metrics.registry.metrics()).toContain('leader_election_master_status{name="test/lease"} 0');
    expect(store.lease?.record.holderIdentity).toBe('');
    await until(() => b.reconciled.length === 1, 'b reconciles after the hand-over');
    expect(b.mgr.isLeader()).toBe(true);
  });

  it('stops in order: no new work, in-flight reconciles finish, informers stop, then the lease is released', async () => {
    const store = new InMemoryLeaseStore();
    const client = new InMemoryLeaseClient(store);
    const log: string[] = [];
    client.onWrite = (record) => {
      if (record.holderIdentity === '') log.push('lease released');
    };
    const source = new FakeSource('deployments', log);
    source.sync();
    const gate = deferred();
    const started: string[] = [];
    const reconcile: Reconcile = async (key) => {
      started.push(key);
      await gate.promise;
      log.push(`reconciled ${key}`);
    };
    const controller = new Controller({ name: 'deployment', reconcile });
    controller.enqueue('ns/a');
    const mgr = manager({ leaderElection: { client, identity: 'a', ...fastElection } })
      .addSource(source)
      .addController(controller);
    await mgr.start();
    await until(() => started.length === 1, 'reconcile in flight');
    controller.enqueue('ns/b');
    let stopped = false;
    const stopping = mgr.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stopped).toBe(false);
    expect(store.lease?.record.holderIdentity).toBe('a');
    gate.resolve();
    await stopping;
    await mgr.wait();
    expect(log).toEqual(['reconciled ns/a', 'deployments stopped', 'lease released']);
    expect(started).toEqual(['ns/a']);
  });

  it('runs a runnable that needs no leader on every replica from start, and stops it after the lease is released', async () => {
    const store = new InMemoryLeaseStore();
    const log: string[] = [];
    const client = new InMemoryLeaseClient(store);
    client.onWrite = (record) => {
      if (record.holderIdentity === '') log.push('lease released');
    };
    const serving = (name: string) => {
      const state = { runs: 0 };
      return {
        state,
        runnable: {
          name,
          needLeaderElection: false,
          run: (signal: AbortSignal) =>
            new Promise<void>((resolve) => {
              state.runs++;
              signal.addEventListener('abort', () => {
                log.push(`${name} stopped`);
                resolve();
              });
            }),
        },
      };
    };
    const a = serving('webhook-a');
    const b = serving('webhook-b');
    const leader = manager({ leaderElection: { client, identity: 'a', ...fastElection } })
      .addSource(new FakeSource('never-synced'))
      .addRunnable(a.runnable);
    await leader.start();
    await until(() => leader.isLeader(), 'a leads');
    const follower = manager({
      leaderElection: { client: new InMemoryLeaseClient(store), identity: 'b', ...fastElection },
    }).addRunnable(b.runnable);
    await follower.start();
    // Neither synced caches nor leadership are needed.
    expect([a.state.runs, b.state.runs]).toEqual([1, 1]);
    expect(follower.isLeader()).toBe(false);
    await leader.stop();
    expect(log).toEqual(['lease released', 'webhook-a stopped']);
  });

  it('releases the lease only after aborted reconciles and runnables have settled', async () => {
    const store = new InMemoryLeaseStore();
    const client = new InMemoryLeaseClient(store);
    const log: string[] = [];
    client.onWrite = (record) => {
      if (record.holderIdentity === '') log.push('lease released');
    };
    const source = new FakeSource('deployments', log);
    source.sync();
    // Ignores the grace period; once aborted, takes a while to settle, as a cut HTTP request may.
    const settlesAfterAbort = (what: string, signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        signal.addEventListener('abort', () =>
          setTimeout(() => {
            log.push(`${what} settled`);
            resolve();
          }, 200),
        );
      });
    let reconciling = false;
    const controller = new Controller({
      name: 'deployment',
      reconcile: (_key, signal) => {
        reconciling = true;
        return settlesAfterAbort('reconcile', signal);
      },
    });
    controller.enqueue('ns/a');
    const mgr = manager({
      leaderElection: { client, identity: 'a', ...fastElection },
      gracefulShutdownMs: 50,
    })
      .addSource(source)
      .addController(controller)
      .addRunnable({ name: 'refresher', run: (signal) => settlesAfterAbort('runnable', signal) });
    await mgr.start();
    await until(() => reconciling, 'reconcile in flight');
    await mgr.stop();
    // The runnable is aborted at once, the reconcile after its 50 ms grace.
    expect(log).toEqual(['runnable settled', 'reconcile settled', 'deployments stopped', 'lease released']);
  });

  it('ends with LeadershipLostError and aborts reconciles when the lease cannot be renewed', async () => {
    const client = new InMemoryLeaseClient(new InMemoryLeaseStore());
    const source = new FakeSource('deployments');
    source.sync();
    let aborted = false;
    const controller = new Controller({
      name: 'deployment',
      reconcile: (_key, signal) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          });
        }),
    });
    controller.enqueue('ns/a');
    const mgr = manager({ leaderElection: { client, identity: 'a', ...fastElection } })
      .addSource(source)
      .addController(controller);
    await mgr.start();
    await until(() => mgr.controllersRunning(), 'controllers running');
    client.mode = 'fail';
    await expect(mgr.wait()).rejects.toBeInstanceOf(LeadershipLostError);
    expect(aborted).toBe(true);
  });

  it('SIGTERM stops the manager and sets exit code 0; a second signal exits at once', async () => {
    const gate = deferred();
    const source = new FakeSource('deployments');
    source.sync();
    const controller = new Controller({ name: 'deployment', reconcile: () => gate.promise });
    controller.enqueue('ns/a');
    const mgr = manager({}).addSource(source).addController(controller);
    const target = Object.assign(new EventEmitter(), {
      exitCode: undefined as number | string | null | undefined,
      exits: [] as (number | undefined)[],
      exit(code?: number) {
        this.exits.push(code);
      },
    });
    const uninstall = mgr.installSignalHandlers(target as unknown as SignalTarget);
    await mgr.start();
    await until(() => mgr.controllersRunning(), 'controllers running');
    target.emit('SIGTERM', 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(target.exitCode).toBeUndefined();
    gate.resolve();
    await mgr.wait();
    await until(() => target.exitCode === 0, 'exit code set');
    expect(target.exits).toEqual([]);
    target.emit('SIGINT', 'SIGINT');
    expect(target.exits).toEqual([1]);
    uninstall();
    expect(target.listenerCount('SIGTERM')).toBe(0);
  });

  it('/healthz fails while a reconcile has run longer than the wedge limit', async () => {
    const gate = deferred();
    const source = new FakeSource('deployments');
    source.sync();
    const controller = new Controller({ name: 'deployment', reconcile: () => gate.promise });
    controller.enqueue('ns/a');
    const mgr = manager({ probeAddress: { host: '127.0.0.1', port: 0 }, wedgedReconcileMs: 50 })
      .addSource(source)
      .addController(controller);
    await mgr.start();
    await until(() => controller.longestRunningMs() > 60, 'a long reconcile');
    expect(await status(`${mgr.probeServer?.url}/healthz`)).toBe(500);
    gate.resolve();
    await until(() => controller.longestRunningMs() === 0, 'reconcile done');
    expect(await status(`${mgr.probeServer?.url}/healthz`)).toBe(200);
  });
});

describe('leadership and an event loop that stalled', () => {
  it('caches synced after a stall past the renew deadline: the leader still starts its controllers', async () => {
    const store = new InMemoryLeaseStore();
    const source = new FakeSource('pods');
    let offset = 0;
    const leader = recordingRunnable('refresher');
    const mgr = manager({
      leaderElection: {
        client: new InMemoryLeaseClient(store),
        identity: 'a',
        ...fastElection,
        now: () => Date.now() + offset,
      },
    })
      .addSource(source)
      .addRunnable(leader.runnable);
    await mgr.start();
    await until(() => mgr.isLeader(), 'a leads');
    // The event loop was blocked (a huge initial list) for longer than the renew deadline.
    offset += 450;
    source.sync();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(mgr.isLeader()).toBe(true); // renewed since
    expect(mgr.controllersRunning()).toBe(true);
    await mgr.stop();
  });
});
