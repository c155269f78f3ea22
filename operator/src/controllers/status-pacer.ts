// How soon a policy's status is computed again after one of its Deployments changed. A status
// pass plans every Deployment the policy selects (about 10 µs each, so 0.1-0.2 s at 10,000):
// while thousands of them change (a cluster-wide rollout, a mass creation), a pass per change
// would keep a core busy. The wait is at least the debounce, and `factor` times the last pass,
// so passes take at most 1/factor of a core per churning policy; status lags by that wait.
// The write is paced too, by how long the apiserver took for the last one: a status of 100
// workloads costs it tens of milliseconds of CPU, and a slow answer means it is busy (a mass
// rollout is exactly then), so a busy apiserver gets fewer status writes, a calm one the debounce.
export class StatusPacer {
  readonly #passMs = new Map<string, number>();
  readonly #writeMs = new Map<string, number>();
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #factor: number;
  readonly #writeFactor: number;

  constructor(options: { minMs: number; maxMs?: number; factor?: number; writeFactor?: number }) {
    this.#minMs = options.minMs;
    this.#maxMs = Math.max(options.minMs, options.maxMs ?? 30_000);
    this.#factor = options.factor ?? 20;
    this.#writeFactor = options.writeFactor ?? 10;
  }

  /** The wait before the policy's next pass. */
  delay(policy: string): number {
    const pass = (this.#passMs.get(policy) ?? 0) * this.#factor;
    const write = (this.#writeMs.get(policy) ?? 0) * this.#writeFactor;
    return Math.min(this.#maxMs, Math.max(this.#minMs, Math.ceil(pass), Math.ceil(write)));
  }

  /** A pass of the policy took this long. */
  measured(policy: string, ms: number): void {
    this.#passMs.set(policy, ms);
  }

  /** The apiserver answered the policy's last status write after this long. */
  wrote(policy: string, ms: number): void {
    this.#writeMs.set(policy, ms);
  }

  forget(policy: string): void {
    this.#passMs.delete(policy);
    this.#writeMs.delete(policy);
  }
}
