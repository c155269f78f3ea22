// What the shutdown observer learned per Deployment that planning must remember: the longest
// grace period at which its pods were killed. Kept in memory on every replica (each watches the
// same pods), bounded; an operator restart forgets it, and the grace period it led to stays
// applied (an unknown latency never lowers one).
import { LRUCache } from 'lru-cache';
import type { ShutdownReader } from '../policy/plan.ts';

const MAX_DEPLOYMENTS = 10_000;

export class ShutdownHistory implements ShutdownReader {
  /** Read with peek, which leaves an entry's place alone: the one set longest ago goes first. */
  readonly #killedAt = new LRUCache<string, number>({ max: MAX_DEPLOYMENTS });

  /** Pods of the Deployment were killed at the end of `graceSeconds`. */
  killed(deploymentKey: string, graceSeconds: number): void {
    const known = this.#killedAt.peek(deploymentKey);
    if (known !== undefined && known >= graceSeconds) return;
    this.#killedAt.set(deploymentKey, graceSeconds);
  }

  killedAt(deploymentKey: string): number | undefined {
    return this.#killedAt.peek(deploymentKey);
  }
}
