// The leader's latency refresher (a manager Runnable): on an interval, asks the latency source
// each policy names about the Deployments it governs — in one grouped request per policy (and
// chunk) where the source can (Prometheus), else one request per Deployment — with bounded
// concurrency, one request per Deployment at a time, each with a timeout; records the answers in
// the estimate cache and wakes a Deployment (and its policy's status) only when its published
// estimate changed. Its cost grows with the policies, not the Deployments: targets come from the
// view's selection index. Estimates of Deployments gone or no longer governed are dropped.
import type { V1Deployment } from '@kubernetes/client-node';
import type { LatencySource as SourceName } from '../api/policy.ts';
import type { Logger } from '../log.ts';
import { deploymentKey, matchDeployment } from '../policy/match.ts';
import { type CachedService, serviceSelects } from '../policy/protocols.ts';
import type { LatencyObservation, ValidPolicy } from '../policy/types.ts';
import type { Runnable } from '../runtime/manager.ts';
import { Trigger } from '../runtime/trigger.ts';
import { parsePrometheusDuration } from './duration.ts';
import type { EstimateCache } from './estimates.ts';
import type { LatencySource, Workload } from './source.ts';

export const LATENCY_REFRESHER = 'latency-refresher';

/** What the refresher reads of the cluster (the controllers' ClusterView has all of it). */
export interface RefresherView {
  policies(): ValidPolicy[];
  /** The cached Services of a namespace. */
  servicesIn(namespace: string): CachedService[];
  /** The Deployments a policy selects (the view's index). */
  selectedBy(policy: string): Iterable<V1Deployment>;
  namespaceLabels(namespace: string | undefined): Record<string, string> | undefined;
}

export interface RefreshMetrics {
  /** One workload's answer: its outcome (known, unknown, unavailable). */
  observed(policy: string, source: SourceName, outcome: 'known' | 'unknown' | 'unavailable'): void;
  /** One source request ended (for one workload, or for many at once). */
  requested(source: SourceName, seconds: number): void;
}

export interface RefresherOptions {
  view: RefresherView;
  sources: Partial<Record<Exclude<SourceName, 'None'>, LatencySource>>;
  cache: EstimateCache;
  intervalMs: number;
  timeoutMs: number;
  concurrency: number;
  logger: Logger;
  metrics?: RefreshMetrics;
}

interface Target {
  key: string;
  workload: Workload;
  policy: ValidPolicy;
  source: LatencySource;
  sourceName: Exclude<SourceName, 'None'>;
}

/** The httpGet paths of its containers' readiness, liveness and startup probes, once each. */
export function probePaths(deployment: V1Deployment): string[] {
  const paths = new Set<string>();
  for (const c of deployment.spec?.template?.spec?.containers ?? [])
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      const path = probe?.httpGet?.path;
      if (path) paths.add(path);
    }
  return [...paths];
}

/** The Deployments to observe now: those a policy whose source is not None wins. */
export function refreshTargets(view: RefresherView, sources: RefresherOptions['sources']): Target[] {
  const policies = view.policies();
  const targets: Target[] = [];
  for (const policy of policies) {
    const sourceName = policy.spec.observedLatency.source;
    if (sourceName === 'None') continue;
    const source = sources[sourceName];
    if (!source) continue;
    for (const deployment of view.selectedBy(policy.name)) {
      const match = matchDeployment(
        policies,
        deployment,
        view.namespaceLabels(deployment.metadata?.namespace),
      );
      if (match.kind !== 'Matched' || match.policy.name !== policy.name) continue;
      targets.push({
        key: deploymentKey(deployment),
        policy,
        source,
        sourceName,
        workload: {
          namespace: deployment.metadata?.namespace ?? '',
          name: deployment.metadata?.name ?? '',
          podLabels: deployment.spec?.selector?.matchLabels ?? {},
          ...(deployment.spec?.selector ? { selector: deployment.spec.selector } : {}),
          probePaths: probePaths(deployment),
          services: view
            .servicesIn(deployment.metadata?.namespace ?? '')
            .filter((s) => serviceSelects(s, deployment.spec?.template?.metadata?.labels))
            .map((s) => s.name)
            .sort(),
        },
      });
    }
  }
  return targets;
}

/** One request: a policy's targets its source answers at once, or a single target. */
type Task = { kind: 'many'; targets: Target[] } | { kind: 'one'; target: Target };

/** Groups each policy's targets whose source can answer many at once; the rest one by one. */
function tasksFor(targets: Target[]): Task[] {
  const grouped = new Map<string, Target[]>();
  const tasks: Task[] = [];
  for (const target of targets) {
    if (target.source.observeMany === undefined) {
      tasks.push({ kind: 'one', target });
      continue;
    }
    const list = grouped.get(target.policy.name) ?? [];
    list.push(target);
    grouped.set(target.policy.name, list);
  }
  for (const list of grouped.values()) tasks.unshift({ kind: 'many', targets: list });
  return tasks;
}

export class LatencyRefresher implements Runnable {
  readonly name = LATENCY_REFRESHER;
  readonly #o: RefresherOptions;
  /** The published estimate of a Deployment (key) governed by a policy changed. */
  readonly changed = new Trigger<[deploymentKey: string, policy: string]>();
  readonly #inFlight = new Set<string>();
  /** Ends the current wait between passes (a Deployment has no estimate yet). */
  #wake: (() => void) | undefined;
  #woken = false;

  constructor(options: RefresherOptions) {
    this.#o = options;
  }

  /**
   * Asks for a pass now rather than at the end of the interval: a Deployment a policy with a
   * source just started to govern should not wait a whole interval for its first estimate.
   * Passes never overlap, and a Deployment is asked once at a time.
   */
  nudge(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    const log = this.#o.logger.child({ runnable: this.name });
    log.info(
      { intervalMs: this.#o.intervalMs, concurrency: this.#o.concurrency },
      'refreshing latency estimates',
    );
    while (!signal.aborted) {
      const started = Date.now();
      await this.refreshOnce(signal).catch((err: unknown) => log.error({ err }, 'latency refresh failed'));
      const wait = Math.max(0, this.#o.intervalMs - (Date.now() - started));
      if (this.#woken) {
        this.#woken = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#wake = undefined;
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, wait);
        this.#wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
      this.#woken = false;
    }
  }

  /** One pass over every target, at most `concurrency` requests at a time; resolves when all have ended. */
  async refreshOnce(signal: AbortSignal): Promise<void> {
    const { cache, concurrency } = this.#o;
    const targets = refreshTargets(this.#o.view, this.#o.sources);
    const wanted = new Set(targets.map((t) => t.key));
    for (const key of cache.keys()) if (!wanted.has(key)) cache.delete(key);
    // Single flight: a Deployment whose last request still runs is skipped this round.
    const queue = tasksFor(targets.filter((t) => !this.#inFlight.has(t.key)));
    const worker = async () => {
      for (let task = queue.shift(); task && !signal.aborted; task = queue.shift()) {
        if (task.kind === 'one') await this.#refresh(task.target, signal);
        else
          for (const rest of await this.#refreshMany(task.targets, signal))
            queue.push({ kind: 'one', target: rest });
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
  }

  /** Asks the source about the policy's targets at once; returns those it left unanswered. */
  async #refreshMany(targets: Target[], signal: AbortSignal): Promise<Target[]> {
    const [first] = targets;
    if (!first?.source.observeMany) return targets;
    for (const t of targets) this.#inFlight.add(t.key);
    const started = performance.now();
    try {
      const timeout = AbortSignal.timeout(this.#o.timeoutMs);
      const answers = await first.source
        .observeMany(
          targets.map((t) => t.workload),
          first.policy.spec.observedLatency,
          AbortSignal.any([signal, timeout]),
        )
        .catch(() => new Map<string, LatencyObservation>());
      if (signal.aborted) return [];
      this.#o.metrics?.requested(first.sourceName, (performance.now() - started) / 1000);
      const rest: Target[] = [];
      for (const t of targets) {
        const observation = answers.get(`${t.workload.namespace}/${t.workload.name}`);
        if (observation === undefined) rest.push(t);
        else this.#record(t, observation);
      }
      return rest;
    } finally {
      for (const t of targets) this.#inFlight.delete(t.key);
    }
  }

  async #refresh(t: Target, signal: AbortSignal): Promise<void> {
    this.#inFlight.add(t.key);
    const started = performance.now();
    try {
      const timeout = AbortSignal.timeout(this.#o.timeoutMs);
      const observation = await t.source
        .observe(t.workload, t.policy.spec.observedLatency, AbortSignal.any([signal, timeout]))
        .catch(
          (err: Error): LatencyObservation => ({
            known: false,
            source: t.sourceName,
            unavailable: true,
            reason: timeout.aborted ? `no answer within ${this.#o.timeoutMs} ms` : err.message,
          }),
        );
      if (signal.aborted) return;
      this.#o.metrics?.requested(t.sourceName, (performance.now() - started) / 1000);
      this.#record(t, observation);
    } finally {
      this.#inFlight.delete(t.key);
    }
  }

  /** Publishes one answer; wakes the Deployment and its policy's status when the estimate changed. */
  #record(t: Target, observation: LatencyObservation): void {
    const outcome = observation.known ? 'known' : observation.unavailable ? 'unavailable' : 'unknown';
    this.#o.metrics?.observed(t.policy.name, t.sourceName, outcome);
    const changed = this.#o.cache.update(t.key, observation, {
      stabilizationMs: parsePrometheusDuration(t.policy.spec.observedLatency.stabilizationWindow),
      minSamples: t.policy.spec.observedLatency.minSamples,
    });
    if (changed) this.changed.emit(t.key, t.policy.name);
  }
}
