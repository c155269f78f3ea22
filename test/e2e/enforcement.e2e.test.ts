import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  APPLIED_ANNOTATION,
  EXCLUDE_ANNOTATION,
  READINESS_PATH_ANNOTATION,
} from '../../operator/src/api/annotations.ts';
import { GROUP, type GracefulShutdownPolicyStatus, PLURAL, VERSION } from '../../operator/src/api/policy.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import {
  type OperatorProcess,
  readPolicyStatus,
  sampleContainer,
  sampleDeployment,
  waitFor,
} from '../operator/harness.ts';
import { demoServiceDeployment } from './real-pods.ts';
import {
  adminKubeConfig,
  kubectl,
  operatorRecord,
  readDeployment,
  replicaSets,
  rolledOut,
  startOperatorProcess,
  useNamespace,
  usePolicies,
} from './support.ts';

const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
const custom = () => adminKubeConfig().makeApiClient(CustomObjectsApi);

let operator: OperatorProcess;
const policies = usePolicies();
const applyPolicy = policies.apply;
const policyStatus = (name: string) => readPolicyStatus(adminKubeConfig(), name);
/** New ReplicaSets the operator caused, per Deployment, across this file (the closing note's figure). */
const operatorReplicaSets = new Map<string, number>();

beforeAll(async () => {
  operator = await startOperatorProcess('operator-enforcement.log', [
    '--resync-ms',
    '2000',
    '--rollout-check-ms',
    '500',
    '--log-level',
    'debug',
  ]);
});

afterAll(async () => {
  const exit = await operator?.stop();
  expect(exit).toEqual({ code: 0, signal: null });
  console.log(
    `new ReplicaSets caused by the operator, per Deployment: ${JSON.stringify(Object.fromEntries(operatorReplicaSets))}`,
  );
});

/** A Deployment on the kwok nodes, labelled app=<name>: one container `web` serving a port named http. */
const kwokDeployment = (namespace: string, name: string, podSpec: Omit<V1PodSpec, 'containers'> = {}) =>
  sampleDeployment(name, {
    namespace,
    labels: { app: name },
    containers: [sampleContainer({ portName: 'http' })],
    podSpec,
  });

const create = (body: V1Deployment) =>
  apps().createNamespacedDeployment({ namespace: body.metadata?.namespace ?? '', body });
const read = readDeployment;
const settled = rolledOut;

const replicaSetCount = async (namespace: string, name: string) =>
  (await replicaSets(namespace, name)).length;

type Status = GracefulShutdownPolicyStatus;

const workload = (status: Status, name: string) => status.workloads?.find((w) => w.name === name);
const condition = (status: Status, type: string) => status.conditions?.find((c) => c.type === type);

/** A Deployment the operator wrote, the write in the cluster, rolled out. */
async function enforced(namespace: string, name: string, policy: string): Promise<V1Deployment | undefined> {
  const d = await settled(namespace, name);
  return d && (await operatorRecord(d))?.policy === policy ? d : undefined;
}

describe('a rollout budget broken Deployments cannot jam', () => {
  const ns = useNamespace('budget');

  test('30 Deployments, one paused, one unschedulable, one crash-looping (real node), one scaled by hand: the healthy ones converge within maxConcurrent, the broken ones wait with their reason', async () => {
    const healthy = Array.from({ length: 27 }, (_, i) => `app-${String(i).padStart(2, '0')}`);
    for (const name of healthy) await create(kwokDeployment(ns.name, name));
    await create(kwokDeployment(ns.name, 'paused'));
    await create(
      kwokDeployment(ns.name, 'unschedulable', { nodeSelector: { 'example.com/no-such-node': 'x' } }),
    );
    const crashing = demoServiceDeployment(ns.name, 'crashing');
    const app = crashing.spec?.template.spec?.containers[0];
    if (app) app.command = ['/no-such-binary'];
    await create(crashing);
    for (const name of [...healthy, 'paused']) await waitFor(`${name} ready`, () => settled(ns.name, name));
    await apps().patchNamespacedDeployment(
      { namespace: ns.name, name: 'paused', body: [{ op: 'add', path: '/spec/paused', value: true }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    const pausedReplicaSets = await replicaSetCount(ns.name, 'paused');

    const maxConcurrent = 3;
    await applyPolicy('budget-test', ns.name, { mode: 'Enforce', rollout: { maxConcurrent } });

    let maxActive = 0;
    let scaled = false;
    await waitFor(
      'every healthy Deployment enforced',
      async () => {
        const list = (await apps().listNamespacedDeployment({ namespace: ns.name })).items;
        // The operator's own rollouts: its record names the generation, and it is not done.
        const records = await Promise.all(list.map(operatorRecord));
        const active = list.filter((d, i) => {
          const rollout = records[i]?.rollout;
          return rollout !== undefined && rollout.generation === d.metadata?.generation && isRolling(d);
        });
        maxActive = Math.max(maxActive, active.length);
        if (!scaled) {
          scaled = true;
          await apps().patchNamespacedDeploymentScale(
            {
              namespace: ns.name,
              name: 'app-26',
              body: [{ op: 'replace', path: '/spec/replicas', value: 3 }],
            },
            setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
          );
        }
        const done = list.filter(
          (d, i) => healthy.includes(d.metadata?.name ?? '') && records[i] && !isRolling(d),
        );
        return done.length === healthy.length ? done : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 200 },
    );
    console.log(`at most ${maxActive} operator rollouts at once (maxConcurrent ${maxConcurrent})`);
    expect(maxActive).toBeGreaterThan(0);
    expect(maxActive).toBeLessThanOrEqual(maxConcurrent);

    const status = await waitFor('status shows only the broken ones waiting', async () => {
      const s = await policyStatus('budget-test');
      return s.counts?.waiting === 3 && s.counts.applied === healthy.length ? s : undefined;
    });
    expect(workload(status, 'paused')?.reason).toBe('Paused');
    expect(workload(status, 'unschedulable')?.reason).toBe('Unhealthy');
    expect(workload(status, 'crashing')?.reason).toBe('Unhealthy');
    expect(workload(status, 'crashing')?.message).toMatch(/replicas unavailable/);
    expect(status.counts?.waitingReasons).toEqual([
      { reason: 'Unhealthy', count: 2 },
      { reason: 'Paused', count: 1 },
    ]);
    expect(status.counts?.applied).toBe(healthy.length);
    // Not patched while broken or paused: no record, no new ReplicaSet.
    for (const name of ['paused', 'unschedulable', 'crashing'])
      expect(await operatorRecord(await read(ns.name, name)), name).toBeUndefined();
    expect(await replicaSetCount(ns.name, 'paused')).toBe(pausedReplicaSets);
    const scaledOne = await read(ns.name, 'app-26');
    expect(scaledOne.spec?.replicas).toBe(3);
    for (const name of healthy)
      operatorReplicaSets.set(`${ns.name}/${name}`, (await replicaSetCount(ns.name, name)) - 1);
  });
});

describe('verified probes (real node)', () => {
  const ns = useNamespace('probes');

  test('a path the app does not serve: no probe, ProbeUnverified with what was tried; a path it serves: probe injected, pods Ready', async () => {
    const bad = demoServiceDeployment(ns.name, 'bad-path');
    bad.metadata = { ...bad.metadata, annotations: { [READINESS_PATH_ANNOTATION]: '/nope' } };
    await create(bad);
    await create(demoServiceDeployment(ns.name, 'good-path'));
    for (const name of ['bad-path', 'good-path'])
      await waitFor(`${name} ready`, () => settled(ns.name, name));

    await applyPolicy('probes-test', ns.name, { mode: 'Enforce', rollout: { maxConcurrent: 2 } });

    const good = await waitFor(
      'good-path enforced, Ready',
      () => enforced(ns.name, 'good-path', 'probes-test'),
      {
        timeoutMs: 120_000,
      },
    );
    // Verified on a running pod: no ProbeUnverified note.
    expect(workload(await policyStatus('probes-test'), 'good-path')?.message ?? '').not.toMatch(
      /answered|failed/,
    );
    expect(good.spec?.template.spec?.containers[0]?.readinessProbe?.httpGet).toMatchObject({
      path: '/readyz',
    });
    expect(good.status?.readyReplicas).toBe(1);

    const badDone = await waitFor('bad-path enforced', () => enforced(ns.name, 'bad-path', 'probes-test'), {
      timeoutMs: 120_000,
    });
    expect(badDone.spec?.template.spec?.containers[0]?.readinessProbe).toBeUndefined();
    // The rest of the policy still applies.
    expect(badDone.spec?.template.spec?.containers[0]?.lifecycle?.preStop).toBeDefined();
    const status = await waitFor('status names the unverified probe', async () => {
      const s = await policyStatus('probes-test');
      return workload(s, 'bad-path')?.reason === 'ProbeUnverified' ? s : undefined;
    });
    expect(workload(status, 'bad-path')?.message).toMatch(
      /GET http:\/\/10\.88\.0\.\d+:8080\/nope on pod bad-path-.* answered 404/,
    );
    for (const name of ['bad-path', 'good-path'])
      operatorReplicaSets.set(`${ns.name}/${name}`, (await replicaSetCount(ns.name, name)) - 1);
  });
});

describe('the breaker on the operator rollouts (real node)', () => {
  const ns = useNamespace('breaker');

  test('a rollout made to stall: the breaker opens, no further rollouts, Revert restores the previous values', async () => {
    const stall = demoServiceDeployment(ns.name, 'stall');
    stall.metadata = { ...stall.metadata, annotations: { [READINESS_PATH_ANNOTATION]: '/nope' } };
    await create(stall);
    await waitFor('stall ready', () => settled(ns.name, 'stall'));
    const before = await read(ns.name, 'stall');
    const replicaSetsBefore = await replicaSetCount(ns.name, 'stall');

    // Trust: the probe nothing answers is written; new pods never become Ready.
    await applyPolicy('breaker-test', ns.name, {
      mode: 'Enforce',
      readinessProbe: { verification: 'Trust' },
      // The first failure opens the breaker for every namespace (the default holds only its own).
      rollout: { maxConcurrent: 1, progressDeadlineSeconds: 15, onFailure: 'Revert', breakerNamespaces: 1 },
    });
    await waitFor('the operator rollout started', async () => {
      const d = await read(ns.name, 'stall');
      return (await operatorRecord(d))?.rollout ? d : undefined;
    });
    // A healthy Deployment arriving meanwhile: the budget is free, but the breaker will open.
    await create(kwokDeployment(ns.name, 'bystander'));

    const status = await waitFor(
      'breaker open',
      async () => {
        const s = await policyStatus('breaker-test');
        return condition(s, 'RolloutBreakerOpen')?.status === 'True' ? s : undefined;
      },
      { timeoutMs: 90_000 },
    );
    const wide = await kubectl(['get', 'gsp', 'breaker-test', '-o', 'wide']);
    const [header, row] = wide.stdout.trim().split('\n');
    const column = header?.split(/\s+/).indexOf('BREAKER') ?? -1;
    expect(column).toBeGreaterThan(0);
    expect(row?.split(/\s+/)[column]).toBe('True');
    expect(condition(status, 'RolloutBreakerOpen')?.message).toMatch(
      /failed in 1 namespace \(breaker\S*\), rollout.breakerNamespaces is 1; first: breaker\S*\/stall: .*rollout the operator started/,
    );

    const reverted = await waitFor(
      'reverted and rolled back',
      async () => {
        const d = await settled(ns.name, 'stall');
        return d && (await operatorRecord(d))?.failure?.template ? d : undefined;
      },
      { timeoutMs: 90_000 },
    );
    const podSpec = (d: V1Deployment) => d.spec?.template.spec;
    expect(podSpec(reverted)?.containers[0]?.readinessProbe).toBeUndefined();
    expect(podSpec(reverted)?.containers[0]?.lifecycle).toEqual(podSpec(before)?.containers[0]?.lifecycle);
    expect(podSpec(reverted)?.terminationGracePeriodSeconds).toBe(
      podSpec(before)?.terminationGracePeriodSeconds,
    );
    expect(reverted.status?.readyReplicas).toBe(1);
    // The revert's JSON patch left no Update entry of the operator's: the restored values are
    // nobody's, as before the operator's change.
    const entries = (reverted.metadata?.managedFields ?? []).filter(
      (e) => e.manager === 'graceful-shutdown-operator',
    );
    expect(entries.map((e) => e.operation)).toEqual(['Apply']);
    // Back on the ReplicaSet it had: the only new one is the failed rollout's.
    expect(await replicaSetCount(ns.name, 'stall')).toBe(replicaSetsBefore + 1);
    operatorReplicaSets.set(`${ns.name}/stall`, 1);

    const events = (
      await core().listNamespacedEvent({ namespace: ns.name, fieldSelector: 'involvedObject.name=stall' })
    ).items;
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['RolloutFailed', 'RolloutReverted']));

    // While the breaker is open nothing else rolls: bystander waits, untouched.
    await waitFor('bystander ready', () => settled(ns.name, 'bystander'));
    const held = await waitFor('bystander reported as held by the breaker', async () => {
      const s = await policyStatus('breaker-test');
      const held = workload(s, 'bystander')?.reason === 'BreakerOpen';
      return held && workload(s, 'stall')?.reason === 'RolloutFailed' ? s : undefined;
    });
    expect(held.counts?.blockedByBreaker).toBe(2);
    expect(await operatorRecord(await read(ns.name, 'bystander'))).toBeUndefined();
    expect(await replicaSetCount(ns.name, 'bystander')).toBe(1);
  });
});

describe('the breaker with onFailure Pause (real node)', () => {
  const ns = useNamespace('pause');

  test('a stalled rollout: its namespace held (not the policy), the Deployment left as it is, the failure recorded', async () => {
    const stall = demoServiceDeployment(ns.name, 'stall');
    stall.metadata = { ...stall.metadata, annotations: { [READINESS_PATH_ANNOTATION]: '/nope' } };
    await create(stall);
    await waitFor('stall ready', () => settled(ns.name, 'stall'));
    await applyPolicy('pause-test', ns.name, {
      mode: 'Enforce',
      readinessProbe: { verification: 'Trust' },
      rollout: { maxConcurrent: 1, progressDeadlineSeconds: 15, onFailure: 'Pause' },
    });
    const failed = await waitFor(
      'the failure recorded',
      async () => {
        const d = await read(ns.name, 'stall');
        return (await operatorRecord(d))?.failure ? d : undefined;
      },
      { timeoutMs: 90_000 },
    );
    expect((await operatorRecord(failed))?.failure).toMatchObject({
      reason: 'RolloutTimedOut',
      template: expect.any(String),
    });
    // Paused, not reverted: the operator's probe stays, and so does the stalled rollout.
    expect(failed.spec?.template.spec?.containers[0]?.readinessProbe?.httpGet?.path).toBe('/nope');
    const status = await waitFor('namespace held', async () => {
      const s = await policyStatus('pause-test');
      return s.heldNamespaces?.includes(ns.name) ? s : undefined;
    });
    expect(condition(status, 'RolloutBreakerOpen')).toMatchObject({
      status: 'False',
      reason: 'NamespacesHeld',
    });
    expect(workload(status, 'stall')?.reason).toBe('RolloutFailed');
    const events = (
      await core().listNamespacedEvent({ namespace: ns.name, fieldSelector: 'involvedObject.name=stall' })
    ).items;
    expect(events.map((e) => e.reason)).toContain('RolloutFailed');
    expect(events.map((e) => e.reason)).not.toContain('RolloutReverted');
    operatorReplicaSets.set(`${ns.name}/stall`, (await replicaSetCount(ns.name, 'stall')) - 1);
  });
});

describe('known sidecars', () => {
  const ns = useNamespace('sidecars');

  test('an Istio proxy first in the pod gets nothing; the app container gets the probe on its own port', async () => {
    const meshed = kwokDeployment(ns.name, 'meshed');
    const podSpec = meshed.spec?.template.spec;
    if (!podSpec) throw new Error('no pod spec');
    podSpec.containers = [
      { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.24.0', ports: [{ containerPort: 15090 }] },
      // Named: kwok pods cannot be asked, and only a port known to speak HTTP gets httpGet then.
      { name: 'app', image: 'registry.example/app:1', ports: [{ name: 'http', containerPort: 8080 }] },
    ];
    await create(meshed);
    await waitFor('meshed ready', () => settled(ns.name, 'meshed'));
    await applyPolicy('sidecars-test', ns.name, { mode: 'Enforce' });
    const done = await waitFor('meshed enforced', () => enforced(ns.name, 'meshed', 'sidecars-test'));
    const [proxy, app] = done.spec?.template.spec?.containers ?? [];
    expect(proxy?.readinessProbe).toBeUndefined();
    expect(proxy?.lifecycle).toBeUndefined();
    expect(app?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 8080 });
    expect(app?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    operatorReplicaSets.set(`${ns.name}/meshed`, (await replicaSetCount(ns.name, 'meshed')) - 1);
  });
});

describe('ownership from the apiserver', () => {
  const ns = useNamespace('ownership');

  test('opt out and in, record deleted, policy switched and back: no new ReplicaSet', async () => {
    await create(kwokDeployment(ns.name, 'owned'));
    await waitFor('owned ready', () => settled(ns.name, 'owned'));
    await applyPolicy('ownership-a', ns.name, { mode: 'Enforce' });
    await waitFor('enforced by a', () => enforced(ns.name, 'owned', 'ownership-a'));
    const replicaSets = await replicaSetCount(ns.name, 'owned');
    expect(replicaSets).toBe(2);
    const template = JSON.stringify((await read(ns.name, 'owned')).spec?.template);
    const unchanged = async () => {
      const d = await read(ns.name, 'owned');
      expect(JSON.stringify(d.spec?.template)).toBe(template);
      expect(await replicaSetCount(ns.name, 'owned')).toBe(replicaSets);
    };

    await kubectl(['annotate', '-n', ns.name, 'deployment/owned', `${EXCLUDE_ANNOTATION}=true`]);
    await waitFor('released', async () => {
      const d = await read(ns.name, 'owned');
      return d.metadata?.annotations?.[APPLIED_ANNOTATION] === undefined ? d : undefined;
    });
    await unchanged();

    await kubectl(['annotate', '-n', ns.name, 'deployment/owned', `${EXCLUDE_ANNOTATION}-`]);
    await waitFor('re-adopted', () => enforced(ns.name, 'owned', 'ownership-a'));
    await unchanged();

    await kubectl(['annotate', '-n', ns.name, 'deployment/owned', `${APPLIED_ANNOTATION}-`]);
    await waitFor('record written again', () => enforced(ns.name, 'owned', 'ownership-a'));
    await unchanged();

    await applyPolicy('ownership-b', ns.name, { mode: 'Enforce', priority: 10 });
    await waitFor('taken over by b', () => enforced(ns.name, 'owned', 'ownership-b'));
    await unchanged();
    await custom().deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      name: 'ownership-b',
    });
    await waitFor('back to a', () => enforced(ns.name, 'owned', 'ownership-a'));
    await unchanged();
    operatorReplicaSets.set(`${ns.name}/owned`, replicaSets - 1);
  });
});
