// One control plane for the whole e2e run; each test file works in its own namespace.
import type { TestProject } from 'vitest/node';
import { LocalCluster } from '../cluster/cluster.ts';
import type { ClusterInfo } from './support.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = await LocalCluster.start({ nodes: 3 });
  const info: ClusterInfo = {
    kubeconfig: cluster.kubeconfigPath,
    kubectl: cluster.binaries.kubectl,
    binDir: cluster.binaries.dir,
    server: cluster.server,
    kubernetesVersion: cluster.kubernetesVersion,
    auditLogPath: cluster.auditLogPath,
    workDir: cluster.workDir,
  };
  project.provide('cluster', info);
  return async () => {
    const failed = project.vitest.state.getCountOfFailedTests() > 0;
    const logs = await cluster.stop({ keepLogs: failed });
    if (logs) process.stderr.write(`e2e tests failed: control-plane component logs kept in ${logs}\n`);
  };
}
