// The cluster a test, the demo or a benchmark works against, and the project's kubectl run on it.
// No vitest here: harness.ts (which re-exports this) is what tests import.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { type LocalCluster, loadAdminKubeConfig } from '../cluster/cluster.ts';

/**
 * A cluster as the helpers take it: the shared e2e cluster's ClusterInfo (support.ts) is one, a
 * LocalCluster a test starts itself becomes one with testCluster().
 */
export interface TestCluster {
  /** The admin kubeconfig's path (system:masters). */
  kubeconfig: string;
  /** The project's kubectl binary (built with the control plane, same version). */
  kubectl: string;
  /** The cluster's work directory: logs/ in it is kept when a run fails. */
  workDir: string;
}

export function testCluster(cluster: LocalCluster): TestCluster {
  return { kubeconfig: cluster.kubeconfigPath, kubectl: cluster.binaries.kubectl, workDir: cluster.workDir };
}

/** Where operator logs and ServiceAccount kubeconfigs go: beside the control plane's logs. */
export function logDir(cluster: TestCluster): string {
  return join(cluster.workDir, 'logs');
}

/** A client for the cluster as its admin (a new one each call: no connection outlives a test). */
export function adminKubeConfig(cluster: Pick<TestCluster, 'kubeconfig'>): KubeConfig {
  return loadAdminKubeConfig(cluster.kubeconfig);
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  /** Standard input (a manifest for `-f -`). */
  input?: string;
  /** Another identity's kubeconfig instead of the admin's, e.g. a tenant's. */
  kubeconfig?: string;
}

/**
 * Runs the project's kubectl on the cluster; resolves with its exit code and output, never
 * rejects on a non-zero exit (tests assert on both). Killed after 150 s, past every --timeout
 * the project passes it.
 */
export function kubectl(
  cluster: Pick<TestCluster, 'kubeconfig' | 'kubectl'>,
  args: string[],
  opts: KubectlOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cluster.kubectl,
      ['--kubeconfig', opts.kubeconfig ?? cluster.kubeconfig, ...args],
      { maxBuffer: 64 * 1024 * 1024, timeout: 150_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(err);
        else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input ?? '');
  });
}

/** kubectl that must succeed: its stdout, or an error naming the command and kubectl's stderr. */
export async function kubectlOk(
  cluster: Pick<TestCluster, 'kubeconfig' | 'kubectl'>,
  args: string[],
  opts: KubectlOptions = {},
): Promise<string> {
  const result = await kubectl(cluster, args, opts);
  if (result.code !== 0)
    throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}
