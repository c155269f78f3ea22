// A Secret in the operator's own namespace, read and written by name: the webhook's certificates
// (webhook/certificate-controller.ts) and the key that seals the operator's records
// (kube/record-key.ts). Writes carry preconditions (create fails when the Secret exists,
// replace when its resourceVersion moved): replicas racing to create or renew cannot overwrite
// each other; the loser reads what the winner wrote.
import type { CoreV1Api } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import { ConflictError } from '../runtime/controller.ts';
import { abortOptions, apiErrorMessage, httpStatusOf } from './client.ts';

export interface StoredSecret {
  /** base64 values, as the API has them. */
  data: Record<string, string>;
  resourceVersion: string;
}

export interface SecretStore {
  readonly description: string;
  /** undefined when there is no such Secret. */
  read(signal: AbortSignal): Promise<StoredSecret | undefined>;
  /** Rejects with ConflictError when it exists already. */
  create(data: Record<string, string>, type: string, signal: AbortSignal): Promise<void>;
  /** Rejects with ConflictError when it changed since `resourceVersion`. */
  replace(
    data: Record<string, string>,
    type: string,
    resourceVersion: string,
    signal: AbortSignal,
  ): Promise<void>;
}

export function createSecretStore(
  core: CoreV1Api,
  secret: { namespace: string; name: string },
  labels: Record<string, string> = {},
): SecretStore {
  const { namespace, name } = secret;
  const description = `Secret ${namespace}/${name}`;
  const conflict = (error: unknown, what: string): never => {
    if (httpStatusOf(error) === 409)
      throw new ConflictError(`${what} ${description}: ${apiErrorMessage(error)}`, { cause: error });
    throw new Error(`${what} ${description}: ${apiErrorMessage(error)}`, { cause: error });
  };
  return {
    description,
    async read(signal) {
      try {
        const found = await core.readNamespacedSecret({ namespace, name }, abortOptions(signal));
        return { data: found.data ?? {}, resourceVersion: found.metadata?.resourceVersion ?? '' };
      } catch (error) {
        if (httpStatusOf(error) === 404) return undefined;
        throw new Error(`reading ${description}: ${apiErrorMessage(error)}`, { cause: error });
      }
    },
    async create(data, type, signal) {
      try {
        await core.createNamespacedSecret(
          {
            namespace,
            body: { metadata: { name, namespace, labels }, type, data },
            fieldManager: FIELD_MANAGER,
          },
          abortOptions(signal),
        );
      } catch (error) {
        conflict(error, 'creating');
      }
    },
    async replace(data, type, resourceVersion, signal) {
      try {
        await core.replaceNamespacedSecret(
          {
            namespace,
            name,
            body: { metadata: { name, namespace, labels, resourceVersion }, type, data },
            fieldManager: FIELD_MANAGER,
          },
          abortOptions(signal),
        );
      } catch (error) {
        conflict(error, 'replacing');
      }
    },
  };
}
