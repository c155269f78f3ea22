// Who the operator is, as the apiserver authenticates it (a SelfSubjectReview, GA in 1.28): the
// admission webhook recognises the operator's own writes by the requesting user, which nobody
// else can claim, instead of by a fieldManager parameter anyone can send.
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';

/** The operator's username (`system:serviceaccount:<ns>:<name>` in a cluster). */
export async function readOwnUsername(kubeConfig: KubeConfig): Promise<string | undefined> {
  const review = await kubeConfig
    .makeApiClient(AuthenticationV1Api)
    .createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
  const username = review.status?.userInfo?.username;
  return username === undefined || username === '' ? undefined : username;
}
