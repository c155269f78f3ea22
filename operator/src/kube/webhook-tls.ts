// A thin adapter for the webhook's TLS: the caBundle of its MutatingWebhookConfiguration (the
// Secret holding its CA and serving certificate is kube/secret-store.ts).
import { type AdmissionregistrationV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../api/annotations.ts';
import { ConflictError } from '../runtime/controller.ts';
import { abortOptions, apiErrorMessage, httpStatusOf } from './client.ts';

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
