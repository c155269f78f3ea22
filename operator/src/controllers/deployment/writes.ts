// The Deployment controller's writes, shared by its jobs: server-side apply, JSON Patch, Events;
// and what a write leaves for the next reconcile (Expectations).
import type { V1Deployment, V1ObjectReference } from '@kubernetes/client-node';
import type { DeploymentWriter } from '../../kube/apply.ts';
import type { EventRecorder, EventType } from '../../kube/events.ts';
import type { Logger } from '../../log.ts';
import { ownUpdateEntryRemoval } from '../../policy/managed-fields.ts';
import type { ApplyConfiguration } from '../../policy/ownership.ts';

/**
 * key -> the Deployment (uid) and its generation after this replica's last write. Every write
 * bumps a Deployment's generation (annotations included), so a cached object of the same uid
 * below it predates the write: reconciling it would write the same thing again; and the update
 * that brings the cache to it is the echo of the write, which changes no decision. client-go
 * calls this "expectations".
 */
export class Expectations {
  readonly #written = new Map<string, { uid: string | undefined; generation: number }>();
  /**
   * key -> the updates the cache delivered while a write to it was in flight. The watch event of
   * a write can arrive before its answer (the answer is parsed into typed objects, the event is
   * not): which of them is the echo is known only once the answer is in.
   */
  readonly #held = new Map<string, [old: V1Deployment, current: V1Deployment][]>();
  readonly #released: ((key: string, held: [V1Deployment, V1Deployment][]) => void)[] = [];

  /** A write to the key starts. */
  begin(key: string): void {
    this.#held.set(key, []);
  }

  /** While a write to the key is in flight, its updates wait here for the answer (true: held). */
  hold(key: string, old: V1Deployment, current: V1Deployment): boolean {
    const held = this.#held.get(key);
    held?.push([old, current]);
    return held !== undefined;
  }

  /** The write ended (answered or failed): the updates held meanwhile go to the listeners. */
  end(key: string): void {
    const held = this.#held.get(key) ?? [];
    this.#held.delete(key);
    if (held.length > 0) for (const listener of this.#released) listener(key, held);
  }

  /** Called with the updates held during a write, once it ended (the watches filter them then). */
  onReleased(listener: (key: string, held: [V1Deployment, V1Deployment][]) => void): void {
    this.#released.push(listener);
  }

  /** A write of this replica's returned `updated`. */
  wrote(key: string, updated: V1Deployment): void {
    const generation = updated.metadata?.generation;
    if (generation !== undefined) this.#written.set(key, { uid: updated.metadata?.uid, generation });
  }

  /**
   * The cache has not yet seen this replica's last write to the Deployment (its watch event
   * queues the key again). Once it has (or the Deployment was recreated), the expectation goes.
   */
  unmet(key: string, cached: V1Deployment): boolean {
    const expected = this.#written.get(key);
    if (expected === undefined) return false;
    if (expected.uid === cached.metadata?.uid && (cached.metadata?.generation ?? 0) < expected.generation)
      return true;
    this.#written.delete(key);
    return false;
  }

  /** The update brings the cache to exactly the object this replica's last write produced. */
  isEcho(key: string, current: V1Deployment, old: V1Deployment): boolean {
    const expected = this.#written.get(key);
    return (
      expected !== undefined &&
      expected.uid === current.metadata?.uid &&
      current.metadata?.generation === expected.generation &&
      (old.metadata?.generation ?? 0) < expected.generation
    );
  }

  forget(key: string): void {
    this.#written.delete(key);
  }
}

export function reference(deployment: V1Deployment): V1ObjectReference {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    namespace: deployment.metadata?.namespace,
    name: deployment.metadata?.name,
    uid: deployment.metadata?.uid,
    resourceVersion: deployment.metadata?.resourceVersion,
  };
}

export class DeploymentWrites {
  readonly #writer: DeploymentWriter;
  readonly #events: EventRecorder;
  readonly #expectations: Expectations;

  constructor(writer: DeploymentWriter, events: EventRecorder, expectations: Expectations) {
    this.#writer = writer;
    this.#events = events;
    this.#expectations = expectations;
  }

  /** Server-side apply under the operator's field manager. */
  async apply(key: string, signal: AbortSignal, config: ApplyConfiguration): Promise<V1Deployment> {
    // Leadership lost or stopping: another replica may be writing now.
    signal.throwIfAborted();
    this.#expectations.begin(key);
    try {
      const updated = await this.#writer.apply(config, signal);
      this.#expectations.wrote(key, updated);
      return updated;
    } finally {
      this.#expectations.end(key);
    }
  }

  /** A JSON Patch of the Deployment (what server-side apply cannot express). */
  patch(deployment: V1Deployment, operations: object[], signal: AbortSignal): Promise<V1Deployment> {
    signal.throwIfAborted();
    const { namespace = '', name = '' } = deployment.metadata ?? {};
    return this.#writer.patch(namespace, name, operations, signal);
  }

  /**
   * After a JSON Patch of the operator's, its `Update` entry goes from managedFields (policy/
   * managed-fields.ts ownUpdateEntryRemoval): no lingering co-owner of the fields it touched.
   * Best effort: a write in between fails the guard, and the next patch of the operator's
   * removes it then.
   */
  async dropUpdateEntry(updated: V1Deployment, signal: AbortSignal, log: Logger): Promise<void> {
    const operations = ownUpdateEntryRemoval(updated);
    if (operations.length === 0) return;
    try {
      await this.patch(updated, operations, signal);
    } catch (err) {
      log.info({ err }, "the operator's Update entry stays in managedFields for now");
    }
  }

  event(deployment: V1Deployment, type: EventType, reason: string, message: string): void {
    this.#events.record(reference(deployment), type, reason, message);
  }
}
