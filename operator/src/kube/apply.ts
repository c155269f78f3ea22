// The only code that writes Deployments: server-side apply under the operator's own field
// manager, so the operator owns exactly the fields it injects (GitOps tools can ignore them).
import { type AppsV1Api, PatchStrategy, setHeaderOptions, type V1Deployment } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import type { ApplyConfiguration } from '../policy/ownership.ts';
import { abortOptions } from './client.ts';

export { FIELD_MANAGER };

/** `signal` (the reconcile's) aborts the request in flight: leadership lost, or shutdown past its grace. */
export interface DeploymentWriter {
  apply(config: ApplyConfiguration, signal: AbortSignal): Promise<V1Deployment>;
  /** A JSON Patch, for what apply cannot express (replacing a handler of another kind). */
  patch(namespace: string, name: string, operations: object[], signal: AbortSignal): Promise<V1Deployment>;
}

export function createDeploymentWriter(apps: AppsV1Api): DeploymentWriter {
  return {
    patch: (namespace, name, operations, signal) =>
      apps.patchNamespacedDeployment(
        { name, namespace, body: operations, fieldManager: FIELD_MANAGER, fieldValidation: 'Strict' },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch, abortOptions(signal)),
      ),
    apply: (config, signal) =>
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
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply, abortOptions(signal)),
      ),
  };
}
