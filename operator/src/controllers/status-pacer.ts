// How soon a policy's status is computed again after one of its Deployments changed. A status
// pass plans every Deployment the policy selects (about 10 µs each, so 0.1-0.2 s at 10,000):
// while thousands of them change (a cluster-wide rollout, a mass creation), a pass per change
// would keep a core busy. The wait is at least the debounce, and `factor` times the last pass,
// so passes take at most 1/factor of a core per churning policy; status lags by that wait.
export class StatusPacer {
  readonly #lastMs = new Map<string, number>();
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #factor: number;

  constructor(options: { minMs: number; maxMs?: number; factor?: number }) {
    this.#minMs = options.minMs;
    this.#maxMs = Math.max(options.minMs, options.maxMs ?? 30_000);
    this.#factor = options.factor ?? 20;
  }

  /** The wait before the policy's next pass. */
  delay(policy: string): number {
    const last = this.#lastMs.get(policy) ?? 0;
    return Math.min(this.#maxMs, Math.max(this.#minMs, Math.ceil(last * this.#factor)));
  }

  /** A pass of the policy took this long. */
  measured(policy: string, ms: number): void {
    this.#lastMs.set(policy, ms);
  }

  forget(policy: string): void {
    this.#lastMs.delete(policy);
  }
}
