import {
  type LeaderElectionRecord,
  type LeaseClient,
  LeaseConflictError,
  type ObservedLease,
} from './leader-election.ts';

/** One Lease in memory, with the apiserver's optimistic concurrency; for tests and local runs. */
export class InMemoryLeaseStore {
  lease: ObservedLease | undefined;
  #version = 0;

  put(record: LeaderElectionRecord): ObservedLease {
    this.#version++;
    this.lease = { record: { ...record }, resourceVersion: String(this.#version) };
    return copyLease(this.lease);
  }
}

/**
 * One replica's connection to an InMemoryLeaseStore. `mode` simulates a partition ('fail': every
 * call rejects) or a hung apiserver ('hang': calls settle only when their signal aborts, as real
 * requests do); `hanging` counts the calls hung right now; `onWrite` observes writes.
 */
export class InMemoryLeaseClient implements LeaseClient {
  readonly description: string;
  mode: 'ok' | 'fail' | 'hang' = 'ok';
  hanging = 0;
  onWrite: (record: LeaderElectionRecord) => void = () => {};
  readonly #store: InMemoryLeaseStore;

  constructor(store: InMemoryLeaseStore, description = 'test/lease') {
    this.#store = store;
    this.description = description;
  }

  async get(signal: AbortSignal): Promise<ObservedLease | undefined> {
    await this.#network(signal);
    return this.#store.lease === undefined ? undefined : copyLease(this.#store.lease);
  }

  async create(record: LeaderElectionRecord, signal: AbortSignal): Promise<ObservedLease> {
    await this.#network(signal);
    if (this.#store.lease !== undefined) throw new LeaseConflictError('already exists');
    this.onWrite(record);
    return this.#store.put(record);
  }

  async replace(
    record: LeaderElectionRecord,
    resourceVersion: string,
    signal: AbortSignal,
  ): Promise<ObservedLease> {
    await this.#network(signal);
    if (this.#store.lease?.resourceVersion !== resourceVersion) throw new LeaseConflictError('conflict');
    this.onWrite(record);
    return this.#store.put(record);
  }

  async #network(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.mode === 'fail') throw new Error('connection refused');
    if (this.mode !== 'hang') return;
    this.hanging++;
    try {
      await new Promise((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    } finally {
      this.hanging--;
    }
  }
}

function copyLease(lease: ObservedLease): ObservedLease {
  return { resourceVersion: lease.resourceVersion, record: { ...lease.record } };
}
