// Thin adapters for the webhook's TLS: the Secret holding its CA and serving certificate, and
// the caBundle of its MutatingWebhookConfiguration. Writes carry preconditions (create fails when
// the Secret exists, replace when its resourceVersion moved): replicas racing to create or renew
// cannot overwrite each other; the loser reads what the winner wrote.
import {
  type AdmissionregistrationV1Api,
  type CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import { ConflictError } from '../runtime/controller.ts';
import { abortOptions, apiErrorMessage, httpStatusOf } from './client.ts';

export interface StoredSecret {
  /** base64 values, as the API has them. */
  data: Record<string, string>;
  resourceVersion: string;
}

export interface TlsSecretStore {
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

export function createTlsSecretStore(
  core: CoreV1Api,
  secret: { namespace: string; name: string },
  labels: Record<string, string> = {},
): TlsSecretStore {
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

export interface CaBundleTarget {
  readonly description: string;
  /**
   * Sets every webhook's clientConfig.caBundle of the configuration to `bundle` (PEM) where it
   * differs: 'Unchanged' when all had it (nothing written), 'NotFound' when there is no such
   * configuration (the operator serves, but nothing calls it).
   */
  inject(bundle: string, signal: AbortSignal): Promise<'Injected' | 'Unchanged' | 'NotFound'>;
}

export function createCaBundleTarget(admission: AdmissionregistrationV1Api, name: string): CaBundleTarget {
  const description = `MutatingWebhookConfiguration ${name}`;
  return {
    description,
    async inject(bundle, signal) {
      const encoded = Buffer.from(bundle, 'utf8').toString('base64');
      let current: Awaited<ReturnType<AdmissionregistrationV1Api['readMutatingWebhookConfiguration']>>;
      try {
        current = await admission.readMutatingWebhookConfiguration({ name }, abortOptions(signal));
      } catch (error) {
        if (httpStatusOf(error) === 404) return 'NotFound';
        throw new Error(`reading ${description}: ${apiErrorMessage(error)}`, { cause: error });
      }
      const webhooks = current.webhooks ?? [];
      // client-node reads caBundle (bytes) as the base64 string the API sends.
      const stale = webhooks.flatMap((w, i) =>
        String(w.clientConfig?.caBundle ?? '') === encoded ? [] : [i],
      );
      if (stale.length === 0) return 'Unchanged';
      // Guarded by the resourceVersion: a configuration changed meanwhile (a re-apply that
      // reordered its webhooks) fails the patch instead of getting a bundle at the wrong index.
      const operations = [
        { op: 'test', path: '/metadata/resourceVersion', value: current.metadata?.resourceVersion },
        ...stale.map((i) => ({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: encoded })),
      ];
      try {
        await admission.patchMutatingWebhookConfiguration(
          { name, body: operations, fieldManager: FIELD_MANAGER },
          setHeaderOptions('Content-Type', PatchStrategy.JsonPatch, abortOptions(signal)),
        );
      } catch (error) {
        if (httpStatusOf(error) === 409 || httpStatusOf(error) === 422)
          throw new ConflictError(`patching ${description}: ${apiErrorMessage(error)}`, { cause: error });
        throw new Error(`patching ${description}: ${apiErrorMessage(error)}`, { cause: error });
      }
      return 'Injected';
    },
  };
}
