// Writes a policy's status subresource (merge patch: status is the operator's alone).
import { type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, type GracefulShutdownPolicyStatus, PLURAL, VERSION } from '../api/policy.ts';

export interface PolicyStatusWriter {
  write(name: string, status: GracefulShutdownPolicyStatus): Promise<void>;
}

export function createPolicyStatusWriter(custom: CustomObjectsApi): PolicyStatusWriter {
  const options = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  return {
    async write(name, status) {
      // Lists are replaced whole by a merge patch; null clears what is no longer reported.
      const body = { status: { workloads: null, ...status } };
      await custom.patchClusterCustomObjectStatus(
        { group: GROUP, version: VERSION, plural: PLURAL, name, body },
        options,
      );
    },
  };
}
