import { AppsV1Api, CoreV1Api, type V1Container, type V1Deployment, Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  APPLIED_ANNOTATION,
  EXCLUDE_ANNOTATION,
  READINESS_PORT_ANNOTATION,
} from '../../operator/src/api/annotations.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import {
  OPERATOR_USER,
  type OperatorProcess,
  readPolicyStatus,
  sampleContainer,
  sampleDeployment,
  waitFor,
} from '../operator/harness.ts';
import {
  adminKubeConfig,
  auditedDeploymentWrites,
  kubectl,
  readDeployment,
  replicaSets,
  rolledOut,
  startOperatorProcess,
  useNamespace,
  usePolicies,
} from './support.ts';

const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
const RESYNC_MS = 2_000;

let operator: OperatorProcess;
let operatorStartedAt = 0;
const policies = usePolicies();
const applyPolicy = policies.apply;
const policyStatus = (name: string) => readPolicyStatus(adminKubeConfig(), name);

beforeAll(async () => {
  operatorStartedAt = Date.now();
  operator = await startOperatorProcess('operator.log', [
    '--resync-ms',
    String(RESYNC_MS),
    '--rollout-check-ms',
    '500',
    '--log-level',
    'debug',
  ]);
});

afterAll(async () => {
  const exit = await operator?.stop();
  // Graceful shutdown on SIGTERM: finish in-flight work, release the lease, exit 0.
  expect(exit).toEqual({ code: 0, signal: null });
});

function container(name: string, extra: Partial<V1Container> = {}): V1Container {
  return { name, image: `registry.example/${name}:1`, ...extra };
}

/** Labelled app=<name> (and `labels`), 2 replicas, one container `web` serving a port named http. */
function createDeployment(
  namespace: string,
  name: string,
  opts: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    containers?: V1Container[];
    replicas?: number;
  } = {},
): Promise<V1Deployment> {
  const body = sampleDeployment(name, {
    namespace,
    annotations: opts.annotations,
    labels: { app: name, ...opts.labels },
    replicas: opts.replicas ?? 2,
    containers: opts.containers ?? [sampleContainer({ portName: 'http' })],
  });
  return apps().createNamespacedDeployment({ namespace, body });
}

function webContainer(d: V1Deployment): V1Container | undefined {
  return d.spec?.template?.spec?.containers.find((c) => c.name === 'web');
}

async function events(
  namespace: string,
  name: string,
): Promise<{ reason?: string; type?: string; message?: string }[]> {
  const list = await core().listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
  return list.items;
}

describe('Enforce', () => {
  const ns = useNamespace('enforce');

  test('matching Deployments get the settings and roll out; user settings, opt-outs and non-matches are kept', async () => {
    await createDeployment(ns.name, 'plain');
    await createDeployment(ns.name, 'user-set', {
      containers: [
        container('web', {
          ports: [{ containerPort: 9000 }],
          readinessProbe: { httpGet: { path: '/ready', port: 9000 } },
          lifecycle: { preStop: { exec: { command: ['sleep', '20'] } } },
        }),
      ],
    });
    await createDeployment(ns.name, 'opted-out', { annotations: { [EXCLUDE_ANNOTATION]: 'true' } });
    await createDeployment(ns.name, 'other-team', { labels: { team: 'other' } });
    for (const name of ['plain', 'user-set', 'opted-out', 'other-team'])
      await waitFor(`${name} ready`, () => rolledOut(ns.name, name));
    const before = new Map(
      await Promise.all(
        ['opted-out', 'other-team'].map(async (n) => [n, await readDeployment(ns.name, n)] as const),
      ),
    );

    await applyPolicy('enforce-test', ns.name, {
      mode: 'Enforce',
      deploymentSelector: { matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] },
      preStop: { seconds: 5 },
      terminationGracePeriod: { minSeconds: 20, maxSeconds: 120, overheadSeconds: 5 },
      rollout: { maxConcurrent: 2 },
    });

    const plain = await waitFor('plain enforced and rolled out', async () => {
      const d = await rolledOut(ns.name, 'plain');
      return d?.metadata?.annotations?.[APPLIED_ANNOTATION] && (d.metadata.generation ?? 0) >= 2
        ? d
        : undefined;
    });
    const web = webContainer(plain);
    // No port configured: the first declared port of the first container that declares one.
    expect(web?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 8080 });
    // Kubernetes 1.37 supports the native sleep action: Auto picks it.
    expect(web?.lifecycle?.preStop).toMatchObject({ sleep: { seconds: 5 } });
    // preStop 5 + drain 0 (latency unknown) + overhead 5 = 10, raised to minSeconds 20; the
    // Deployment's 30 s is longer and inject IfShorter keeps it.
    expect(plain.spec?.template?.spec?.terminationGracePeriodSeconds).toBe(30);
    expect(JSON.parse(plain.metadata?.annotations?.[APPLIED_ANNOTATION] ?? '{}')).toMatchObject({
      policy: 'enforce-test',
    });
    expect((await events(ns.name, 'plain')).map((e) => e.reason)).toContain('ShutdownSettingsApplied');

    const status = await waitFor('status counts', async () => {
      const s = await policyStatus('enforce-test');
      return s?.counts?.compliant === 2 ? s : undefined;
    });
    expect(status.counts).toMatchObject({ matched: 2, compliant: 2, nonCompliant: 0, exempt: 1 });
    expect(status.conditions?.find((c) => c.type === 'Compliant')?.status).toBe('True');
    expect(status.workloads?.find((w) => w.name === 'opted-out')?.verdict).toBe('Exempt');

    // The user's own probe and 20 s preStop stay; their default 30 s grace already covers it.
    const userSet = await readDeployment(ns.name, 'user-set');
    expect(userSet.metadata?.generation).toBe(1);
    expect(webContainer(userSet)?.readinessProbe?.httpGet).toMatchObject({ path: '/ready', port: 9000 });
    expect(webContainer(userSet)?.lifecycle?.preStop).toEqual({ exec: { command: ['sleep', '20'] } });
    expect(userSet.spec?.template?.spec?.terminationGracePeriodSeconds).toBe(30);

    // Opted out and not selected: never written to.
    for (const [name, old] of before) {
      const now = await readDeployment(ns.name, name);
      expect(now.metadata?.resourceVersion, name).toBe(old.metadata?.resourceVersion);
      expect(now.metadata?.annotations?.[APPLIED_ANNOTATION], name).toBeUndefined();
    }
  });

  test('steady state: no Deployment writes over several resync periods', async () => {
    const writes = await operator.sample('gracefulshutdown_deployment_writes_total', {
      policy: 'enforce-test',
    });
    expect(writes).toBeGreaterThanOrEqual(1);
    const reconciles = await operator.sample('controller_runtime_reconcile_total', {
      controller: 'deployment-shutdown',
    });
    // The apiserver's audit log agrees with the operator's own counter, before and after.
    const audited = auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns.name });
    expect(audited).toBe(writes);
    const statusWrites = await operator.sample('gracefulshutdown_policy_status_writes_total', {
      policy: 'enforce-test',
    });
    expect(statusWrites).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 4 * RESYNC_MS));
    // Status too is written only when it changes.
    expect(
      await operator.sample('gracefulshutdown_policy_status_writes_total', { policy: 'enforce-test' }),
    ).toBe(statusWrites);
    expect(auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns.name })).toBe(audited);
    // The Deployments were reconciled again (resync), and nothing was written.
    expect(
      await operator.sample('controller_runtime_reconcile_total', { controller: 'deployment-shutdown' }),
    ).toBeGreaterThan(reconciles);
    expect(
      await operator.sample('gracefulshutdown_deployment_writes_total', { policy: 'enforce-test' }),
    ).toBe(writes);
  });

  test('a Deployment with a malformed annotation gets a Warning Event and is skipped; others proceed', async () => {
    await createDeployment(ns.name, 'bad-annotation', {
      annotations: { [READINESS_PORT_ANNOTATION]: 'Not A Port!' },
    });
    await createDeployment(ns.name, 'good-neighbour');
    await waitFor('good-neighbour enforced', async () => {
      const d = await rolledOut(ns.name, 'good-neighbour');
      return d?.metadata?.annotations?.[APPLIED_ANNOTATION] ? d : undefined;
    });
    const warning = await waitFor('InvalidAnnotation event', async () =>
      (await events(ns.name, 'bad-annotation')).find((e) => e.reason === 'InvalidAnnotation'),
    );
    expect(warning.type).toBe('Warning');
    expect(warning.message).toContain(READINESS_PORT_ANNOTATION);
    const bad = await readDeployment(ns.name, 'bad-annotation');
    expect(bad.metadata?.generation).toBe(1);
    expect(bad.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeUndefined();
  });

  test('a Deployment no longer matched is released: values kept, record removed, no restart', async () => {
    const before = await readDeployment(ns.name, 'plain');
    const replicaSetNames = async () =>
      (await replicaSets(ns.name, 'plain')).map((rs) => rs.metadata?.name).sort();
    const replicaSetsBefore = await replicaSetNames();
    await apps().patchNamespacedDeployment({
      namespace: ns.name,
      name: 'plain',
      body: [{ op: 'add', path: '/metadata/labels/team', value: 'other' }],
    });
    const released = await waitFor('record removed', async () => {
      const d = await readDeployment(ns.name, 'plain');
      return d.metadata?.annotations?.[APPLIED_ANNOTATION] === undefined ? d : undefined;
    });
    // The pod template is unchanged (an annotation change bumps a Deployment's generation, but
    // no new ReplicaSet means no pod was restarted).
    expect(released.spec?.template).toEqual(before.spec?.template);
    expect(await replicaSetNames()).toEqual(replicaSetsBefore);
    expect(webContainer(released)?.lifecycle?.preStop).toEqual(webContainer(before)?.lifecycle?.preStop);
    expect((await events(ns.name, 'plain')).map((e) => e.reason)).toContain('ShutdownSettingsReleased');
  });
});

describe('Audit', () => {
  const ns = useNamespace('audit');

  test('writes nothing to Deployments; status shows recommendations and verdicts', async () => {
    for (const name of ['a1', 'a2', 'a3']) await createDeployment(ns.name, name);
    for (const name of ['a1', 'a2', 'a3']) await waitFor(`${name} ready`, () => rolledOut(ns.name, name));
    const before = await Promise.all(['a1', 'a2', 'a3'].map((n) => readDeployment(ns.name, n)));
    await applyPolicy('audit-test', ns.name, { mode: 'Audit' });

    const status = await waitFor('audit status', async () => {
      const s = await policyStatus('audit-test');
      return s?.counts?.matched === 3 ? s : undefined;
    });
    expect(status.counts).toMatchObject({ matched: 3, compliant: 0, nonCompliant: 3 });
    expect(status.conditions?.find((c) => c.type === 'Compliant')).toMatchObject({ status: 'False' });
    const a1 = status.workloads?.find((w) => w.name === 'a1');
    expect(a1).toMatchObject({ verdict: 'NonCompliant' });
    expect(a1?.recommended).toMatchObject({
      preStop: { action: 'Sleep', seconds: 5 },
      terminationGracePeriodSeconds: 30,
    });

    await new Promise((r) => setTimeout(r, 2 * RESYNC_MS));
    expect(await operator.sample('gracefulshutdown_deployment_writes_total', { policy: 'audit-test' })).toBe(
      0,
    );
    expect(auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns.name })).toBe(0);
    for (const old of before) {
      const now = await readDeployment(ns.name, old.metadata?.name ?? '');
      expect(now.metadata?.resourceVersion).toBe(old.metadata?.resourceVersion);
    }
  });
});

describe('overlapping policies', () => {
  const ns = useNamespace('overlap');

  test('the higher priority wins; on a tie the name that sorts first', async () => {
    await createDeployment(ns.name, 'shared');
    await waitFor('shared ready', () => rolledOut(ns.name, 'shared'));
    // Applied low first, then high: the result must not depend on order.
    await applyPolicy('overlap-low', ns.name, { mode: 'Enforce', priority: 5, preStop: { seconds: 3 } });
    await applyPolicy('overlap-high', ns.name, { mode: 'Enforce', priority: 10, preStop: { seconds: 7 } });
    await applyPolicy('overlap-high-twin', ns.name, {
      mode: 'Enforce',
      priority: 10,
      preStop: { seconds: 9 },
    });
    const d = await waitFor('winner applied', async () => {
      const dep = await rolledOut(ns.name, 'shared');
      const record = dep?.metadata?.annotations?.[APPLIED_ANNOTATION];
      return record && JSON.parse(record).policy === 'overlap-high' ? dep : undefined;
    });
    expect(webContainer(d)?.lifecycle?.preStop).toEqual({ sleep: { seconds: 7 } });
    const low = await waitFor('loser status', async () => {
      const s = await policyStatus('overlap-low');
      return s?.counts?.exempt === 1 ? s : undefined;
    });
    expect(low.counts?.matched).toBe(0);
    // Several resyncs later the winner is still the same.
    await new Promise((r) => setTimeout(r, 2 * RESYNC_MS));
    const again = await readDeployment(ns.name, 'shared');
    expect(JSON.parse(again.metadata?.annotations?.[APPLIED_ANNOTATION] ?? '{}').policy).toBe('overlap-high');
    expect(again.metadata?.generation).toBe(d.metadata?.generation);
  });
});

describe('rollout budget', () => {
  const ns = useNamespace('budget');

  test('20 Deployments, maxConcurrent 2: never more than 2 rolling at once', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `svc-${String(i).padStart(2, '0')}`);
    for (const name of names) await createDeployment(ns.name, name, { replicas: 1 });
    for (const name of names) await waitFor(`${name} ready`, () => rolledOut(ns.name, name));

    // Watch every Deployment of the namespace and track how many roll at once.
    const rolling = new Set<string>();
    let maxRolling = 0;
    const watch = new Watch(adminKubeConfig());
    const abort = await watch.watch(
      `/apis/apps/v1/namespaces/${ns.name}/deployments`,
      {},
      (_phase, obj: V1Deployment) => {
        const name = obj.metadata?.name ?? '';
        if (isRolling(obj)) rolling.add(name);
        else rolling.delete(name);
        maxRolling = Math.max(maxRolling, rolling.size);
      },
      () => {},
    );
    try {
      await applyPolicy('budget-test', ns.name, { mode: 'Enforce', rollout: { maxConcurrent: 2 } });
      const started = Date.now();
      await waitFor(
        'all 20 enforced',
        async () => {
          const s = await policyStatus('budget-test');
          return s?.counts?.compliant === 20 && rolling.size === 0;
        },
        { timeoutMs: 150_000, intervalMs: 500 },
      );
      console.log(
        `budget: 20 Deployments converged in ${((Date.now() - started) / 1000).toFixed(1)} s, max rolling ${maxRolling}`,
      );
    } finally {
      abort.abort();
    }
    expect(maxRolling).toBeGreaterThanOrEqual(1);
    expect(maxRolling).toBeLessThanOrEqual(2);
    for (const name of names) expect((await readDeployment(ns.name, name)).metadata?.generation).toBe(2);
  });
});

describe('updateExisting: OnNextRollout', () => {
  const ns = useNamespace('next-rollout');

  test('existing Deployments are left alone until their own next rollout, which carries the settings', async () => {
    await createDeployment(ns.name, 'waits');
    await waitFor('waits ready', () => rolledOut(ns.name, 'waits'));
    await applyPolicy('next-rollout-test', ns.name, {
      mode: 'Enforce',
      rollout: { updateExisting: 'OnNextRollout' },
    });

    const waiting = await waitFor('status says it waits', async () => {
      const s = await policyStatus('next-rollout-test');
      const w = s?.workloads?.find((x) => x.name === 'waits');
      return w?.reason === 'WaitingForNextRollout' ? w : undefined;
    });
    expect(waiting.verdict).toBe('NonCompliant');
    await new Promise((r) => setTimeout(r, 2 * RESYNC_MS));
    expect((await readDeployment(ns.name, 'waits')).metadata?.generation).toBe(1);
    expect(auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns.name })).toBe(0);

    // A scale and an annotation edit are no rollout: nothing joins them.
    expect((await kubectl(['-n', ns.name, 'scale', 'deployment/waits', '--replicas=4'])).stderr).toBe('');
    expect((await kubectl(['-n', ns.name, 'annotate', 'deployment/waits', 'team=shop'])).stderr).toBe('');
    await waitFor(
      'scaled',
      async () => ((await readDeployment(ns.name, 'waits')).status?.availableReplicas ?? 0) === 4,
    );
    await new Promise((r) => setTimeout(r, 2 * RESYNC_MS));
    expect(auditedDeploymentWrites({ user: OPERATOR_USER, namespace: ns.name })).toBe(0);

    // The team ships a new image: that rollout is where the settings go in.
    const update = await kubectl([
      '-n',
      ns.name,
      'set',
      'image',
      'deployment/waits',
      'web=registry.example/web:2',
    ]);
    expect(update.stderr).toBe('');
    const done = await waitFor('settings applied with the new image', async () => {
      const d = await rolledOut(ns.name, 'waits');
      return d?.metadata?.annotations?.[APPLIED_ANNOTATION] ? d : undefined;
    });
    expect(webContainer(done)?.image).toBe('registry.example/web:2');
    expect(webContainer(done)?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    await waitFor(
      'compliant',
      async () => (await policyStatus('next-rollout-test'))?.counts?.compliant === 1,
    );
  });
});

describe('Override', () => {
  const ns = useNamespace('override');

  test("replaces a user's probe and hook of another kind (tcpSocket, exec) in one rollout", async () => {
    await createDeployment(ns.name, 'tcp', {
      containers: [
        container('web', {
          // Named: kwok pods cannot be asked, and only a port known to speak HTTP gets httpGet then.
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { tcpSocket: { port: 8080 } },
          lifecycle: { preStop: { exec: { command: ['/bin/drain'] } } },
        }),
      ],
    });
    await waitFor('tcp ready', () => rolledOut(ns.name, 'tcp'));
    await applyPolicy('override-test', ns.name, {
      mode: 'Enforce',
      readinessProbe: { inject: 'Override', port: 8080 },
      preStop: { inject: 'Override', seconds: 5 },
    });
    await waitFor('compliant', async () => (await policyStatus('override-test'))?.counts?.compliant === 1);
    const d = await waitFor('rolled out', () => rolledOut(ns.name, 'tcp'));
    const web = webContainer(d);
    expect(web?.readinessProbe?.tcpSocket).toBeUndefined();
    expect(web?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 8080 });
    expect(web?.lifecycle?.preStop).toEqual({ sleep: { seconds: 5 } });
    // The replacement's JSON patch left no Update entry of the operator's beside its Apply entry.
    const entries = (d.metadata?.managedFields ?? []).filter(
      (e) => e.manager === 'graceful-shutdown-operator',
    );
    expect(entries.map((e) => e.operation)).toEqual(['Apply']);
    expect(await replicaSets(ns.name, 'tcp')).toHaveLength(2);
    expect(
      await operator.sample('gracefulshutdown_deployment_writes_total', {
        policy: 'override-test',
        operation: 'replace',
      }),
    ).toBe(1);
  });
});

describe('watches', () => {
  test("stay open past client-node's 30 s inactivity abort: watches end only at the server's 5-10 min timeout", async () => {
    // Long enough for a 30 s abort to have ended every quiet watch at least twice.
    const uptimeMs = () => Date.now() - operatorStartedAt;
    if (uptimeMs() < 75_000) await new Promise((r) => setTimeout(r, 75_000 - uptimeMs()));
    const ends = async (reason: string) =>
      operator.sample('gracefulshutdown_informer_watch_ends_total', { reason });
    const serverTimeouts = 4 * Math.ceil(uptimeMs() / 300_000);
    console.log(
      `[operator] uptime ${(uptimeMs() / 1000).toFixed(0)} s: watches closed ${await ends('closed')}, watchdog ${await ends('watchdog')}, error ${await ends('error')}, expired ${await ends('expired')}`,
    );
    expect(await ends('closed')).toBeLessThanOrEqual(serverTimeouts);
    expect(await ends('watchdog')).toBe(0);
    expect(await ends('error')).toBe(0);
    // The caches are there and counted.
    expect(
      await operator.sample('gracefulshutdown_informer_objects', { informer: 'namespaces' }),
    ).toBeGreaterThan(0);
  });
});
