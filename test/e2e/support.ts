// Helpers for e2e tests against the shared local control plane started by global-setup.ts.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Deployment,
  type V1Toleration,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, inject } from 'vitest';
import { parse } from 'yaml';
import { API_VERSION, KIND } from '../../operator/src/api/policy.ts';
import { loadRecordSeal } from '../../operator/src/kube/record-key.ts';
import { createSecretStore } from '../../operator/src/kube/secret-store.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import { readAppliedRecord } from '../../operator/src/policy/ownership.ts';
import type { RecordSeal } from '../../operator/src/policy/record-seal.ts';
import { MUTATE_DEPLOYMENTS_PATH } from '../../operator/src/webhook/server.ts';
import { loadAdminKubeConfig, serviceAccountKubeconfig } from '../cluster/cluster.ts';
import {
  deletePolicy,
  installOperatorPrerequisites,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
  repoRoot,
} from '../operator/install.ts';
import { OperatorProcess } from '../operator/operator-process.ts';

export interface ClusterInfo {
  kubeconfig: string;
  kubectl: string;
  binDir: string;
  server: string;
  kubernetesVersion: string;
  auditLogPath: string;
  workDir: string;
  /** http://127.0.0.1:PORT: Prometheus scraping the real node's pods annotated prometheus.io/scrape. */
  prometheusUrl: string;
  realNode: {
    /** nodeSelector and tolerations that put a pod on the real node. */
    placement: { nodeSelector: Record<string, string>; tolerations: V1Toleration[] };
    operatorImage: string;
    demoServiceImage: string;
    containerdSocket: string;
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: ClusterInfo;
  }
}

/** The shared cluster; throws (so the test fails, never skips) when there is none. */
export function clusterInfo(): ClusterInfo {
  const info = inject('cluster');
  if (!info?.kubeconfig) {
    throw new Error(
      'no local cluster: e2e tests run with `vitest --project e2e`, whose global setup starts one',
    );
  }
  return info;
}

export const kubectlPath: string = clusterInfo().kubectl;

export function adminKubeConfig(): KubeConfig {
  return loadAdminKubeConfig(clusterInfo().kubeconfig);
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the project's built kubectl with the admin kubeconfig; never throws on a non-zero exit. */
export function kubectl(
  args: string[],
  opts: { input?: string; kubeconfig?: string } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      kubectlPath,
      ['--kubeconfig', opts.kubeconfig ?? clusterInfo().kubeconfig, ...args],
      { maxBuffer: 64 * 1024 * 1024, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(err);
        else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input ?? '');
  });
}

/** A namespace created before the file's tests and deleted after them. */
export function useNamespace(prefix: string): { readonly name: string } {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
  beforeAll(async () => {
    await core().createNamespace({ body: { metadata: { name } } });
  });
  afterAll(async () => {
    await core().deleteNamespace({ name });
  });
  return { name };
}

import { waitFor } from '../cluster/wait.ts';

export { waitFor };

/** The Secret holding the key that seals the operator's records (the operator's default name). */
export const RECORD_KEY_SECRET = 'graceful-shutdown-operator-record-key';
let recordSeal: Promise<RecordSeal> | undefined;

/**
 * The operator's record on the Deployment as the operator reads it: its seal checked with the
 * key from the operator's Secret (read with the admin's rights; made if no operator has yet).
 */
export async function operatorRecord(deployment: V1Deployment) {
  recordSeal ??= loadRecordSeal(
    createSecretStore(adminKubeConfig().makeApiClient(CoreV1Api), {
      namespace: OPERATOR_NAMESPACE,
      name: RECORD_KEY_SECRET,
    }),
    AbortSignal.timeout(10_000),
  );
  return readAppliedRecord(deployment, await recordSeal);
}

/**
 * The operator as a separate process under its shipped ClusterRole (a ServiceAccount token, not
 * system:masters), its log beside the control plane's (kept when the run fails), ready.
 */
export async function startOperatorProcess(logName: string, args: string[]): Promise<OperatorProcess> {
  const info = clusterInfo();
  await installOperatorPrerequisites(info.kubectl, info.kubeconfig);
  const dir = join(info.workDir, 'logs');
  const operator = await OperatorProcess.start({
    kubeconfig: await serviceAccountKubeconfig(
      adminKubeConfig(),
      OPERATOR_NAMESPACE,
      OPERATOR_SERVICE_ACCOUNT,
      dir,
    ),
    logPath: join(dir, logName),
    args,
  });
  await operator.waitReady();
  return operator;
}

/**
 * A kwok-scheduled Deployment manifest, as JSON for `kubectl -f -`: one container `web` serving
 * a port named http (8080), labels app=<name>.
 */
export function webManifest(
  namespace: string,
  name: string,
  options: { replicas?: number; image?: string; grace?: number } = {},
): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace },
    spec: {
      replicas: options.replicas ?? 2,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          ...(options.grace === undefined ? {} : { terminationGracePeriodSeconds: options.grace }),
          containers: [
            {
              name: 'web',
              image: options.image ?? 'registry.example/web:1',
              ports: [{ name: 'http', containerPort: 8080 }],
            },
          ],
        },
      },
    },
  });
}

/** The Deployment as the apiserver has it now. */
export function readDeployment(namespace: string, name: string): Promise<V1Deployment> {
  return adminKubeConfig().makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace, name });
}

/** The Deployment once no rollout is in progress (for waitFor), else undefined. */
export async function rolledOut(namespace: string, name: string): Promise<V1Deployment | undefined> {
  const deployment = await readDeployment(namespace, name);
  return isRolling(deployment) ? undefined : deployment;
}

/**
 * Policies server-side applied by this file, each scoped to one namespace (policies are
 * cluster-scoped: tests must not meet), deleted after the file's tests.
 */
export function usePolicies(): {
  apply(name: string, namespace: string, spec: Record<string, unknown>): Promise<void>;
} {
  const created = new Set<string>();
  afterAll(async () => {
    for (const name of created) await deletePolicy(adminKubeConfig(), name);
  });
  return {
    async apply(name, namespace, spec) {
      const body = {
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name },
        spec: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } }, ...spec },
      };
      created.add(name);
      const result = await kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(body) });
      if (result.code !== 0 || result.stderr !== '')
        throw new Error(`kubectl apply of policy ${name}: ${result.stderr}`);
    },
  };
}

/** The operator's user as the apiserver sees it (startOperatorProcess runs it under its ServiceAccount). */
export const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_SERVICE_ACCOUNT}`;

/**
 * Deployment writes (create/update/patch/delete) the apiserver's audit log recorded, by user
 * and namespace: the operator's writes as the apiserver saw them, independent of its counters.
 */
export function auditedDeploymentWrites(filter: { user: string; namespace: string }): number {
  const text = readFileSync(clusterInfo().auditLogPath, 'utf8');
  let count = 0;
  for (const line of text.split('\n')) {
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

/** The shipped MutatingWebhookConfiguration's name. */
export const WEBHOOK_CONFIGURATION = 'graceful-shutdown-operator';

export async function deleteWebhookConfiguration(): Promise<void> {
  await kubectl(['delete', 'mutatingwebhookconfiguration', WEBHOOK_CONFIGURATION, '--ignore-not-found']);
}

/**
 * The shipped configuration with each webhook calling one operator process by URL, and only
 * these namespaces selected (other files' Deployments are not its business); ready once the
 * operator has put its CA into every webhook.
 */
export async function installWebhookConfiguration(
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
  await deleteWebhookConfiguration();
  const result = await kubectl(['create', '-f', '-'], { input: JSON.stringify({ ...shipped, webhooks }) });
  if (result.code !== 0) throw new Error(`creating the webhook configuration: ${result.stderr}`);
  const admission = adminKubeConfig().makeApiClient(AdmissionregistrationV1Api);
  await waitFor('the caBundle injected', async () => {
    const current = await admission.readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION });
    return (current.webhooks ?? []).every((w) => String(w.clientConfig.caBundle ?? '') !== '');
  });
}
