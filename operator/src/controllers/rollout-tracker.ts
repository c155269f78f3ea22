// The rollout budget's memory: rollouts this replica started that the cache has not shown
// complete. The record on the Deployment also says whose rollout it is (policy/budget.ts
// rolloutState), which a new leader reads; but the cache lags a write by a watch event (without
// reservations two workers could both see room in the budget and both start a rollout), and a
// scale during the rollout moves the generation past the one recorded.
import type { V1Deployment } from '@kubernetes/client-node';
import { isRolling, rolloutCompleted, templateHash } from '../policy/budget.ts';

export class RolloutTracker {
  /**
   * key -> the policy that wrote it, the Deployment written (uid: a recreated one under the
   * same name is another object) and the generation the write produced (Infinity until known).
   */
  readonly #reserved = new Map<string, { policy: string; uid: string | undefined; generation: number }>();
  /**
   * policy -> keys waiting for a slot of its budget, oldest first; woken one per slot freed (a
   * wake of every waiting key per slot had hundreds re-check the budget for one of them to win).
   */
  readonly #waiting = new Map<string, Set<string>>();
  /** key -> the policy whose freed slot woke it, until its reconcile says whether it took it (settleWoken). */
  readonly #woken = new Map<string, string>();
  /** key -> hash of the pod template the Deployment last had while settled. */
  readonly #settledTemplates = new Map<string, string>();
  readonly #slotListeners: ((policy: string) => void)[] = [];

  /**
   * Called with a policy when this replica frees a slot of its budget: a reservation released
   * (its write failed, the Deployment went), or a woken key that did not take the slot it was
   * woken for (`settleWoken`). The caller wakes as many waiting keys as slots are free.
   */
  onSlotFreed(listener: (policy: string) => void): void {
    this.#slotListeners.push(listener);
  }

  /** Every event of the Deployment: remembers its template while settled (see templateChanged). */
  observe(key: string, deployment: V1Deployment): void {
    if (!isRolling(deployment)) this.#settledTemplates.set(key, templateHash(deployment));
  }

  /**
   * Whether the Deployment's pod template differs from the one it had when last seen settled:
   * a template rollout has begun, even before the Deployment controller has observed it (a
   * scale or a metadata edit never changes the template). The settled template is what
   * `observe` last remembered.
   */
  templateChanged(key: string, deployment: V1Deployment): boolean {
    if (!isRolling(deployment)) return false;
    const settled = this.#settledTemplates.get(key);
    return settled !== undefined && settled !== templateHash(deployment);
  }

  /**
   * Keys of the policy's Deployments this replica started a rollout on that the cache does not
   * show complete. Covers what the record cannot: a write not yet in the cache, and a rollout
   * whose generation moved on (scaled meanwhile). Finished reservations (or of a Deployment
   * gone) are dropped here.
   */
  active(policy: string, deployments: { get(key: string): V1Deployment | undefined }): Set<string> {
    const keys = new Set<string>();
    for (const [key, reservation] of this.#reserved) {
      if (reservation.policy !== policy) continue;
      const found = deployments.get(key);
      const current = found?.metadata?.uid === reservation.uid ? found : undefined;
      const writing = reservation.generation === Number.POSITIVE_INFINITY;
      const done = current ? rolloutCompleted(current, reservation.generation) : !writing;
      if (done) this.#reserved.delete(key);
      else keys.add(key);
    }
    return keys;
  }

  /**
   * This replica started the Deployment's rollout and it has not completed. A completed one (or
   * a reservation of another object under this name) is dropped here, so an old reservation
   * never makes a later rollout of the user's look like the operator's.
   */
  startedHere(key: string, deployment: V1Deployment): boolean {
    const reservation = this.#reserved.get(key);
    if (!reservation) return false;
    const writing = reservation.generation === Number.POSITIVE_INFINITY;
    const other = reservation.uid !== deployment.metadata?.uid;
    if (other || (!writing && rolloutCompleted(deployment, reservation.generation))) {
      this.#reserved.delete(key);
      return false;
    }
    return true;
  }

  reserve(key: string, policy: string, uid?: string): void {
    this.#reserved.set(key, { policy, uid, generation: Number.POSITIVE_INFINITY });
  }

  /** The write succeeded: its rollout is done once the cache observes this generation, complete. */
  written(key: string, generation: number): void {
    const reservation = this.#reserved.get(key);
    if (reservation) reservation.generation = generation;
  }

  release(key: string): void {
    const reservation = this.#reserved.get(key);
    this.#reserved.delete(key);
    this.#settledTemplates.delete(key);
    for (const keys of this.#waiting.values()) keys.delete(key);
    if (reservation) this.#slotFreed(reservation.policy);
  }

  /** The key waits for a slot of the policy's budget (RolloutBudgetExhausted). */
  wait(policy: string, key: string): void {
    const keys = this.#waiting.get(policy) ?? new Set<string>();
    keys.add(key);
    this.#waiting.set(policy, keys);
  }

  /**
   * Up to `limit` keys that waited longest for the policy's budget, taken off the wait and
   * marked woken; the caller enqueues them.
   */
  takeWaiting(policy: string, limit = Number.POSITIVE_INFINITY): string[] {
    const keys = this.#waiting.get(policy);
    if (!keys) return [];
    const taken: string[] = [];
    for (const key of keys) {
      if (taken.length >= limit) break;
      taken.push(key);
    }
    for (const key of taken) {
      keys.delete(key);
      this.#woken.set(key, policy);
    }
    if (keys.size === 0) this.#waiting.delete(policy);
    return taken;
  }

  /** Keys woken for a slot of the policy's budget whose reconcile has not yet said whether they took it. */
  wokenCount(policy: string): number {
    let count = 0;
    for (const woken of this.#woken.values()) if (woken === policy) count++;
    return count;
  }

  /**
   * At the end of the reconcile of a key a slot woke: unless it took the slot (a reservation) or
   * waits for the budget again, the slot goes to the next waiting key. Nothing for another key.
   */
  settleWoken(key: string): void {
    const policy = this.#woken.get(key);
    if (policy === undefined) return;
    this.#woken.delete(key);
    if (this.#reserved.has(key) || this.#waiting.get(policy)?.has(key)) return;
    this.#slotFreed(policy);
  }

  #slotFreed(policy: string): void {
    for (const listener of this.#slotListeners) listener(policy);
  }

  get reservedCount(): number {
    return this.#reserved.size;
  }
}
