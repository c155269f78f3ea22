// What an e2e test, the demo or a benchmark needs against a cluster, in one module with no vitest
// in it: every function takes the cluster (a TestCluster: kubeconfig, kubectl, work directory),
// so a file that starts a control plane of its own uses the same helpers as the files on the
// shared one (test/e2e/support.ts binds them to that cluster). docs/design/testing.md shows them
// in use. Some live in the modules beside this one and are re-exported here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AdmissionregistrationV1Api,
  ApiException,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  type V1Deployment,
  type V1ReplicaSet,
} from '@kubernetes/client-node';
import { parse } from 'yaml';
import { loadRecordSeal } from '../../operator/src/kube/record-key.ts';
import { createSecretStore } from '../../operator/src/kube/secret-store.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import { readAppliedRecord } from '../../operator/src/policy/ownership.ts';
import type { RecordSeal } from '../../operator/src/policy/record-seal.ts';
import { MUTATE_DEPLOYMENTS_PATH } from '../../operator/src/webhook/server.ts';
import { serviceAccountKubeconfig } from '../cluster/cluster.ts';
import { hostNetwork, listGuard } from '../cluster/node/host.ts';
import { waitFor } from '../cluster/wait.ts';
import {
  installOperatorPrerequisites,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
  repoRoot,
} from './install.ts';
import { adminKubeConfig, kubectl, logDir, type TestCluster } from './kubectl.ts';
import { OperatorProcess } from './operator-process.ts';

export { freePort } from '../cluster/processes.ts';
export { waitFor } from '../cluster/wait.ts';
export {
  manifest,
  realNodePodSpec,
  SAMPLE_IMAGE,
  sampleContainer,
  sampleDeployment,
  webManifest,
} from './fixtures.ts';
export {
  createPolicy,
  DEMO_SERVICE,
  deletePolicy,
  installDemoService,
  installOperatorInCluster,
  installOperatorPrerequisites,
  OPERATOR_DEPLOYMENT,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
  patchPolicy,
  readPolicyStatus,
  repoRoot,
  writeOverlay,
} from './install.ts';
export {
  adminKubeConfig,
  type CommandResult,
  type KubectlOptions,
  kubectl,
  kubectlOk,
  logDir,
  type TestCluster,
  testCluster,
} from './kubectl.ts';
export { OperatorProcess } from './operator-process.ts';

// The operator

/** The operator's user as the apiserver sees it (startOperator runs it under its ServiceAccount). */
export const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_SERVICE_ACCOUNT}`;
/** The Lease its replicas elect a leader with (the operator's default --lease-name). */
export const OPERATOR_LEASE = 'graceful-shutdown-operator';

/**
 * The operator as a separate process under its shipped ServiceAccount and ClusterRole (a token,
 * not system:masters), the namespace, CRD and RBAC installed first (idempotent); its log in
 * logDir(cluster) (kept when the run fails). Resolves once it is ready (caches synced).
 */
export async function startOperator(
  cluster: TestCluster,
  opts: {
    /** The log file's name in logDir(cluster). */
    log: string;
    /** Its leader-election identity (default: from its probe port). */
    identity?: string;
    /** Its flags, e.g. ['--resync-ms', '2000']. */
    args?: string[];
    /** Node's own flags (the benchmark's --inspect, --cpu-prof). */
    nodeArgs?: string[];
    /** Another entry point than operator/src/main.ts (the benchmark runs the compiled dist/). */
    entry?: string;
  },
): Promise<OperatorProcess> {
  await installOperatorPrerequisites(cluster.kubectl, cluster.kubeconfig);
  const dir = logDir(cluster);
  const operator = await OperatorProcess.start({
    kubeconfig: await serviceAccountKubeconfig(
      adminKubeConfig(cluster),
      OPERATOR_NAMESPACE,
      OPERATOR_SERVICE_ACCOUNT,
      dir,
    ),
    logPath: join(dir, opts.log),
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {}),
    ...(opts.entry ? { entry: opts.entry } : {}),
    args: opts.args ?? [],
  });
  await operator.waitReady();
  return operator;
}

/** The names of the operator's pods (installed in the cluster) that are Ready and not terminating, sorted. */
export async function readyOperatorPods(cluster: TestCluster): Promise<string[]> {
  const pods = await adminKubeConfig(cluster).makeApiClient(CoreV1Api).listNamespacedPod({
    namespace: OPERATOR_NAMESPACE,
    labelSelector: 'app.kubernetes.io/name=graceful-shutdown-operator',
  });
  return pods.items
    .filter(
      (p) =>
        !p.metadata?.deletionTimestamp &&
        p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    )
    .map((p) => p.metadata?.name as string)
    .sort();
}

/** Who holds the operator's Lease (undefined: nobody, e.g. after a clean stop released it). */
export async function leaseHolder(cluster: TestCluster): Promise<string | undefined> {
  const lease = await adminKubeConfig(cluster)
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ namespace: OPERATOR_NAMESPACE, name: OPERATOR_LEASE });
  return lease.spec?.holderIdentity ?? undefined;
}

/** The Secret holding the key that seals the operator's records (the operator's default name). */
export const RECORD_KEY_SECRET = 'graceful-shutdown-operator-record-key';
const recordSeals = new Map<string, Promise<RecordSeal>>();

/**
 * The operator's record on the Deployment as the operator reads it: its seal checked with the
 * key from the operator's Secret (read with the admin's rights; made if no operator has yet).
 */
export async function operatorRecord(cluster: TestCluster, deployment: V1Deployment) {
  let seal = recordSeals.get(cluster.kubeconfig);
  if (!seal) {
    seal = loadRecordSeal(
      createSecretStore(adminKubeConfig(cluster).makeApiClient(CoreV1Api), {
        namespace: OPERATOR_NAMESPACE,
        name: RECORD_KEY_SECRET,
      }),
      AbortSignal.timeout(10_000),
    );
    recordSeals.set(cluster.kubeconfig, seal);
  }
  return readAppliedRecord(deployment, await seal);
}

/**
 * Deployment writes (create/update/patch/delete) the apiserver's audit log recorded, by user
 * and namespace: the operator's writes as the apiserver saw them, independent of its counters.
 */
export function auditedDeploymentWrites(
  auditLogPath: string,
  filter: { user: string; namespace: string },
): number {
  let count = 0;
  for (const line of readFileSync(auditLogPath, 'utf8').split('\n')) {
    if (!line) continue;
    const event = JSON.parse(line) as {
      verb?: string;
      user?: { username?: string };
      objectRef?: { resource?: string; namespace?: string };
    };
    if (
      event.user?.username === filter.user &&
      event.objectRef?.resource === 'deployments' &&
      event.objectRef.namespace === filter.namespace &&
      ['create', 'update', 'patch', 'delete'].includes(event.verb ?? '')
    ) {
      count++;
    }
  }
  return count;
}

// The admission webhook

/** The shipped MutatingWebhookConfiguration's name. */
export const WEBHOOK_CONFIGURATION = 'graceful-shutdown-operator';

export async function deleteWebhookConfiguration(cluster: TestCluster): Promise<void> {
  await kubectl(cluster, [
    'delete',
    'mutatingwebhookconfiguration',
    WEBHOOK_CONFIGURATION,
    '--ignore-not-found',
  ]);
}

/**
 * The shipped configuration with each webhook calling one operator process by URL, and only
 * these namespaces selected (other files' Deployments are not its business); ready once the
 * operator has put its CA into every webhook.
 */
export async function installWebhookConfiguration(
  cluster: TestCluster,
  operators: OperatorProcess[],
  namespaces: string[],
): Promise<void> {
  const shipped = parse(
    readFileSync(join(repoRoot, 'config', 'webhook', 'mutating_webhook_configuration.yaml'), 'utf8'),
  ) as { webhooks: Record<string, unknown>[] };
  const [template] = shipped.webhooks;
  const webhooks = operators.map((operator, i) => ({
    ...template,
    name: `r${i}.deployments.gracefulshutdown.dev`,
    clientConfig: { url: `https://127.0.0.1:${operator.webhookPort}${MUTATE_DEPLOYMENTS_PATH}` },
    namespaceSelector: {
      matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }],
    },
  }));
  await deleteWebhookConfiguration(cluster);
  const result = await kubectl(cluster, ['create', '-f', '-'], {
    input: JSON.stringify({ ...shipped, webhooks }),
  });
  if (result.code !== 0) throw new Error(`creating the webhook configuration: ${result.stderr}`);
  const admission = adminKubeConfig(cluster).makeApiClient(AdmissionregistrationV1Api);
  await waitFor('the caBundle injected', async () => {
    const current = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION });
    return (current.webhooks ?? []).every((w) => String(w.clientConfig.caBundle ?? '') !== '');
  });
}

// Reading the cluster

/** The Deployment as the apiserver has it now. */
export function readDeployment(cluster: TestCluster, namespace: string, name: string): Promise<V1Deployment> {
  return adminKubeConfig(cluster).makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace, name });
}

/** The Deployment once no rollout is in progress (for waitFor), else undefined. */
export async function rolledOut(
  cluster: TestCluster,
  namespace: string,
  name: string,
): Promise<V1Deployment | undefined> {
  const deployment = await readDeployment(cluster, namespace, name);
  return isRolling(deployment) ? undefined : deployment;
}

/** The ReplicaSets of pods labelled app=<app>: one per pod template the Deployment has had. */
export async function replicaSets(
  cluster: TestCluster,
  namespace: string,
  app: string,
): Promise<V1ReplicaSet[]> {
  const list = await adminKubeConfig(cluster)
    .makeApiClient(AppsV1Api)
    .listNamespacedReplicaSet({ namespace, labelSelector: `app=${app}` });
  return list.items;
}

/** Packets the real node's nft guard has dropped for going to a cluster address off the machine. */
export async function guardDrops(): Promise<number> {
  const guard = (await listGuard()) ?? '';
  const rule = guard.split('\n').find((l) => l.includes('ip daddr') && l.includes(hostNetwork.kwokPodCidr));
  return Number(/packets (\d+)/.exec(rule ?? '')?.[1] ?? Number.NaN);
}

// Waiting for an object to be gone

/** A failed API call's HTTP status and what the apiserver's Status object (its body) says. */
function apiStatus(
  err: unknown,
): { code: number; reason?: string; message?: string; name?: string } | undefined {
  if (!(err instanceof ApiException)) return undefined;
  type Status = { reason?: unknown; message?: unknown; details?: { name?: unknown } } | undefined;
  let status: Status;
  if (typeof err.body === 'string') {
    try {
      status = JSON.parse(err.body) as Status;
    } catch {
      return { code: err.code, message: err.body };
    }
  } else {
    status = err.body as Status;
  }
  const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  return {
    code: err.code,
    reason: text(status?.reason),
    message: text(status?.message),
    name: text(status?.details?.name),
  };
}

/**
 * Whether a failed API call says the object does not exist: 404 with a Status of reason
 * NotFound naming the object. A plain 404 page (a group the apiserver does not serve, e.g. its
 * CRD deleted), a NotFound naming nothing, a 403 or a connection error is not "gone".
 */
export function isNotFound(err: unknown): boolean {
  const status = apiStatus(err);
  return status?.code === 404 && status.reason === 'NotFound' && status.name !== undefined;
}

/**
 * Polls `read` (e.g. a readNamespaced... call) until the object is gone: only a NotFound
 * (isNotFound) ends the wait. While the read succeeds it waits on; any other error fails at once,
 * naming it: an object that cannot be read is not gone.
 */
export async function waitGone(
  description: string,
  read: () => Promise<unknown>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    try {
      await read();
    } catch (err) {
      if (isNotFound(err)) return;
      const status = apiStatus(err);
      const why = status
        ? [`HTTP ${status.code}`, status.reason, status.message].filter(Boolean).join(' ')
        : err;
      throw new Error(`${description} could not be read, which is not gone: ${why}`, { cause: err });
    }
    if (Date.now() >= deadline)
      throw new Error(`timed out waiting for ${description} to be gone: it is still there`);
    await sleep(opts.intervalMs ?? 250);
  }
}
