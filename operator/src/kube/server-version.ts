// What the apiserver says its version is (decides native preStop sleep support).
import type { KubeConfig } from '@kubernetes/client-node';
import { VersionApi } from '@kubernetes/client-node';
import type { ServerVersion } from '../policy/desired.ts';

export async function readServerVersion(kubeConfig: KubeConfig): Promise<ServerVersion> {
  const info = await kubeConfig.makeApiClient(VersionApi).getCode();
  return { major: info.major, minor: info.minor, gitVersion: info.gitVersion };
}
