import { type Logger, silentLogger } from '../log.ts';
import type { Controller } from './controller.ts';
import {
  HealthChecks,
  type ListenAddress,
  type ListeningServer,
  startMetricsServer,
  startProbeServer,
} from './health.ts';
import { LeaderElector, type LeaderElectorOptions } from './leader-election.ts';
import type { RuntimeMetrics } from './metrics.ts';

/** What the manager needs of an informer (kube/informer.ts's Informer is one). */
export interface Source {
  readonly name: string;
  start(): void;
  stop(): Promise<void>;
  hasSynced(): boolean;
  waitForSync(signal?: AbortSignal): Promise<boolean>;
}

/**
 * Work beside the controllers, stopped by aborting `signal`; run() resolves when it has stopped,
 * its requests settled (pass them `signal`). It should not reject (a rejection is logged).
 * By default it runs only on the leader (controller-runtime's LeaderElectionRunnable): started
 * once the caches have synced, stopped before the Lease is released. With
 * `needLeaderElection: false` (a webhook server, its certificates) it runs on every replica from
 * start, and stops last, after the Lease is released: it serves while the others wind down.
 */
export interface Runnable {
  readonly name: string;
  readonly needLeaderElection?: boolean;
  run(signal: AbortSignal): Promise<void>;
}

export type LeaderElectionOptions = Omit<
  LeaderElectorOptions,
  'onStartedLeading' | 'onStoppedLeading' | 'onNewLeader' | 'logger' | 'releaseOnCancel'
>;

export interface ManagerOptions {
  logger?: Logger;
  metrics?: RuntimeMetrics;
  /** /healthz and /readyz (kubebuilder: 0.0.0.0:8081); no probe server when absent. */
  probeAddress?: ListenAddress;
  /** /metrics (kubebuilder: 0.0.0.0:8080); needs `metrics`; no metrics server when absent. */
  metricsAddress?: ListenAddress;
  /** Run controllers only while holding this Lease; when absent this replica always leads. */
  leaderElection?: LeaderElectionOptions;
  /** How long stop waits for in-flight reconciles before aborting them; default 20 s (pods get 30 s). */
  gracefulShutdownMs?: number;
  /** /healthz fails while a reconcile has run longer than this (wedged); default 10 min; 0 disables. */
  wedgedReconcileMs?: number;
}

/** The manager ended because another replica may now lead: exit non-zero and let the pod restart. */
export class LeadershipLostError extends Error {
  constructor() {
    super('leader election lost');
    this.name = 'LeadershipLostError';
  }
}

/** The slice of `process` the signal handlers use (a fake in tests). */
export interface SignalTarget {
  on(signal: 'SIGTERM' | 'SIGINT', listener: (signal: NodeJS.Signals) => void): unknown;
  off(signal: 'SIGTERM' | 'SIGINT', listener: (signal: NodeJS.Signals) => void): unknown;
  exit(code?: number): void;
  exitCode?: number | string | null | undefined;
}

/**
 * Runs sources (informers), controllers, probes and leader election, like controller-runtime's
 * manager: informers run on every replica (so /readyz means "caches synced" everywhere and a new
 * leader starts warm); controllers run only on the leader, once the caches have synced.
 * stop() is ordered: stop taking work, finish (or abort and settle) in-flight reconciles and
 * runnables, stop informers, release the lease.
 */
export class Manager {
  readonly healthz = new HealthChecks();
  readonly readyz = new HealthChecks();
  readonly #log: Logger;
  readonly #options: ManagerOptions;
  readonly #sources: Source[] = [];
  readonly #controllers: Controller[] = [];
  readonly #runnables: Runnable[] = [];
  /** Aborted to stop the runnables (shutdown or lost leadership). */
  readonly #runnablesStop = new AbortController();
  #runnablesDone: Promise<unknown> = Promise.resolve();
  /** Runnables of every replica (needLeaderElection false), stopped last. */
  readonly #everyReplicaStop = new AbortController();
  #everyReplicaDone: Promise<unknown> = Promise.resolve();
  readonly #elector: LeaderElector | undefined;
  /** Aborted when shutdown begins: readiness fails, waits for sync end. */
  readonly #stopping = new AbortController();
  /** Aborted last in shutdown: ends the campaign, releasing the lease if held. */
  readonly #resign = new AbortController();
  #probeServer: ListeningServer | undefined;
  #metricsServer: ListeningServer | undefined;
  #electionDone: Promise<void> = Promise.resolve();
  #started = false;
  #controllersStarted = false;
  #leadershipLost = false;
  #stopped: Promise<void> | undefined;
  readonly #ended: Promise<void>;
  #endWith: (error?: Error) => void = () => {};

  constructor(options: ManagerOptions = {}) {
    this.#options = options;
    this.#log = (options.logger ?? silentLogger()).child({ component: 'manager' });
    this.#ended = new Promise<void>((resolve, reject) => {
      this.#endWith = (error) => (error === undefined ? resolve() : reject(error));
    });
    // Callers may only await run(); mark handled so a lost leadership is not also an unhandled rejection.
    this.#ended.catch(() => {});
    if (options.leaderElection !== undefined) {
      const metric = options.metrics?.leaderElectionMasterStatus;
      const lease = options.leaderElection.client.description;
      metric?.set({ name: lease }, 0);
      this.#elector = new LeaderElector({
        ...options.leaderElection,
        releaseOnCancel: true,
        logger: options.logger,
        onStartedLeading: () => {
          metric?.set({ name: lease }, 1);
          void this.#startControllersWhenSynced();
        },
        onStoppedLeading: () => {
          metric?.set({ name: lease }, 0);
          if (!this.#resign.signal.aborted) this.#loseLeadership();
        },
      });
    }
    this.healthz.add('ping', () => {});
    if (this.#elector !== undefined) {
      const elector = this.#elector;
      this.healthz.add('leader-election', () => elector.check());
    }
    const wedgedMs = options.wedgedReconcileMs ?? 600_000;
    if (wedgedMs > 0) {
      this.healthz.add('reconcilers', () => {
        for (const controller of this.#controllers) {
          const runningMs = controller.longestRunningMs();
          if (runningMs > wedgedMs) {
            throw new Error(
              `controller ${controller.name}: a reconcile has run for ${Math.round(runningMs / 1000)} s`,
            );
          }
        }
      });
    }
    this.readyz.add('informers', () => {
      const unsynced = this.#sources.filter((source) => !source.hasSynced()).map((source) => source.name);
      if (unsynced.length > 0) throw new Error(`not synced: ${unsynced.join(', ')}`);
    });
    this.readyz.add('shutdown', () => {
      if (this.#stopping.signal.aborted) throw new Error('shutting down');
    });
  }

  addSource(source: Source): this {
    if (this.#started) throw new Error('add sources before start');
    this.#sources.push(source);
    return this;
  }

  addController(controller: Controller): this {
    if (this.#started) throw new Error('add controllers before start');
    this.#controllers.push(controller);
    return this;
  }

  /** Work started with the controllers (leader only), or at start (needLeaderElection false). */
  addRunnable(runnable: Runnable): this {
    if (this.#started) throw new Error('add runnables before start');
    this.#runnables.push(runnable);
    return this;
  }

  /**
   * Whether this replica may write now (fencing): holding the lease, its last renew within the
   * renew deadline. Without leader election, from start on (in-flight work finishes its writes
   * while stopping).
   */
  isLeader(): boolean {
    return this.#elector === undefined ? this.#started : this.#elector.isLeader();
  }

  /** True once the controllers' workers run (leading and synced). */
  controllersRunning(): boolean {
    return this.#controllersStarted;
  }

  get probeServer(): ListeningServer | undefined {
    return this.#probeServer;
  }

  get metricsServer(): ListeningServer | undefined {
    return this.#metricsServer;
  }

  /** Listens, starts the informers and the campaign for leadership; resolves once listening. */
  async start(): Promise<void> {
    if (this.#started) throw new Error('manager already started');
    this.#started = true;
    const { probeAddress, metricsAddress, metrics } = this.#options;
    if (probeAddress !== undefined) {
      this.#probeServer = await startProbeServer({
        ...probeAddress,
        healthz: this.healthz,
        readyz: this.readyz,
      });
      this.#log.info({ url: this.#probeServer.url }, 'Serving probes');
    }
    if (metricsAddress !== undefined && metrics !== undefined) {
      this.#metricsServer = await startMetricsServer({ ...metricsAddress, registry: metrics.registry });
      this.#log.info({ url: this.#metricsServer.url }, 'Serving metrics');
    }
    for (const source of this.#sources) source.start();
    this.#everyReplicaDone = this.#runAll(
      this.#runnables.filter((r) => r.needLeaderElection === false),
      this.#everyReplicaStop.signal,
    );
    if (this.#elector === undefined) {
      void this.#startControllersWhenSynced();
    } else {
      this.#electionDone = this.#elector.run(this.#resign.signal).catch((error: unknown) => {
        this.#log.error({ err: error }, 'Leader election failed');
      });
    }
  }

  /** Settles when the manager has ended: resolves after stop(), rejects with LeadershipLostError. */
  wait(): Promise<void> {
    return this.#ended;
  }

  /** start() then wait(). */
  async run(): Promise<void> {
    await this.start();
    await this.wait();
  }

  /** Graceful, ordered, idempotent shutdown. */
  stop(): Promise<void> {
    this.#stopped ??= this.#shutDown();
    return this.#stopped;
  }

  /**
   * SIGTERM / SIGINT stop the manager and leave exit code 0; the process then exits when the
   * event loop is empty. A second signal exits at once with 1. Returns the uninstaller.
   */
  installSignalHandlers(target: SignalTarget = process): () => void {
    let received = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      received++;
      if (received > 1) {
        this.#log.warn({ signal }, 'Second signal: exiting now');
        target.exit(1);
        return;
      }
      this.#log.info({ signal }, 'Shutting down');
      this.stop().then(
        () => {
          if (!this.#leadershipLost) target.exitCode = 0;
        },
        (error: unknown) => {
          this.#log.error({ err: error }, 'Shutdown failed');
          target.exitCode = 1;
        },
      );
    };
    target.on('SIGTERM', onSignal);
    target.on('SIGINT', onSignal);
    return () => {
      target.off('SIGTERM', onSignal);
      target.off('SIGINT', onSignal);
    };
  }

  async #startControllersWhenSynced(): Promise<void> {
    const signal = this.#stopping.signal;
    this.#log.info('Waiting for caches to sync');
    const synced = await Promise.all(this.#sources.map((source) => source.waitForSync(signal)));
    if (signal.aborted || this.#leadershipLost || synced.includes(false)) return;
    // Not isLeader(): a sync that stalled the event loop past the renew deadline would leave a
    // replica holding the lease with no controller running.
    if (this.#elector !== undefined && !this.#elector.isLeading()) return;
    this.#log.info(
      { controllers: this.#controllers.map((controller) => controller.name) },
      'Starting controllers',
    );
    for (const controller of this.#controllers) controller.start();
    this.#runnablesDone = this.#runAll(
      this.#runnables.filter((r) => r.needLeaderElection !== false),
      this.#runnablesStop.signal,
    );
    this.#controllersStarted = true;
  }

  #runAll(runnables: Runnable[], signal: AbortSignal): Promise<unknown> {
    return Promise.all(
      runnables.map((runnable) =>
        runnable.run(signal).catch((error: unknown) => {
          this.#log.error({ err: error, runnable: runnable.name }, 'Runnable failed');
        }),
      ),
    );
  }

  /** Another replica may lead from now on: abort in-flight reconciles at once, then shut down. */
  #loseLeadership(): void {
    this.#leadershipLost = true;
    this.#log.error('Leader election lost: stopping at once');
    for (const controller of this.#controllers) void controller.abort();
    this.#runnablesStop.abort();
    this.#stopped ??= this.#shutDown();
    // Callers of stop() see the outcome through wait(); this path has no caller to tell.
    this.#stopped.catch(() => {});
  }

  async #shutDown(): Promise<void> {
    this.#stopping.abort();
    try {
      // 1+2: stop taking work, let in-flight reconciles and the runnables finish (reconciles past
      // the grace, and all of them after a lost lease, are aborted: their signals cancel their
      // HTTP requests). Wait until all have settled: nothing of ours is in flight any more.
      const graceMs = this.#options.gracefulShutdownMs ?? 20_000;
      this.#runnablesStop.abort();
      await Promise.all([
        ...this.#controllers.map((controller) => controller.stop({ graceMs })),
        this.#runnablesDone,
      ]);
      // 3: stop informers.
      await Promise.all(this.#sources.map((source) => source.stop()));
      // 4: only now release the lease (the elector does so when its signal aborts while leading):
      // the next leader cannot race a write of ours still in flight.
      this.#resign.abort();
      await this.#electionDone;
      // 5: what every replica runs (the webhook server) stops last.
      this.#everyReplicaStop.abort();
      await this.#everyReplicaDone;
      await Promise.all([this.#probeServer?.close(), this.#metricsServer?.close()]);
      this.#log.info('Stopped');
    } catch (error) {
      this.#endWith(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
    this.#endWith(this.#leadershipLost ? new LeadershipLostError() : undefined);
  }
}
