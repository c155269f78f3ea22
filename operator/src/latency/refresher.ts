// The leader's latency refresher (a manager Runnable): on an interval, asks each Deployment's
// latency source — the one its policy names — with bounded concurrency, one request per
// Deployment at a time, each with a timeout; records the answer in the estimate cache and wakes
// the Deployment (and its policy's status) only when the published estimate changed. Estimates
// of Deployments that are gone or no longer selected by a policy with a source are dropped.
import type { V1Deployment } from '@kubernetes/client-node';
import type { LatencySource as SourceName } from '../api/policy.ts';
import type { Logger } from '../log.ts';
import { deploymentKey, matchDeployment } from '../policy/match.ts';
import type { ValidPolicy } from '../policy/types.ts';
import type { Runnable } from '../runtime/manager.ts';
import { parsePrometheusDuration } from './duration.ts';
import type { EstimateCache } from './estimates.ts';
import type { LatencySource, Workload } from './source.ts';

export const LATENCY_REFRESHER = 'latency-refresher';

/** What the refresher reads of the cluster (the controllers' ClusterView has all of it). */
export interface RefresherView {
  deployments(): V1Deployment[];
  policies(): ValidPolicy[];
  namespaceLabels(namespace: string | undefined): Record<string, string> | undefined;
}

export interface RefreshMetrics {
  /** One source request ended: its outcome (known, unknown, unavailable). */
  observed(
    policy: string,
    source: SourceName,
    outcome: 'known' | 'unknown' | 'unavailable',
    seconds: number,
  ): void;
}

export interface RefresherOptions {
  view: RefresherView;
  sources: Partial<Record<Exclude<SourceName, 'None'>, LatencySource>>;
  cache: EstimateCache;
  intervalMs: number;
  timeoutMs: number;
  concurrency: number;
  /** The published estimate of this Deployment changed: reconcile it and its policy's status. */
  onChange: (deploymentKey: string, policy: string) => void;
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

/** The Deployments to observe now: matched by a policy whose source is not None. */
export function refreshTargets(view: RefresherView, sources: RefresherOptions['sources']): Target[] {
  const policies = view.policies();
  const targets: Target[] = [];
  for (const deployment of view.deployments()) {
    const match = matchDeployment(policies, deployment, view.namespaceLabels(deployment.metadata?.namespace));
    if (match.kind !== 'Matched') continue;
    const sourceName = match.policy.spec.observedLatency.source;
    if (sourceName === 'None') continue;
    const source = sources[sourceName];
    if (!source) continue;
    targets.push({
      key: deploymentKey(deployment),
      policy: match.policy,
      source,
      sourceName,
      workload: {
        namespace: deployment.metadata?.namespace ?? '',
        name: deployment.metadata?.name ?? '',
        podLabels: deployment.spec?.selector?.matchLabels ?? {},
        ...(deployment.spec?.selector ? { selector: deployment.spec.selector } : {}),
      },
    });
  }
  return targets;
}

export class LatencyRefresher implements Runnable {
  readonly name = LATENCY_REFRESHER;
  readonly #o: RefresherOptions;
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

  /** One pass over every target, at most `concurrency` at a time; resolves when all have ended. */
  async refreshOnce(signal: AbortSignal): Promise<void> {
    const { cache, concurrency } = this.#o;
    const targets = refreshTargets(this.#o.view, this.#o.sources);
    const wanted = new Set(targets.map((t) => t.key));
    for (const key of cache.keys()) if (!wanted.has(key)) cache.delete(key);
    // Single flight: a Deployment whose last request still runs is skipped this round.
    const queue = targets.filter((t) => !this.#inFlight.has(t.key));
    const worker = async () => {
      for (let t = queue.shift(); t && !signal.aborted; t = queue.shift()) await this.#refresh(t, signal);
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
  }

  async #refresh(t: Target, signal: AbortSignal): Promise<void> {
    this.#inFlight.add(t.key);
    const started = performance.now();
    try {
      const timeout = AbortSignal.timeout(this.#o.timeoutMs);
      const observation = await t.source
        .observe(t.workload, t.policy.spec.observedLatency, AbortSignal.any([signal, timeout]))
        .catch(
          (err: Error): Awaited<ReturnType<LatencySource['observe']>> => ({
            known: false,
            source: t.sourceName,
            unavailable: true,
            reason: timeout.aborted ? `no answer within ${this.#o.timeoutMs} ms` : err.message,
          }),
        );
      if (signal.aborted) return;
      const outcome = observation.known ? 'known' : observation.unavailable ? 'unavailable' : 'unknown';
      this.#o.metrics?.observed(t.policy.name, t.sourceName, outcome, (performance.now() - started) / 1000);
      const changed = this.#o.cache.update(t.key, observation, {
        stabilizationMs: parsePrometheusDuration(t.policy.spec.observedLatency.stabilizationWindow),
        minSamples: t.policy.spec.observedLatency.minSamples,
      });
      if (changed) this.#o.onChange(t.key, t.policy.name);
    } finally {
      this.#inFlight.delete(t.key);
    }
  }
}
