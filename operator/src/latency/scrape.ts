// The Scrape latency source, for clusters without Prometheus: the operator reads each pod's own
// metrics endpoint, keeps the request-duration histogram's cumulative buckets per pod, and
// computes the percentile over the window from the per-pod increases (bucketDelta, counter
// resets handled), summed across pods (mergeBuckets) — what
// histogram_quantile(q, sum by (le) (increase(metric_bucket[window]))) would answer, without
// Prometheus's extrapolation: `samples` is a count of real requests.
//
// Window and baseline. Each pod keeps timestamped snapshots. Over a window W ending now, a pod
// contributes the increase from its baseline to its newest snapshot, where the baseline is the
// newest snapshot taken at or before the window start (as rate() wants a point at or before
// the start of its range), or the pod's first snapshot when it has none that old (the pod is
// younger than the window, or was first scraped inside it). The increase is summed over
// consecutive snapshots, so a counter reset between two of them loses nothing before it. So the
// window is never under-covered and is over-covered by at most one refresh interval (or one
// thinned gap, see below); with a refresh interval longer than the window, one interval. A pod
// scraped only once has no increase yet. A pod that is gone (or stops answering) still counts
// while its newest snapshot lies inside the window, and is forgotten after.
//
// Memory. Snapshots older than the baseline are dropped on every scrape. A pod keeps at most
// `maxSnapshotsPerPod` (MAX_SNAPSHOTS_PER_POD): past that the interior snapshot whose removal
// leaves the smallest gap is dropped, so the kept ones stay spread over the window and the
// baseline over-covers it by about window / 60 at most. Bucket bounds are shared between
// snapshots of one pod, counts are a Float64Array: about 300 bytes per snapshot for
// demo-service's 17 buckets, at most about 3.3 KiB (MAX_BUCKET_BOUNDS, bounds not shared).
// Pods (and workloads) with nothing inside their window are forgotten on the next observe().
//
// A pod's /metrics is a tenant's text, read on the leader's event loop: `exposition.ts` reads it
// as it streams in, bounded in bytes, lines, line length, bounds and label sets, yielding to the
// event loop as it goes; a pod past a bound is refused for that scrape, never half-read. Pods on
// the host's network are not scraped (their address is the node's, and so are their ports), nor
// a port no container of the pod declares.
import type { V1Container, V1ContainerPort, V1LabelSelector, V1Pod } from '@kubernetes/client-node';
import type { LabelSelector, ObservedLatencyPolicy } from '../api/policy.ts';
import { labelSelectorMatches } from '../policy/match.ts';
import type { LatencyObservation } from '../policy/types.ts';
import { podUrl } from '../util/pod-url.ts';
import { parsePrometheusDuration } from './duration.ts';
import { DEFAULT_EXPOSITION_LIMITS, type ExpositionLimits, readHistogram } from './exposition.ts';
import { type Bucket, bucketDelta, bucketQuantile, mergeBuckets } from './histogram.ts';
import { type HistogramSpec, histogramSpecs, triedAs } from './presets.ts';
import type { LatencySource, Workload } from './source.ts';
import { secondsPerUnit } from './unit.ts';

export const DEFAULT_SCRAPE_PORT = 'metrics';
export const DEFAULT_SCRAPE_PATH = '/metrics';
const DEFAULT_CONCURRENCY = 4;
/**
 * Snapshots kept per pod. A 10m window at the default 30 s refresh needs 21; only longer
 * windows (or faster refreshes) need more, and thinning them to 60 over-covers the window by
 * about window / 60 (1 min of a 1 h window), never under-covers it. At MAX_BUCKET_BOUNDS a pod
 * then holds at most about 200 KiB of snapshots, about 20 KiB at demo-service's 17 buckets.
 */
export const MAX_SNAPSHOTS_PER_POD = 60;
/** Failures quoted in an unavailable observation's reason; the rest are counted. */
const MAX_REASONS = 3;

export interface ScrapeSourceOptions {
  /** The pods of a namespace matching a selector (the operator's pod cache). Filtered again here. */
  pods: (namespace: string, selector: V1LabelSelector) => V1Pod[];
  /** Per pod request, connection to end of body. */
  timeoutMs: number;
  now?: () => number;
  fetch?: typeof fetch;
  /** Pods of one workload scraped at a time. Default 4. */
  concurrency?: number;
  /** Snapshots kept per pod, at least 3. Default MAX_SNAPSHOTS_PER_POD. */
  maxSnapshotsPerPod?: number;
  /** Bounds on what one scrape of a pod may hold; past one the pod is refused. Default exposition.ts's. */
  limits?: Partial<ExpositionLimits>;
}

export interface PodScrapeError {
  pod: string;
  reason: string;
}

/** What the last observe() of a workload did, for metrics and logs. */
export interface ScrapeStats {
  /** When it ended, in ms (the `now` clock). */
  at: number;
  /** Running pods with an IP that the selector matched. */
  pods: number;
  /** Pods that answered with a parseable exposition. */
  answered: number;
  /** One entry per pod that did not. */
  errors: PodScrapeError[];
}

interface Snapshot {
  at: number;
  /** Sorted bucket bounds; the same array for consecutive snapshots with the same bounds. */
  les: readonly number[];
  counts: Float64Array;
}

interface PodHistory {
  name: string;
  snapshots: Snapshot[];
}

interface WorkloadState {
  windowMs: number;
  lastObserved: number;
  /** By pod UID. */
  pods: Map<string, PodHistory>;
}

type PodResult =
  /** Per histogram asked for, its cumulative counts by bound. */
  | { ok: true; uid: string; name: string; histograms: Map<number, number>[] }
  | { ok: false; error: PodScrapeError };

export class ScrapeSource implements LatencySource {
  readonly #pods: ScrapeSourceOptions['pods'];
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #fetch: typeof fetch;
  readonly #concurrency: number;
  readonly #maxSnapshots: number;
  readonly #limits: Readonly<ExpositionLimits>;
  /** By `namespace/name` and metric. */
  readonly #workloads = new Map<string, WorkloadState>();
  /** The last observe() of each workload, by `namespace/name`: forgotten a window after it. */
  readonly #stats = new Map<string, ScrapeStats & { windowMs: number }>();

  constructor(options: ScrapeSourceOptions) {
    this.#pods = options.pods;
    this.#timeoutMs = options.timeoutMs;
    this.#now = options.now ?? Date.now;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
    this.#maxSnapshots = Math.max(3, options.maxSnapshotsPerPod ?? MAX_SNAPSHOTS_PER_POD);
    this.#limits = { ...DEFAULT_EXPOSITION_LIMITS, ...options.limits };
  }

  async observe(
    workload: Workload,
    policy: ObservedLatencyPolicy,
    signal?: AbortSignal,
  ): Promise<LatencyObservation> {
    try {
      return await this.#observe(workload, policy, signal);
    } catch (err) {
      return { known: false, unavailable: true, source: 'Scrape', reason: `scrape failed: ${message(err)}` };
    }
  }

  /** The last observe() of this workload, or undefined when none is remembered. */
  lastScrape(namespace: string, name: string): ScrapeStats | undefined {
    const stats = this.#stats.get(`${namespace}/${name}`);
    if (!stats) return undefined;
    const { windowMs: _, ...rest } = stats;
    return rest;
  }

  /** What is held in memory, for a gauge. */
  size(): { workloads: number; pods: number; snapshots: number } {
    let pods = 0;
    let snapshots = 0;
    for (const state of this.#workloads.values()) {
      pods += state.pods.size;
      for (const history of state.pods.values()) snapshots += history.snapshots.length;
    }
    return { workloads: this.#workloads.size, pods, snapshots };
  }

  async #observe(
    workload: Workload,
    policy: ObservedLatencyPolicy,
    signal: AbortSignal | undefined,
  ): Promise<LatencyObservation> {
    let windowMs: number;
    try {
      windowMs = parsePrometheusDuration(policy.window);
    } catch (err) {
      return unknown(`observedLatency.window: ${message(err)}`);
    }
    const selector = workloadSelector(workload);
    if (typeof selector === 'string') return unknown(selector);

    // Scrape reads the workload's own pods: a proxy's histogram is not there.
    const specs = histogramSpecs(policy).filter((spec) => !spec.atProxy);
    if (specs.length === 0)
      return unknown(`preset ${policy.preset} is measured at a proxy: only source Prometheus reads it`);
    const port = policy.scrape?.port ?? DEFAULT_SCRAPE_PORT;
    const path = policy.scrape?.path ?? DEFAULT_SCRAPE_PATH;
    const excluded = new Set([path, ...(workload.probePaths ?? [])]);
    const targets = this.#pods(workload.namespace, workload.selector ?? selector)
      .filter((pod) => labelSelectorMatches(selector, pod.metadata?.labels))
      .filter((pod) => pod.status?.phase === 'Running' && Boolean(pod.status.podIP));

    const results = await mapLimit(targets, this.#concurrency, (pod) =>
      this.#scrapePod(pod, port, path, excluded, specs, signal),
    );

    const now = this.#now();
    this.#sweep(now);
    const workloadKey = `${workload.namespace}/${workload.name}`;
    const windowStart = now - windowMs;
    const errors: PodScrapeError[] = [];
    const answered = results.filter((r): r is Extract<PodResult, { ok: true }> => {
      if (!r.ok) errors.push(r.error);
      return r.ok;
    });
    this.#stats.set(workloadKey, {
      at: now,
      windowMs,
      pods: targets.length,
      answered: answered.length,
      errors,
    });

    if (targets.length > 0 && answered.length === 0) {
      const quoted = errors
        .slice(0, MAX_REASONS)
        .map((e) => `${e.pod}: ${e.reason}`)
        .join('; ');
      const more = errors.length > MAX_REASONS ? ` (and ${errors.length - MAX_REASONS} more)` : '';
      return {
        known: false,
        unavailable: true,
        source: 'Scrape',
        reason: `none of ${targets.length} pods answered: ${quoted}${more}`,
      };
    }

    // Each histogram asked for keeps its own snapshots. With one (a preset, or the policy's
    // metric) every answer is kept, empty or not; with Auto, a preset's only while a pod exports
    // it (the first such wins), so a histogram the pods stopped exporting is forgotten after a
    // window instead of holding the choice.
    let chosen: { spec: HistogramSpec; state: WorkloadState } | undefined;
    for (const [index, spec] of specs.entries()) {
      const key = `${workloadKey}\u0000${spec.metric}`;
      let state = this.#workloads.get(key);
      const seen = answered.some((r) => (r.histograms[index]?.size ?? 0) > 0);
      if (specs.length > 1 && !seen) continue;
      if (!state) {
        state = { windowMs, lastObserved: now, pods: new Map() };
        this.#workloads.set(key, state);
      }
      state.windowMs = windowMs;
      state.lastObserved = now;
      for (const result of answered) {
        let history = state.pods.get(result.uid);
        if (!history) {
          history = { name: result.name, snapshots: [] };
          state.pods.set(result.uid, history);
        }
        const buckets = result.histograms[index] ?? new Map<number, number>();
        addSnapshot(
          history,
          toSnapshot(now, buckets, history.snapshots.at(-1)),
          windowStart,
          this.#maxSnapshots,
        );
      }
      chosen ??= { spec, state };
    }
    if (!chosen) {
      if (targets.length === 0) return unknown("no Running pod with an IP matches the Deployment's selector");
      const tried = specs.map((spec) => `${spec.preset} (${spec.metric})`).join(', ');
      return unknown(
        `${triedAs(specs)}: no histogram asked for on ${answered.length} pods; asked for ${tried}`,
        0,
      );
    }
    return estimate(chosen.spec, chosen.state, policy, targets.length, windowStart);
  }

  /** Forgets pods whose newest snapshot left their window, then workloads with nothing left. */
  #sweep(now: number): void {
    for (const [key, state] of this.#workloads) {
      const windowStart = now - state.windowMs;
      for (const [uid, history] of state.pods) {
        const newest = history.snapshots.at(-1);
        if (!newest || newest.at <= windowStart) state.pods.delete(uid);
      }
      if (state.pods.size === 0 && state.lastObserved <= windowStart) this.#workloads.delete(key);
    }
    for (const [key, stats] of this.#stats) if (stats.at <= now - stats.windowMs) this.#stats.delete(key);
  }

  async #scrapePod(
    pod: V1Pod,
    port: number | string,
    path: string,
    /** Series of these paths are left out: the scrape path's (its scrapes), the probes'. */
    excluded: ReadonlySet<string>,
    specs: readonly HistogramSpec[],
    signal: AbortSignal | undefined,
  ): Promise<PodResult> {
    const name = pod.metadata?.name ?? '';
    const uid = pod.metadata?.uid || `${pod.metadata?.namespace ?? ''}/${name}`;
    const fail = (reason: string): PodResult => ({ ok: false, error: { pod: name, reason } });
    if (pod.spec?.hostNetwork === true) {
      return fail("not scraped: the pod is on the host's network, its address and ports are the node's");
    }
    const portNumber = resolvePort(pod, port);
    if (portNumber === undefined) {
      return fail(
        typeof port === 'number'
          ? `not scraped: no container of the pod declares TCP port ${port}`
          : `not scraped: no container of the pod declares a TCP port named "${port}"`,
      );
    }
    const url = podUrl(pod.status?.podIP ?? '', portNumber, path);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      if (signal?.aborted) return fail('aborted');
      const response = await this.#fetch(url, {
        signal: combined,
        redirect: 'error',
        headers: { accept: 'text/plain;version=0.0.4;q=1,*/*;q=0.1' },
      });
      if (!response.ok) {
        await response.body?.cancel().catch(() => {});
        return fail(`GET ${url}: HTTP ${response.status}`);
      }
      const read = await readHistogram(response.body, specs, excluded, this.#limits);
      if (!read.ok) return fail(`GET ${url}: ${read.reason}`);
      return { ok: true, uid, name, histograms: read.histograms };
    } catch (err) {
      if (signal?.aborted) return fail('aborted');
      if (timeout.aborted) return fail(`GET ${url}: no answer within ${this.#timeoutMs} ms`);
      return fail(`GET ${url}: ${message(err)}`);
    }
  }
}

// --- estimate ------------------------------------------------------------------------------------

function unknown(reason: string, samples?: number): LatencyObservation {
  return samples === undefined
    ? { known: false, source: 'Scrape', reason }
    : { known: false, source: 'Scrape', reason, samples };
}

/** The percentile over the window from every pod remembered whose newest snapshot is in it. */
function estimate(
  spec: HistogramSpec,
  state: WorkloadState,
  policy: ObservedLatencyPolicy,
  targets: number,
  windowStart: number,
): LatencyObservation {
  const increases: Bucket[][] = [];
  let firstScrapes = 0;
  for (const history of state.pods.values()) {
    pruneBefore(history, windowStart);
    const newest = history.snapshots.at(-1);
    if (!newest || newest.at <= windowStart) continue;
    if (history.snapshots.length < 2) {
      firstScrapes++;
      continue;
    }
    increases.push(increase(history.snapshots));
  }
  if (increases.length === 0) {
    if (targets === 0) return unknown("no Running pod with an IP matches the Deployment's selector");
    return unknown(`first scrape of ${firstScrapes} pods: latency needs two scrapes inside the window`, 0);
  }
  const merged = mergeBuckets(increases);
  const quantile = bucketQuantile(policy.percentile, merged);
  const bucket = `${spec.metric}_bucket`;
  if (!quantile.ok) {
    const pods = `${increases.length} pods`;
    switch (quantile.reason) {
      case 'NoObservations':
        return unknown(`no requests in ${policy.window} on ${pods}`, 0);
      case 'NoInfBucket':
        return merged.length === 0
          ? unknown(`no ${bucket} series on ${pods}${spec.whenAbsent ? ` (${spec.whenAbsent})` : ''}`, 0)
          : unknown(`${bucket} on ${pods} has no le="+Inf" bucket`);
      case 'TooFewBuckets':
        return unknown(`${bucket} on ${pods} has only the +Inf bucket`, quantile.observations);
    }
  }
  return {
    known: true,
    source: 'Scrape',
    seconds: quantile.value * secondsPerUnit(spec.unit),
    samples: quantile.observations,
    percentile: policy.percentile,
    window: policy.window,
    ...(quantile.atLeast ? { atLeast: true } : {}),
    ...(spec.preset ? { preset: spec.preset } : {}),
    ...(spec.caveat ? { caveat: spec.caveat } : {}),
  };
}

// --- selection -----------------------------------------------------------------------------------

const OPERATORS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);

/** The Deployment's selector in the policy module's shape, or why it cannot be used. */
function workloadSelector(workload: Workload): LabelSelector | string {
  const source: V1LabelSelector = workload.selector ?? { matchLabels: workload.podLabels };
  const matchExpressions: NonNullable<LabelSelector['matchExpressions']> = [];
  for (const requirement of source.matchExpressions ?? []) {
    if (!OPERATORS.has(requirement.operator)) {
      return `the Deployment's selector has an unknown operator "${requirement.operator}"`;
    }
    matchExpressions.push({
      key: requirement.key,
      operator: requirement.operator as 'In' | 'NotIn' | 'Exists' | 'DoesNotExist',
      ...(requirement.values ? { values: requirement.values } : {}),
    });
  }
  const matchLabels = source.matchLabels ?? {};
  // An empty selector matches every pod of the namespace: never what a Deployment means.
  if (Object.keys(matchLabels).length === 0 && matchExpressions.length === 0) {
    return "the Deployment's selector is empty";
  }
  return { matchLabels, matchExpressions };
}

/**
 * The TCP port a container of the pod (sidecars included) declares with that number or name;
 * undefined when none does. Only declared ports are scraped: the operator asks what the pod
 * says it serves, not whatever else listens in its network namespace.
 */
export function resolvePort(pod: V1Pod, port: number | string): number | undefined {
  const containers: V1Container[] = [
    ...(pod.spec?.containers ?? []),
    ...(pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always'),
  ];
  const matches = (p: V1ContainerPort) =>
    (p.protocol ?? 'TCP') === 'TCP' &&
    (typeof port === 'number' ? p.containerPort === port : p.name === port);
  for (const container of containers) {
    const found = container.ports?.find(matches);
    if (found) return found.containerPort;
  }
  return undefined;
}

// --- snapshots -----------------------------------------------------------------------------------

function toSnapshot(at: number, buckets: Map<number, number>, previous: Snapshot | undefined): Snapshot {
  const sorted = [...buckets.keys()].sort((a, b) => a - b);
  const same =
    previous !== undefined &&
    previous.les.length === sorted.length &&
    previous.les.every((le, i) => le === sorted[i]);
  const les = same ? previous.les : sorted;
  return { at, les, counts: Float64Array.from(les, (le) => buckets.get(le) ?? 0) };
}

function toBuckets(snapshot: Snapshot): Bucket[] {
  return snapshot.les.map((le, i) => ({ le, count: snapshot.counts[i] ?? 0 }));
}

/**
 * Drops the snapshots older than the baseline: the newest one at or before the window start is
 * kept (the point an increase over the window starts from), everything before it goes.
 */
function pruneBefore(history: PodHistory, windowStart: number): void {
  const s = history.snapshots;
  let baseline = -1;
  for (let i = 0; i < s.length && (s[i] as Snapshot).at <= windowStart; i++) baseline = i;
  if (baseline > 0) s.splice(0, baseline);
}

/** Inserts in time order, prunes, then thins to `max` by dropping the interior point closest to its neighbours. */
function addSnapshot(history: PodHistory, snapshot: Snapshot, windowStart: number, max: number): void {
  const s = history.snapshots;
  let at = s.length;
  while (at > 0 && (s[at - 1] as Snapshot).at > snapshot.at) at--;
  s.splice(at, 0, snapshot);
  pruneBefore(history, windowStart);
  while (s.length > max) {
    let drop = 1;
    let smallest = Number.POSITIVE_INFINITY;
    for (let i = 1; i < s.length - 1; i++) {
      const gap = (s[i + 1] as Snapshot).at - (s[i - 1] as Snapshot).at;
      if (gap < smallest) {
        smallest = gap;
        drop = i;
      }
    }
    s.splice(drop, 1);
  }
}

/** Observations from the first snapshot to the last, summed pairwise so each reset is caught. */
function increase(snapshots: readonly Snapshot[]): Bucket[] {
  const steps: Bucket[][] = [];
  for (let i = 1; i < snapshots.length; i++) {
    steps.push(bucketDelta(toBuckets(snapshots[i - 1] as Snapshot), toBuckets(snapshots[i] as Snapshot)));
  }
  return mergeBuckets(steps);
}

// --- helpers -------------------------------------------------------------------------------------

/** Runs `fn` over `items`, at most `limit` at a time, results in item order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function message(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const code = (cause as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string') return `${err.message} (${code})`;
    if (cause instanceof Error) return `${err.message}: ${cause.message}`;
    return err.message;
  }
  return String(err);
}
