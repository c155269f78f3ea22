// The rollout budget's memory: Deployments this replica has patched whose rollout the cache has
// not yet shown complete. The cache alone lags a patch by a watch event, so without these
// reservations two workers could both see room in the budget and both patch.
import type { V1Deployment } from '@kubernetes/client-node';
import { isRolling } from '../policy/budget.ts';

export class RolloutTracker {
  /**
   * key -> the policy that patched it, the Deployment patched (uid: a recreated one under the
   * same name is another object) and the generation the patch produced (Infinity until known).
   */
  readonly #reserved = new Map<string, { policy: string; uid: string | undefined; generation: number }>();
  /** policy -> keys waiting for budget, woken when a rollout of that policy ends. */
  readonly #waiting = new Map<string, Set<string>>();

  /**
   * Keys of the policy's Deployments rolling now: rolling in the cache, or patched by us and not
   * yet seen complete. Reservations the cache shows complete (or deleted) are dropped here.
   */
  rollingKeys(policy: string, deployments: ReadonlyMap<string, V1Deployment>): Set<string> {
    const rolling = new Set<string>();
    for (const [key, deployment] of deployments) if (isRolling(deployment)) rolling.add(key);
    for (const [key, reservation] of this.#reserved) {
      if (reservation.policy !== policy) continue;
      const found = deployments.get(key);
      const current = found?.metadata?.uid === reservation.uid ? found : undefined;
      const patchInFlight = reservation.generation === Number.POSITIVE_INFINITY;
      const done = current
        ? (current.status?.observedGeneration ?? 0) >= reservation.generation && !isRolling(current)
        : !patchInFlight;
      if (done) this.#reserved.delete(key);
      else rolling.add(key);
    }
    return rolling;
  }

  reserve(key: string, policy: string, uid?: string): void {
    this.#reserved.set(key, { policy, uid, generation: Number.POSITIVE_INFINITY });
  }

  /** The patch succeeded: its rollout is done once the cache observes this generation. */
  patched(key: string, generation: number): void {
    const reservation = this.#reserved.get(key);
    if (reservation) reservation.generation = generation;
  }

  release(key: string): void {
    this.#reserved.delete(key);
    for (const keys of this.#waiting.values()) keys.delete(key);
  }

  wait(policy: string, key: string): void {
    const keys = this.#waiting.get(policy) ?? new Set<string>();
    keys.add(key);
    this.#waiting.set(policy, keys);
  }

  /** Keys that waited for the budget of any policy; the caller re-enqueues them. */
  takeWaiting(): string[] {
    const keys = [...this.#waiting.values()].flatMap((set) => [...set]);
    this.#waiting.clear();
    return keys;
  }

  get reservedCount(): number {
    return this.#reserved.size;
  }
}
