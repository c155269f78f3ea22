// What depends on the Kubernetes version, checked on whichever the cluster runs: the current
// release in `npm test`, the oldest supported one in `npm run test:compat` (README, Kubernetes
// versions). The preStop's form is the one version-dependent write the operator makes: the
// native sleep action from 1.30, a sleep of 0 s from 1.33, `exec sleep` where the apiserver
// would refuse the native form.
import { ApiException, AppsV1Api, type V1Container, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { type OperatorProcess, sampleContainer, sampleDeployment, waitFor } from '../operator/harness.ts';
import {
  adminKubeConfig,
  clusterInfo,
  rolledOut,
  startOperatorProcess,
  useNamespace,
  usePolicies,
} from './support.ts';

const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);

/** The cluster's minor version, from the release it was built from (v1.30.14 -> 30). */
function minor(): number {
  const match = /^v1\.(\d+)\./.exec(clusterInfo().kubernetesVersion);
  if (!match?.[1]) throw new Error(`not a 1.x release: ${clusterInfo().kubernetesVersion}`);
  return Number(match[1]);
}

function deployment(
  namespace: string,
  name: string,
  container: V1Container = sampleContainer(),
): V1Deployment {
  return sampleDeployment(name, { namespace, labels: { app: name }, replicas: 1, containers: [container] });
}

const ns = useNamespace('versions');
const policies = usePolicies();
let operator: OperatorProcess;

beforeAll(async () => {
  operator = await startOperatorProcess('versions-operator.log', ['--resync-ms', '2000']);
});

afterAll(async () => {
  expect(await operator?.stop()).toEqual({ code: 0, signal: null });
});

describe(`the preStop form follows the apiserver's version`, () => {
  test('the apiserver takes a native sleep of 0 s only from 1.33 (why the operator falls back to exec sleep)', async () => {
    const dryRun = (seconds: number) =>
      apps()
        .createNamespacedDeployment({
          namespace: ns.name,
          body: deployment(
            ns.name,
            'native-sleep',
            sampleContainer({ lifecycle: { preStop: { sleep: { seconds } } } }),
          ),
          dryRun: 'All',
        })
        .then(
          () => 'accepted',
          (err: unknown) => (err instanceof ApiException ? `${err.code} ${String(err.body)}` : String(err)),
        );
    const zero = await dryRun(0);
    if (minor() >= 33) expect(zero).toBe('accepted');
    else {
      expect(zero).toMatch(/^422 /);
      expect(zero).toContain('lifecycle.preStop.sleep: Invalid value: 0: must be greater than 0');
    }
    // The control: 1 s is taken from 1.30 on.
    expect(await dryRun(1)).toBe('accepted');
  });

  test('Enforce with preStop Auto: native sleep for 5 s; for 0 s native from 1.33, exec sleep before; both roll out', async () => {
    await apps().createNamespacedDeployment({ namespace: ns.name, body: deployment(ns.name, 'five') });
    await apps().createNamespacedDeployment({ namespace: ns.name, body: deployment(ns.name, 'zero') });
    for (const [name, seconds] of [
      ['five', 5],
      ['zero', 0],
    ] as const)
      await policies.apply(`versions-${name}-${ns.name}`, ns.name, {
        mode: 'Enforce',
        deploymentSelector: { matchLabels: { app: name } },
        preStop: { seconds },
        readinessProbe: { inject: 'Never' },
      });

    const written = async (name: string) =>
      waitFor(`${name} enforced and rolled out`, async () => {
        const d = await rolledOut(ns.name, name);
        return d?.metadata?.annotations?.[APPLIED_ANNOTATION] && (d.metadata.generation ?? 0) >= 2
          ? d
          : undefined;
      });
    const preStop = (d: V1Deployment) => d.spec?.template.spec?.containers[0]?.lifecycle?.preStop;

    expect(preStop(await written('five'))).toEqual({ sleep: { seconds: 5 } });
    expect(preStop(await written('zero'))).toEqual(
      minor() >= 33 ? { sleep: { seconds: 0 } } : { exec: { command: ['sleep', '0'] } },
    );
  });
});
