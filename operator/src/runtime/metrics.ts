import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { BUILD } from '../version.ts';

/**
 * Metric names, labels and buckets follow controller-runtime
 * (pkg/internal/controller/metrics and pkg/metrics/workqueue.go), so dashboards and alerts
 * written for Go operators work unchanged.
 */

/** Values of the `result` label of controller_runtime_reconcile_total. */
export const reconcileResults = ['success', 'error', 'requeue', 'requeue_after'] as const;
export type ReconcileResultLabel = (typeof reconcileResults)[number];

const reconcileTimeBuckets = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25,
  1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** prometheus.ExponentialBuckets(10e-9, 10, 12): 10 ns .. 1000 s. */
const workQueueBuckets = Array.from({ length: 12 }, (_, i) => 1e-8 * 10 ** i);

/** What a work queue reports; the queue calls these, the metrics decide where it goes. */
export interface WorkQueueMetricsSink {
  added(): void;
  depth(items: number): void;
  /** Seconds between an add and the get that handed the key to a worker. */
  queued(seconds: number): void;
  /** Seconds between get and done. */
  worked(seconds: number): void;
  retried(): void;
  /** Registers the queue's view of work in progress, read at scrape time. */
  inFlight(stats: () => InFlightStats): void;
}

export interface InFlightStats {
  /** Sum over keys being processed of how long each has been processed so far. */
  unfinishedSeconds: number;
  /** How long the oldest key being processed has been processed. */
  longestSeconds: number;
}

export interface RuntimeMetrics {
  readonly registry: Registry;
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly terminalReconcileErrors: Counter<'controller'>;
  readonly reconcileTime: Histogram<'controller'>;
  readonly maxConcurrentReconciles: Gauge<'controller'>;
  readonly activeWorkers: Gauge<'controller'>;
  readonly leaderElectionMasterStatus: Gauge<'name'>;
  /** The sink for one queue; controller-runtime labels queue metrics with name = controller = the controller's name. */
  workQueue(name: string): WorkQueueMetricsSink;
  /** Watches ended, by informer and why (kube/informer.ts WatchEndReason: closed is the normal end). */
  readonly informerWatchEnds: Counter<'informer' | 'reason'>;
  /** Registers an informer's cache size, read at scrape time. */
  informerObjects(informer: string, size: () => number): void;
}

export interface RuntimeMetricsOptions {
  /** A fresh Registry when absent, so tests never share state. */
  registry?: Registry;
  /** Process and Node.js runtime metrics (prom-client defaults); on unless false. */
  defaultMetrics?: boolean;
}

export function createRuntimeMetrics(options: RuntimeMetricsOptions = {}): RuntimeMetrics {
  const registry = options.registry ?? new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  // One series: which build this replica runs (Prometheus's and kube-state-metrics' convention).
  new Gauge({
    name: 'gracefulshutdown_build_info',
    help: 'Always 1: the version and source revision of the operator build, and the Node.js version it runs on',
    labelNames: ['version', 'revision', 'nodejs_version'] as const,
    registers,
  }).set({ version: BUILD.version, revision: BUILD.revision ?? '', nodejs_version: process.version }, 1);
  const reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'] as const,
    registers,
  });
  const reconcileErrors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const terminalReconcileErrors = new Counter({
    name: 'controller_runtime_terminal_reconcile_errors_total',
    help: 'Total number of terminal reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'] as const,
    buckets: reconcileTimeBuckets,
    registers,
  });
  const maxConcurrentReconciles = new Gauge({
    name: 'controller_runtime_max_concurrent_reconciles',
    help: 'Maximum number of concurrent reconciles per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const activeWorkers = new Gauge({
    name: 'controller_runtime_active_workers',
    help: 'Number of currently used workers per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const leaderElectionMasterStatus = new Gauge({
    name: 'leader_election_master_status',
    help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. name is the string used to identify the lease.',
    labelNames: ['name'] as const,
    registers,
  });

  const depth = new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue by workqueue and priority',
    labelNames: ['name', 'controller', 'priority'] as const,
    registers,
  });
  const adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames: ['name', 'controller'] as const,
    registers,
  });
  const queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['name', 'controller'] as const,
    buckets: workQueueBuckets,
    registers,
  });
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes.',
    labelNames: ['name', 'controller'] as const,
    buckets: workQueueBuckets,
    registers,
  });
  const retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames: ['name', 'controller'] as const,
    registers,
  });

  const informerWatchEnds = new Counter({
    name: 'gracefulshutdown_informer_watch_ends_total',
    help: 'Watches of the informer caches that ended, by why: closed (the server timeout, resumed without a list), expired (410, listed again), watchdog (silent too long, listed again), error, stopped',
    labelNames: ['informer', 'reason'] as const,
    registers,
  });
  const cacheSizes = new Map<string, () => number>();
  new Gauge({
    name: 'gracefulshutdown_informer_objects',
    help: 'Objects in each informer cache',
    labelNames: ['informer'] as const,
    registers,
    collect() {
      for (const [informer, size] of cacheSizes) this.set({ informer }, size());
    },
  });

  // client-go refreshes these two every 500 ms; reading the queues at scrape time is simpler and exact.
  const inFlightByQueue = new Map<string, () => InFlightStats>();
  new Gauge({
    name: 'workqueue_unfinished_work_seconds',
    help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
    labelNames: ['name', 'controller'] as const,
    registers,
    collect() {
      for (const [name, stats] of inFlightByQueue)
        this.set({ name, controller: name }, stats().unfinishedSeconds);
    },
  });
  new Gauge({
    name: 'workqueue_longest_running_processor_seconds',
    help: 'How many seconds has the longest running processor for workqueue been running.',
    labelNames: ['name', 'controller'] as const,
    registers,
    collect() {
      for (const [name, stats] of inFlightByQueue)
        this.set({ name, controller: name }, stats().longestSeconds);
    },
  });

  function workQueue(name: string): WorkQueueMetricsSink {
    const labels = { name, controller: name };
    // Present from the start, as in Go where WithLabelValues creates the series.
    depth.set({ ...labels, priority: '' }, 0);
    adds.inc(labels, 0);
    retries.inc(labels, 0);
    queueDuration.zero(labels);
    workDuration.zero(labels);
    return {
      added: () => adds.inc(labels),
      depth: (items) => depth.set({ ...labels, priority: '' }, items),
      queued: (seconds) => queueDuration.observe(labels, seconds),
      worked: (seconds) => workDuration.observe(labels, seconds),
      retried: () => retries.inc(labels),
      inFlight: (stats) => {
        inFlightByQueue.set(name, stats);
      },
    };
  }

  return {
    registry,
    reconcileTotal,
    reconcileErrors,
    terminalReconcileErrors,
    reconcileTime,
    maxConcurrentReconciles,
    activeWorkers,
    leaderElectionMasterStatus,
    workQueue,
    informerWatchEnds,
    informerObjects: (informer, size) => {
      cacheSizes.set(informer, size);
    },
  };
}
