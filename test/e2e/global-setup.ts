// One cluster for the whole e2e run: the control plane, kwok nodes, one real node running the
// project's images and a Prometheus scraping its annotated pods. Each test file works in its own
// namespace.
import type { TestProject } from 'vitest/node';
import { LocalCluster } from '../cluster/cluster.ts';
import { realNodePlacement } from '../cluster/node/node.ts';
import type { ClusterInfo } from './support.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = await LocalCluster.start({ nodes: 3, realNode: true, prometheus: true });
  const { node, images, prometheusUrl, prometheusOtlpUrl } = cluster;
  if (!node || !images) throw new Error('the cluster started without its real node');
  if (!prometheusUrl || !prometheusOtlpUrl) throw new Error('the cluster started without its Prometheus');
  const info: ClusterInfo = {
    kubeconfig: cluster.kubeconfigPath,
    kubectl: cluster.binaries.kubectl,
    binDir: cluster.binaries.dir,
    server: cluster.server,
    kubernetesVersion: cluster.kubernetesVersion,
    auditLogPath: cluster.auditLogPath,
    workDir: cluster.workDir,
    prometheusUrl,
    prometheusOtlpUrl,
    realNode: {
      placement: realNodePlacement,
      operatorImage: images.operator.ref,
      demoServiceImage: images.demoService.ref,
      containerdSocket: node.containerdSocket,
      registryHosts: node.registryHosts,
    },
  };
  project.provide('cluster', info);
  return async () => {
    const failed = project.vitest.state.getCountOfFailedTests() > 0;
    const logs = await cluster.stop({ keepLogs: failed });
    if (logs) process.stderr.write(`e2e tests failed: cluster component logs kept in ${logs}\n`);
  };
}
