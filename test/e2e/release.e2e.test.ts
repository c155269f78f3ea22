// `gsp release` on the real apiserver: the operator (a process under its ServiceAccount) enforces a
// policy on Deployments of two namespaces; while it runs, the release is refused; once it is
// stopped, a dry run changes nothing, a release keeps the values and drops the record under the
// operator's field manager, and a hand-over (--to-manager) leaves the values owned by the other
// manager alone. No pod template changes and no ReplicaSet is made: no pod restarts.
import { AppsV1Api, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION, FIELD_MANAGER } from '../../operator/src/api/annotations.ts';
import { gspRun } from '../../operator/src/cli/test-support.ts';
import {
  createPolicy,
  deletePolicy,
  installOperatorPrerequisites,
  type OperatorProcess,
  sampleDeployment,
  waitFor,
} from '../operator/harness.ts';
import { adminKubeConfig, clusterInfo, replicaSets, startOperatorProcess, useNamespace } from './support.ts';

const kept = useNamespace('release-kept');
const handed = useNamespace('release-handed');
const POLICY = 'release';
const GITOPS = 'gitops-controller';
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
let operator: OperatorProcess | undefined;
/** Each Deployment's pod template once enforced, as plain data. */
const templates = new Map<string, unknown>();
const templateOf = (d: V1Deployment) => JSON.parse(JSON.stringify(d.spec?.template));
/** How many ReplicaSets each has once enforced: a restart would make one more. */
const rsCount = new Map<string, number>();
/** The grace period the operator wrote on each. */
const graces = new Map<string, number | undefined>();

const read = (namespace: string, name: string) => apps().readNamespacedDeployment({ namespace, name });
const managers = (d: V1Deployment) =>
  (d.metadata?.managedFields ?? []).filter((e) => !e.subresource).map((e) => `${e.manager}/${e.operation}`);
const release = (...args: string[]) => gspRun(['release', '--kubeconfig', clusterInfo().kubeconfig, ...args]);

beforeAll(async () => {
  await installOperatorPrerequisites(clusterInfo().kubectl, clusterInfo().kubeconfig);
  for (const namespace of [kept.name, handed.name])
    for (const name of ['a', 'b'])
      await apps().createNamespacedDeployment({ namespace, body: sampleDeployment(name, { namespace }) });
  await createPolicy(adminKubeConfig(), POLICY, {
    mode: 'Enforce',
    namespaceSelector: {
      matchExpressions: [
        { key: 'kubernetes.io/metadata.name', operator: 'In', values: [kept.name, handed.name] },
      ],
    },
    preStop: { seconds: 5 },
    terminationGracePeriod: { minSeconds: 20 },
    observedLatency: { source: 'None' },
  });
  operator = await startOperatorProcess('operator-release.log', []);
  for (const namespace of [kept.name, handed.name])
    for (const name of ['a', 'b']) {
      const d = await waitFor(`the operator to enforce ${namespace}/${name}`, async () => {
        const live = await read(namespace, name);
        return live.metadata?.annotations?.[APPLIED_ANNOTATION] ? live : undefined;
      });
      templates.set(`${namespace}/${name}`, templateOf(d));
      // The enforcement's rollout is done: its ReplicaSet exists.
      await waitFor(`${namespace}/${name} rolled out`, async () => {
        const live = await read(namespace, name);
        return live.status?.observedGeneration === live.metadata?.generation &&
          live.status?.updatedReplicas === live.spec?.replicas
          ? true
          : undefined;
      });
      rsCount.set(`${namespace}/${name}`, (await replicaSets(namespace, name)).length);
      graces.set(`${namespace}/${name}`, d.spec?.template.spec?.terminationGracePeriodSeconds);
    }
}, 240_000);

afterAll(async () => {
  await operator?.stop();
  await deletePolicy(adminKubeConfig(), POLICY);
});

describe('gsp release', () => {
  test('refused while the operator runs: it would take the Deployments back', async () => {
    const refused = await release();
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(
      /the operator is running \(Lease graceful-shutdown-system\/graceful-shutdown-operator held by .+, renewed within \d+ s\)/,
    );
    // No Lease where it looks: it cannot tell, so it refuses too, saying where it looked.
    const nowhere = await release('--operator-namespace', 'nowhere');
    expect(nowhere.code).toBe(3);
    expect(nowhere.stderr).toContain(
      'no Lease nowhere/graceful-shutdown-operator: cannot tell whether the operator is running',
    );
    expect((await read(kept.name, 'a')).metadata?.annotations?.[APPLIED_ANNOTATION]).toBeDefined();
    await operator?.stop();
    operator = undefined;
  });

  test('a dry run says what it would do and changes nothing', async () => {
    const before = await read(handed.name, 'a');
    const dry = await release('-n', handed.name, '--to-manager', GITOPS, '--dry-run');
    expect(dry.stderr).toBe('');
    expect(dry.code, dry.stdout + dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`would release ${handed.name}/a: kept .*preStop on web`));
    expect(dry.stdout).toContain(`(owned by ${GITOPS}); no restart`);
    const after = await read(handed.name, 'a');
    expect(after.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
  });

  test('release: the record goes, the values stay under the operator’s field manager, no restart', async () => {
    const released = await release('-n', kept.name);
    expect(released.stderr).toBe('');
    expect(released.code, released.stdout + released.stderr).toBe(0);
    expect(released.stdout).toContain('gsp release: 2 of 2 Deployments released without a restart');
    for (const name of ['a', 'b']) {
      const d = await read(kept.name, name);
      expect(d.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeUndefined();
      expect(templateOf(d)).toEqual(templates.get(`${kept.name}/${name}`));
      expect(await replicaSets(kept.name, name)).toHaveLength(rsCount.get(`${kept.name}/${name}`) ?? -1);
      expect(d.spec?.template.spec?.terminationGracePeriodSeconds).toBe(graces.get(`${kept.name}/${name}`));
      expect(d.spec?.template.spec?.containers[0]?.lifecycle?.preStop).toBeDefined();
      expect(managers(d)).toContain(`${FIELD_MANAGER}/Apply`);
    }
    // The other namespace was not touched.
    expect((await read(handed.name, 'a')).metadata?.annotations?.[APPLIED_ANNOTATION]).toBeDefined();
    // Nothing left to release there; a hand-over still finds the values the operator owns.
    expect((await release('-n', kept.name)).stdout).toContain('no Deployment is managed by the operator');
    expect((await release('-n', kept.name, '--to-manager', GITOPS, '--dry-run')).stdout).toContain(
      'gsp release: 2 of 2 Deployments would be released without a restart',
    );
  });

  test('hand-over: the values belong to the other manager, the operator owns nothing, no restart', async () => {
    const handedOver = await release('-n', handed.name, '--to-manager', GITOPS);
    expect(handedOver.stderr).toBe('');
    expect(handedOver.code, handedOver.stdout + handedOver.stderr).toBe(0);
    for (const name of ['a', 'b']) {
      const d = await read(handed.name, name);
      expect(d.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeUndefined();
      expect(templateOf(d)).toEqual(templates.get(`${handed.name}/${name}`));
      expect(await replicaSets(handed.name, name)).toHaveLength(rsCount.get(`${handed.name}/${name}`) ?? -1);
      expect(d.spec?.template.spec?.terminationGracePeriodSeconds).toBe(graces.get(`${handed.name}/${name}`));
      expect(d.spec?.template.spec?.containers[0]?.lifecycle?.preStop).toBeDefined();
      expect(managers(d).filter((m) => m.startsWith(`${FIELD_MANAGER}/`))).toEqual([]);
      const gitops = d.metadata?.managedFields?.find((e) => e.manager === GITOPS && e.operation === 'Apply');
      expect(JSON.stringify(gitops?.fieldsV1)).toContain('f:preStop');
      expect(JSON.stringify(gitops?.fieldsV1)).toContain('f:readinessProbe');
    }
  });
});
