// The only code that writes Deployments: server-side apply under the operator's own field
// manager, so the operator owns exactly the fields it injects (GitOps tools can ignore them).
import { type AppsV1Api, PatchStrategy, setHeaderOptions, type V1Deployment } from '@kubernetes/client-node';
import type { ApplyConfiguration } from '../policy/ownership.ts';

/** Field manager of every Deployment write; `kubectl get deploy -o yaml --show-managed-fields` shows it. */
export const FIELD_MANAGER = 'graceful-shutdown-operator';

export interface DeploymentWriter {
  apply(config: ApplyConfiguration): Promise<V1Deployment>;
  /** A JSON Patch, for what apply cannot express (replacing a handler of another kind). */
  patch(namespace: string, name: string, operations: object[]): Promise<V1Deployment>;
}

export function createDeploymentWriter(apps: AppsV1Api): DeploymentWriter {
  const options = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
  const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
  return {
    patch: (namespace, name, operations) =>
      apps.patchNamespacedDeployment(
        { name, namespace, body: operations, fieldManager: FIELD_MANAGER, fieldValidation: 'Strict' },
        jsonPatch,
      ),
    apply: (config) =>
      apps.patchNamespacedDeployment(
        {
          name: config.metadata.name,
          namespace: config.metadata.namespace,
          body: config,
          fieldManager: FIELD_MANAGER,
          // Override mode means taking fields from other managers; IfMissing fields have none.
          force: true,
          fieldValidation: 'Strict',
        },
        options,
      ),
  };
}
