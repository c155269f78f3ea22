// Probe checks (readinessProbe.verification Verify) outside the reconcile workers. A check asks
// a running pod of the Deployment the kubelet's question and may take up to 5 s per pod tried:
// run inside a worker, a tenant's slow or silent pods could keep every worker of the Deployment
// controller busy and hold back everybody's reconciles. The Deployment controller requests the
// checks and returns; they run here, at most `total` at once and at most `perNamespace` for one
// namespace (namespaces take turns), and when a Deployment's checks are done its key is queued
// again: the next reconcile plans with the verdicts (probes/verifier.ts keeps them).
import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { namespaceOf } from '../policy/budget.ts';
import type { ProbeVerifier } from '../probes/verifier.ts';
import type { Runnable } from '../runtime/manager.ts';
import { Trigger } from '../runtime/trigger.ts';

export const PROBE_CHECKS = 'probe-checks';

/** The probes of one Deployment to check on its pods. */
export interface ProbeCheckRequest {
  /** The Deployment's key (namespace/name). */
  key: string;
  deployment: V1Deployment;
  pods: readonly V1Pod[];
  probes: readonly { container: string; path: string; port: number | string }[];
  /** Joining a template rollout: young pods are all there is, they are asked as they are. */
  joining: boolean;
}

export interface ProbeChecksOptions {
  verifier: ProbeVerifier;
  /** Checks running at once, in all (default 8). */
  total?: number;
  /** Checks running at once for one namespace (default 2). */
  perNamespace?: number;
  /** Running and queued Deployments, on every change (a gauge). */
  onCounts?: (counts: { running: number; queued: number }) => void;
  logger?: Logger;
}

export class ProbeChecks implements Runnable {
  readonly name = PROBE_CHECKS;
  readonly needLeaderElection = true;
  /** A Deployment's checks are done; `pending`: its pods had only just started. */
  readonly done = new Trigger<[key: string, pending: boolean]>();
  readonly #options: ProbeChecksOptions;
  readonly #total: number;
  readonly #perNamespace: number;
  readonly #log: Logger;
  /** Per namespace, the requests waiting, oldest first; namespaces in turn order. */
  readonly #queued = new Map<string, ProbeCheckRequest[]>();
  /** Keys queued or running: a key is checked once at a time. */
  readonly #keys = new Set<string>();
  readonly #runningIn = new Map<string, number>();
  #running = 0;
  #signal: AbortSignal | undefined;
  readonly #idle: (() => void)[] = [];

  constructor(options: ProbeChecksOptions) {
    this.#options = options;
    this.#total = Math.max(1, options.total ?? 8);
    this.#perNamespace = Math.max(1, options.perNamespace ?? 2);
    this.#log = (options.logger ?? silentLogger()).child({ controller: PROBE_CHECKS });
  }

  /**
   * Queues the Deployment's checks unless they are queued or running already; never waits. Not
   * running (not the leader, or stopping): nothing is queued, false.
   */
  request(request: ProbeCheckRequest): boolean {
    if (this.#signal === undefined || this.#signal.aborted) return false;
    if (this.#keys.has(request.key)) return true;
    this.#keys.add(request.key);
    const namespace = namespaceOf(request.key);
    const waiting = this.#queued.get(namespace) ?? [];
    waiting.push(request);
    this.#queued.set(namespace, waiting);
    this.#pump();
    return true;
  }

  /** Deployments whose checks are queued or running. */
  get pending(): number {
    return this.#keys.size;
  }

  /** Resolves once nothing is queued or running (tests). */
  idle(): Promise<void> {
    if (this.#keys.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    // Queued checks are dropped; running ones end with the signal (verify rejects).
    for (const waiting of this.#queued.values())
      for (const request of waiting) this.#keys.delete(request.key);
    this.#queued.clear();
    this.#counts();
  }

  #pump(): void {
    while (this.#running < this.#total) {
      const request = this.#next();
      if (request === undefined) break;
      void this.#check(request);
    }
    this.#counts();
  }

  /** The oldest request of the first namespace (in turn order) below its limit; that namespace goes last. */
  #next(): ProbeCheckRequest | undefined {
    for (const [namespace, waiting] of this.#queued) {
      if ((this.#runningIn.get(namespace) ?? 0) >= this.#perNamespace) continue;
      const request = waiting.shift();
      this.#queued.delete(namespace);
      if (waiting.length > 0) this.#queued.set(namespace, waiting);
      return request;
    }
    return undefined;
  }

  async #check(request: ProbeCheckRequest): Promise<void> {
    const namespace = namespaceOf(request.key);
    this.#running++;
    this.#runningIn.set(namespace, (this.#runningIn.get(namespace) ?? 0) + 1);
    let pending = false;
    let aborted = false;
    try {
      for (const probe of request.probes) {
        const verdict = await this.#options.verifier.verify({
          deployment: request.deployment,
          pods: request.pods,
          ...probe,
          ...(request.joining ? { settleMs: 0 } : {}),
          ...(this.#signal ? { signal: this.#signal } : {}),
        });
        if (verdict.state === 'Pending') pending = true;
        const level = verdict.state === 'Pending' ? 'debug' : 'info';
        this.#log[level](
          { key: request.key, container: probe.container, verdict },
          'readiness probe checked',
        );
      }
    } catch (err) {
      aborted = this.#signal?.aborted ?? false;
      if (!aborted) this.#log.warn({ err, key: request.key }, 'probe check failed');
    } finally {
      this.#running--;
      const left = (this.#runningIn.get(namespace) ?? 1) - 1;
      if (left > 0) this.#runningIn.set(namespace, left);
      else this.#runningIn.delete(namespace);
      this.#keys.delete(request.key);
    }
    if (!aborted) this.done.emit(request.key, pending);
    this.#pump();
    if (this.#keys.size === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  #counts(): void {
    let queued = 0;
    for (const waiting of this.#queued.values()) queued += waiting.length;
    this.#options.onCounts?.({ running: this.#running, queued });
  }
}
