// An outside trigger of controllers (controller-runtime's source.Channel): something other than a
// cache event that changes what a reconcile reads (a latency estimate published, a kill
// observed, a probe check done). Its source emits; controllers subscribe in their watches.
// Listeners are synchronous and should only enqueue keys.
export class Trigger<A extends unknown[]> {
  readonly #listeners: ((...args: A) => void)[] = [];

  on(listener: (...args: A) => void): void {
    this.#listeners.push(listener);
  }

  emit(...args: A): void {
    for (const listener of this.#listeners) listener(...args);
  }
}
