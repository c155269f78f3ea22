import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import {
  type LeaderElectionRecord,
  type LeaseClient,
  LeaseConflictError,
  type ObservedLease,
} from '../runtime/leader-election.ts';
import { abortOptions, apiErrorMessage, httpStatusOf } from './client.ts';

export interface LeaseReference {
  namespace: string;
  name: string;
}

/** Leader election's LeaseClient over coordination.k8s.io/v1 Leases. */
export class KubeLeaseClient implements LeaseClient {
  readonly description: string;
  readonly #api: CoordinationV1Api;
  readonly #lease: LeaseReference;

  constructor(api: CoordinationV1Api, lease: LeaseReference) {
    this.#api = api;
    this.#lease = lease;
    this.description = `${lease.namespace}/${lease.name}`;
  }

  async get(signal: AbortSignal): Promise<ObservedLease | undefined> {
    try {
      return toObserved(await this.#api.readNamespacedLease(this.#lease, abortOptions(signal)));
    } catch (error) {
      if (httpStatusOf(error) === 404) return undefined;
      throw new Error(`reading lease ${this.description}: ${apiErrorMessage(error)}`, { cause: error });
    }
  }

  async create(record: LeaderElectionRecord, signal: AbortSignal): Promise<ObservedLease> {
    try {
      return toObserved(
        await this.#api.createNamespacedLease(
          { namespace: this.#lease.namespace, body: this.#body(record) },
          abortOptions(signal),
        ),
      );
    } catch (error) {
      throw this.#writeError('creating', error);
    }
  }

  async replace(
    record: LeaderElectionRecord,
    resourceVersion: string,
    signal: AbortSignal,
  ): Promise<ObservedLease> {
    try {
      return toObserved(
        await this.#api.replaceNamespacedLease(
          { ...this.#lease, body: this.#body(record, resourceVersion) },
          abortOptions(signal),
        ),
      );
    } catch (error) {
      throw this.#writeError('replacing', error);
    }
  }

  #body(record: LeaderElectionRecord, resourceVersion?: string): V1Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...this.#lease, ...(resourceVersion === undefined ? {} : { resourceVersion }) },
      spec: {
        holderIdentity: record.holderIdentity,
        leaseDurationSeconds: record.leaseDurationSeconds,
        leaseTransitions: record.leaseTransitions,
        // MicroTime: the apiserver expects six fractional digits; V1MicroTime serialises so.
        acquireTime:
          record.acquireTime === undefined ? undefined : new V1MicroTime(record.acquireTime.getTime()),
        renewTime: record.renewTime === undefined ? undefined : new V1MicroTime(record.renewTime.getTime()),
      },
    };
  }

  #writeError(action: string, error: unknown): Error {
    const message = `${action} lease ${this.description}: ${apiErrorMessage(error)}`;
    // 409: AlreadyExists on create, Conflict (stale resourceVersion) on replace: another replica won.
    if (httpStatusOf(error) === 409) return new LeaseConflictError(message, { cause: error });
    return new Error(message, { cause: error });
  }
}

export function createLeaseClient(kubeConfig: KubeConfig, lease: LeaseReference): LeaseClient {
  return new KubeLeaseClient(kubeConfig.makeApiClient(CoordinationV1Api), lease);
}

function toObserved(lease: V1Lease): ObservedLease {
  const spec = lease.spec ?? {};
  return {
    resourceVersion: lease.metadata?.resourceVersion ?? '',
    record: {
      holderIdentity: spec.holderIdentity ?? '',
      leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
      leaseTransitions: spec.leaseTransitions ?? 0,
      // The client hands MicroTime back as the wire string despite the type.
      acquireTime: parseTime(spec.acquireTime),
      renewTime: parseTime(spec.renewTime),
    },
  };
}

function parseTime(value: Date | string | undefined): Date | undefined {
  if (value === undefined || value === null) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}
