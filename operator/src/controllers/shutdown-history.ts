// What the shutdown observer learned per Deployment that planning must remember: the longest
// grace period at which its pods were killed. Kept in memory on every replica (each watches the
// same pods), bounded; an operator restart forgets it, and the grace period it led to stays
// applied (an unknown latency never lowers one).
import { setBounded } from '../util/bounded-map.ts';
import type { ShutdownReader } from './plan.ts';

const MAX_DEPLOYMENTS = 10_000;

export class ShutdownHistory implements ShutdownReader {
  readonly #killedAt = new Map<string, number>();

  /** Pods of the Deployment were killed at the end of `graceSeconds`. */
  killed(deploymentKey: string, graceSeconds: number): void {
    const known = this.#killedAt.get(deploymentKey);
    if (known !== undefined && known >= graceSeconds) return;
    setBounded(this.#killedAt, deploymentKey, graceSeconds, MAX_DEPLOYMENTS);
  }

  killedAt(deploymentKey: string): number | undefined {
    return this.#killedAt.get(deploymentKey);
  }
}
