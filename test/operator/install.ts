// Installs what a cluster admin installs before the operator runs: its namespace, the CRD and
// the shipped RBAC (config/crd, config/rbac), with the project's kubectl and kustomize.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { clusterDir } from '../cluster/versions.ts';

const run = promisify(execFile);
export const repoRoot = join(clusterDir, '..', '..');
export const OPERATOR_NAMESPACE = 'graceful-shutdown-system';
export const OPERATOR_SERVICE_ACCOUNT = 'graceful-shutdown-operator';

async function kubectl(kubectlPath: string, kubeconfig: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(kubectlPath, ['--kubeconfig', kubeconfig, ...args], {
      maxBuffer: 32 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`kubectl ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** Idempotent: server-side apply of the namespace, CRD and RBAC; waits for the CRD to be served. */
export async function installOperatorPrerequisites(kubectlPath: string, kubeconfig: string): Promise<void> {
  const apply = (dir: string) =>
    kubectl(kubectlPath, kubeconfig, [
      'apply',
      '--server-side',
      '--field-manager=gso-install',
      '-k',
      join(repoRoot, dir),
    ]);
  await kubectl(kubectlPath, kubeconfig, [
    'apply',
    '--server-side',
    '--field-manager=gso-install',
    '-f',
    join(repoRoot, 'config', 'manager', 'namespace.yaml'),
  ]);
  await apply('config/crd');
  await apply('config/rbac');
  await kubectl(kubectlPath, kubeconfig, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/gracefulshutdownpolicies.gracefulshutdown.dev',
  ]);
}
