// Shared by the admission unit tests: the requests the apiserver sends. Not part of the build.
import type { V1Deployment } from '@kubernetes/client-node';
import type { AdmissionRequest } from './admission.ts';

/** A CREATE of the Deployment by kubectl, as the apiserver sends it to the webhook. */
export function createRequest(object: V1Deployment, extra: Partial<AdmissionRequest> = {}): AdmissionRequest {
  return {
    uid: 'u1',
    kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
    operation: 'CREATE',
    namespace: object.metadata?.namespace ?? 'shop',
    object,
    options: { fieldManager: 'kubectl' },
    ...extra,
  };
}
