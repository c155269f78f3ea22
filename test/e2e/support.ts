// The shared local control plane started by global-setup.ts, for the e2e files that run on it:
// what ties a test to that cluster (vitest's inject) or to a file's lifetime (beforeAll/afterAll),
// and the helpers of test/operator/harness.ts bound to that cluster. Everything else, and every
// helper a file with a cluster of its own needs, is in the harness.
import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig, type V1Deployment, type V1Toleration } from '@kubernetes/client-node';
import { afterAll, beforeAll, inject } from 'vitest';
import { API_VERSION, KIND } from '../../operator/src/api/policy.ts';
import type { CommandResult, KubectlOptions, OperatorProcess } from '../operator/harness.ts';
import * as harness from '../operator/harness.ts';

export interface ClusterInfo extends harness.TestCluster {
  binDir: string;
  server: string;
  kubernetesVersion: string;
  auditLogPath: string;
  /** http://127.0.0.1:PORT: Prometheus scraping the real node's pods annotated prometheus.io/scrape. */
  prometheusUrl: string;
  /** http://<node IP on the pod bridge>:PORT/api/v1/otlp/v1/metrics: where pods push OTLP metrics. */
  prometheusOtlpUrl: string;
  realNode: {
    /** nodeSelector and tolerations that put a pod on the real node. */
    placement: { nodeSelector: Record<string, string>; tolerations: V1Toleration[] };
    operatorImage: string;
    demoServiceImage: string;
    containerdSocket: string;
    /** containerd's registry hosts directory (RealNode.registryHosts). */
    registryHosts: string;
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

export function adminKubeConfig(): KubeConfig {
  return harness.adminKubeConfig(clusterInfo());
}

/** The project's kubectl on the shared cluster as its admin (or opts.kubeconfig); never throws on a non-zero exit. */
export function kubectl(args: string[], opts: KubectlOptions = {}): Promise<CommandResult> {
  return harness.kubectl(clusterInfo(), args, opts);
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

/**
 * Policies server-side applied by this file, each scoped to one namespace (policies are
 * cluster-scoped: tests must not meet), deleted after the file's tests.
 */
export function usePolicies(): {
  apply(name: string, namespace: string, spec: Record<string, unknown>): Promise<void>;
} {
  const created = new Set<string>();
  afterAll(async () => {
    for (const name of created) await harness.deletePolicy(adminKubeConfig(), name);
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

// The harness's helpers on the shared cluster.

/** harness.startOperator: the operator as a process under its ServiceAccount, ready. */
export function startOperatorProcess(logName: string, args: string[]): Promise<OperatorProcess> {
  return harness.startOperator(clusterInfo(), { log: logName, args });
}

export function readDeployment(namespace: string, name: string): Promise<V1Deployment> {
  return harness.readDeployment(clusterInfo(), namespace, name);
}

/** The Deployment once no rollout is in progress (for waitFor), else undefined. */
export function rolledOut(namespace: string, name: string): Promise<V1Deployment | undefined> {
  return harness.rolledOut(clusterInfo(), namespace, name);
}

export function replicaSets(namespace: string, app: string) {
  return harness.replicaSets(clusterInfo(), namespace, app);
}

export function operatorRecord(deployment: V1Deployment) {
  return harness.operatorRecord(clusterInfo(), deployment);
}

/** The operator's Deployment writes in a namespace, from the shared cluster's audit log. */
export function auditedDeploymentWrites(filter: { user: string; namespace: string }): number {
  return harness.auditedDeploymentWrites(clusterInfo().auditLogPath, filter);
}

export function installWebhookConfiguration(
  operators: OperatorProcess[],
  namespaces: string[],
): Promise<void> {
  return harness.installWebhookConfiguration(clusterInfo(), operators, namespaces);
}

export function deleteWebhookConfiguration(): Promise<void> {
  return harness.deleteWebhookConfiguration(clusterInfo());
}
