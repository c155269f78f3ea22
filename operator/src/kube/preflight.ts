// What the operator checks once before it starts, so that a cluster it cannot work with is one
// line a person can act on (StartupError), not a stack trace or a loop of retries: the apiserver
// answers, the GracefulShutdownPolicy CRD is installed and readable, the operator's namespace
// exists. Once running, the same failures are retried and said in status and logs instead.
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  VersionApi,
} from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION } from '../api/policy.ts';
import type { ServerVersion } from '../policy/desired.ts';
import { apiErrorMessage, StartupError } from './client.ts';

/** Node's fetch reports a connection failure as TypeError("fetch failed") with the cause inside. */
function networkCause(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (!(error instanceof TypeError) || cause === undefined) return undefined;
  const code = typeof cause.code === 'string' ? cause.code : undefined;
  const message = typeof cause.message === 'string' ? cause.message : '';
  return code && !message.includes(code) ? `${code}: ${message}` : message || code;
}

/** Why a request to the apiserver failed, in words: the network cause, or the HTTP status. */
export function describeRequestError(error: unknown): string {
  const network = networkCause(error);
  if (network !== undefined) return network;
  if (error instanceof ApiException && error.code === 401)
    return 'HTTP 401: the credentials were refused (an expired token or certificate?)';
  return apiErrorMessage(error);
}

const status = (error: unknown) => (error instanceof ApiException ? error.code : undefined);

/** The checks, in order; resolves to the server's version. */
export async function preflight(kubeConfig: KubeConfig, namespace: string): Promise<ServerVersion> {
  const server = kubeConfig.getCurrentCluster()?.server ?? '(no server)';
  let version: ServerVersion;
  try {
    const info = await kubeConfig.makeApiClient(VersionApi).getCode();
    version = { major: info.major, minor: info.minor, gitVersion: info.gitVersion };
  } catch (error) {
    throw new StartupError(`cannot reach the Kubernetes API at ${server}: ${describeRequestError(error)}`);
  }
  try {
    await kubeConfig
      .makeApiClient(CustomObjectsApi)
      .listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, limit: 1 });
  } catch (error) {
    if (status(error) === 404)
      throw new StartupError(
        `the GracefulShutdownPolicy CRD (${PLURAL}.${GROUP}/${VERSION}) is not installed on ${server}: kubectl apply --server-side -k config/crd`,
      );
    if (status(error) === 403)
      throw new StartupError(
        `the operator may not list ${PLURAL}.${GROUP} on ${server} (${describeRequestError(error)}): apply its RBAC (config/rbac) for the identity it runs as`,
      );
    throw new StartupError(`cannot list ${PLURAL}.${GROUP} on ${server}: ${describeRequestError(error)}`);
  }
  try {
    const found = await kubeConfig
      .makeApiClient(CoreV1Api)
      .listNamespace({ fieldSelector: `metadata.name=${namespace}`, limit: 1 });
    if (found.items.length === 0)
      throw new StartupError(
        `namespace ${namespace} does not exist on ${server}: create it (kubectl create namespace ${namespace}), or pass --namespace (POD_NAMESPACE)`,
      );
  } catch (error) {
    if (error instanceof StartupError) throw error;
    if (status(error) === 403)
      throw new StartupError(
        `the operator may not list namespaces on ${server} (${describeRequestError(error)}): apply its RBAC (config/rbac) for the identity it runs as`,
      );
    throw new StartupError(`cannot read namespace ${namespace} on ${server}: ${describeRequestError(error)}`);
  }
  return version;
}
