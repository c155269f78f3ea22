// Writes a policy's status subresource (merge patch: status is the operator's alone).
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, type GracefulShutdownPolicyStatus, PLURAL, VERSION } from '../api/policy.ts';
import { ConflictError } from '../runtime/controller.ts';
import { abortOptions, apiErrorMessage, httpStatusOf } from './client.ts';

export interface StatusWriteOptions {
  /**
   * The resourceVersion of the policy the status was computed from. The patch carries it as a
   * precondition: when the policy has changed since, the apiserver answers 409 and nothing is
   * written (a stale replica cannot overwrite a newer status). Required, as controller-runtime's
   * MergeFromWithOptimisticLock requires it; undefined only to take `metadata?.resourceVersion`.
   */
  resourceVersion: string | undefined;
  /** Aborts the request in flight (leadership lost, shutdown past its grace). */
  signal: AbortSignal;
}

export interface PolicyStatusWriter {
  /** Rejects with a ConflictError when the policy is no longer at `resourceVersion`. */
  write(name: string, status: GracefulShutdownPolicyStatus, options: StatusWriteOptions): Promise<void>;
}

/**
 * The status as a merge patch that replaces the stored one: a merge patch keeps keys it does not
 * name, so what is no longer reported is named with null (the workload list; the Enforce-only
 * counts after a switch to Audit or an invalid spec; the killed count, shown only when any).
 * Lists are replaced whole anyway.
 */
function replacing(status: GracefulShutdownPolicyStatus): object {
  const enforcementCounts = {
    applied: null,
    waiting: null,
    waitingReasons: null,
    blockedByBreaker: null,
    killed: null,
  };
  return {
    workloads: null,
    ...status,
    ...(status.counts ? { counts: { ...enforcementCounts, ...status.counts } } : {}),
  };
}

export function createPolicyStatusWriter(custom: CustomObjectsApi): PolicyStatusWriter {
  return {
    async write(name, status, { resourceVersion, signal }) {
      if (!resourceVersion) throw new Error(`writing status of policy ${name}: no resourceVersion to send`);
      const body = { metadata: { resourceVersion }, status: replacing(status) };
      try {
        await custom.patchClusterCustomObjectStatus(
          { group: GROUP, version: VERSION, plural: PLURAL, name, body },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch, abortOptions(signal)),
        );
      } catch (error) {
        if (httpStatusOf(error) !== 409) throw error;
        throw new ConflictError(`writing status of policy ${name}: ${apiErrorMessage(error)}`, {
          cause: error,
        });
      }
    },
  };
}
