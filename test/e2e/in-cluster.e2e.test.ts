// The operator installed as a user installs it — `kubectl apply -k` of config/default with only
// the image swapped — running as two real pods under its ServiceAccount and RBAC on the real
// node, talking to the apiserver with in-cluster config. One leads; deleting it hands over.
// Then demo-service (config/demo, real pods) under it: the policy in Enforce gives it its
// settings, and a rolling restart under load through the Service's ClusterIP loses nothing,
// while the same rollout of a Deployment without a preStop loses requests. Last, `kubectl delete -k`
// of the same overlay uninstalls it, and demo-service keeps its settings and pods.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  APPLIED_ANNOTATION,
  EXCLUDE_ANNOTATION,
  GRACE_PERIOD_SECONDS_ANNOTATION,
} from '../../operator/src/api/annotations.ts';
import { GROUP, PLURAL, VERSION } from '../../operator/src/api/policy.ts';
import {
  clusterIp,
  createNoPreStopCopy,
  formatLoad,
  type KubeTarget,
  loadDuringRollout,
  waitRolledOut,
} from '../drain/kube-rollout.ts';
import {
  createPolicy,
  leaseHolder as harnessLeaseHolder,
  installOperatorPrerequisites,
  manifest,
  OPERATOR_NAMESPACE,
  readPolicyStatus,
  readyOperatorPods,
  repoRoot,
  sampleDeployment,
  waitFor,
  writeOverlay,
} from '../operator/harness.ts';
import { watchTermination } from './real-pods.ts';
import { adminKubeConfig, clusterInfo, kubectl, replicaSets, useNamespace } from './support.ts';

const OPERATOR = 'graceful-shutdown-operator';
const ns = useNamespace('in-cluster');
const kc = () => adminKubeConfig();
const core = () => kc().makeApiClient(CoreV1Api);
const apps = () => kc().makeApiClient(AppsV1Api);
const custom = () => kc().makeApiClient(CustomObjectsApi);
let overlayDir: string;
let demoOverlayDir: string;
const DEMO = { name: 'demo-service', namespace: 'demo' };
/** 250 req/s: a rollout of 2 pods takes about 10 s, so at least 2,000 requests span it. */
const zeroLossLoad = { rps: 250 };

const leaseHolder = () => harnessLeaseHolder(clusterInfo());
/** Set by the uninstall test: the CRD, the namespace and the RBAC other files use are to be put back. */
let uninstalled = false;

const operatorPods = () => readyOperatorPods(clusterInfo());

beforeAll(async () => {
  overlayDir = await mkdtemp(join(tmpdir(), 'gso-overlay-'));
  demoOverlayDir = await mkdtemp(join(tmpdir(), 'gso-overlay-demo-'));
  const { realNode } = clusterInfo();
  await writeOverlay(demoOverlayDir, {
    bases: ['config/demo'],
    images: [{ name: 'demo-service', ref: realNode.demoServiceImage }],
    placeOnRealNode: [DEMO],
    placement: realNode.placement,
  });
  await writeOverlay(overlayDir, {
    bases: ['config/default'],
    images: [{ name: 'ghcr.io/graceful-shutdown-operator/operator', ref: realNode.operatorImage }],
    // Latency refreshed every 2 s instead of 30 s: the tests wait for it to settle.
    placeOnRealNode: [{ name: OPERATOR, namespace: OPERATOR_NAMESPACE, env: { LATENCY_REFRESH_MS: '2000' } }],
    placement: realNode.placement,
  });
});

afterAll(async () => {
  if (uninstalled) {
    // A namespace still terminating refuses the RBAC put back into it.
    await waitFor(
      `namespace ${OPERATOR_NAMESPACE} gone`,
      async () => (await kubectl(['get', 'namespace', OPERATOR_NAMESPACE])).code !== 0,
      { timeoutMs: 120_000 },
    ).catch(() => undefined);
    await installOperatorPrerequisites(clusterInfo().kubectl, clusterInfo().kubeconfig).catch((err: Error) =>
      process.stderr.write(`in-cluster: putting the prerequisites back failed: ${err.message}\n`),
    );
  }
  await kubectl(['delete', '-k', demoOverlayDir, '--wait=true', '--timeout=90s']);
  await rm(demoOverlayDir, { recursive: true, force: true });
  // Other test files run the operator as a process on the same Lease: none of ours may remain,
  // nor a webhook configuration calling pods that are gone.
  await kubectl(['delete', 'mutatingwebhookconfiguration', OPERATOR, '--ignore-not-found']);
  await kubectl(['delete', 'deployment', OPERATOR, '-n', OPERATOR_NAMESPACE, '--wait=true', '--timeout=60s']);
  await waitFor(
    'operator pods gone',
    async () =>
      (
        await core().listNamespacedPod({
          namespace: OPERATOR_NAMESPACE,
          labelSelector: 'app.kubernetes.io/name=graceful-shutdown-operator',
        })
      ).items.length === 0,
  );
  await custom()
    .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name: 'in-cluster' })
    .catch(() => undefined);
  await rm(overlayDir, { recursive: true, force: true });
});

describe('the operator installed with kubectl apply -k', () => {
  test('comes up as 2 real pods under its ServiceAccount; one holds the Lease', async () => {
    const applied = await kubectl(['apply', '--server-side', '-k', overlayDir]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const ready = await waitFor(
      '2 Ready operator pods',
      async () => {
        const pods = await operatorPods();
        return pods.length === 2 ? pods : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const pods = await core().listNamespacedPod({
      namespace: OPERATOR_NAMESPACE,
      labelSelector: 'app.kubernetes.io/name=graceful-shutdown-operator',
    });
    for (const pod of pods.items) {
      expect(pod.spec?.nodeName).toBe('gso-real-node');
      expect(pod.spec?.serviceAccountName).toBe(OPERATOR);
      expect(pod.spec?.containers[0]?.image).toBe(clusterInfo().realNode.operatorImage);
    }
    const holder = await waitFor('a Lease holder', leaseHolder);
    expect(ready).toContain(holder);
  });

  test('reconciles a policy, and kubectl logs shows it', async () => {
    await apps().createNamespacedDeployment({ namespace: ns.name, body: sampleDeployment('web') });
    await createPolicy(adminKubeConfig(), 'in-cluster', {
      mode: 'Enforce',
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns.name } },
    });
    const grace = await waitFor('the operator to set a grace period', async () => {
      const d = await apps().readNamespacedDeployment({ name: 'web', namespace: ns.name });
      const lifecycle = d.spec?.template.spec?.containers[0]?.lifecycle;
      return lifecycle?.preStop ? d.spec?.template.spec?.terminationGracePeriodSeconds : undefined;
    });
    expect(grace).toBeGreaterThan(0);
    const holder = (await leaseHolder()) as string;
    const logs = await kubectl(['logs', '-n', OPERATOR_NAMESPACE, holder]);
    expect(logs.code).toBe(0);
    const lines = logs.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg?: string; identity?: string });
    expect(lines.some((l) => l.msg === 'starting' && l.identity === holder)).toBe(true);
    expect(logs.stdout).toContain(`${ns.name}/web`);
  });

  test('the apiserver calls the webhook through its Service: a new Deployment is compliant from admission', async () => {
    // The operator made its CA and put it into the shipped configuration.
    await waitFor('the caBundle injected', async () => {
      const config = await kc()
        .makeApiClient(AdmissionregistrationV1Api)
        .readMutatingWebhookConfiguration({ name: OPERATOR });
      return (config.webhooks ?? []).every((w) => String(w.clientConfig.caBundle ?? '') !== '');
    });
    const admitted = manifest(sampleDeployment('admitted'));
    // Ready pods reach the Service once kube-proxy has their endpoints: until then the apiserver's
    // call is refused and it admits unchanged (failurePolicy Ignore). Wait for a dry run to come
    // back mutated, which is the apiserver reaching the webhook through the Service.
    await waitFor('the webhook answering through its Service', async () => {
      const dry = await kubectl(['apply', '--dry-run=server', '-o', 'json', '-n', ns.name, '-f', '-'], {
        input: admitted,
      });
      const shown = dry.code === 0 ? (JSON.parse(dry.stdout) as V1Deployment) : undefined;
      return shown?.spec?.template.spec?.containers[0]?.lifecycle?.preStop !== undefined;
    });
    const applied = await kubectl(['apply', '-n', ns.name, '-f', '-'], { input: admitted });
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stderr).toContain('Warning: gracefulshutdown.dev/in-cluster (Enforce)');
    const created = await apps().readNamespacedDeployment({ name: 'admitted', namespace: ns.name });
    expect(created.spec?.template.spec?.containers[0]?.lifecycle?.preStop).toBeDefined();
    const record = JSON.parse(created.metadata?.annotations?.[APPLIED_ANNOTATION] ?? '{}') as {
      rollout?: unknown;
    };
    expect(record.rollout).toBeUndefined(); // set at admission, not by a rollout of the operator's
    expect((await replicaSets(ns.name, 'admitted')).length).toBeLessThanOrEqual(1);
  });

  test('deleting the leader pod hands the Lease to another pod', async () => {
    const holder = (await leaseHolder()) as string;
    await core().deleteNamespacedPod({ name: holder, namespace: OPERATOR_NAMESPACE });
    const next = await waitFor(
      'a new Lease holder',
      async () => {
        const h = await leaseHolder();
        return h && h !== holder ? h : undefined;
      },
      { timeoutMs: 90_000 },
    );
    // The new leader is a live operator pod (it may turn Ready only once its caches sync).
    await waitFor('the new leader Ready', async () => (await operatorPods()).includes(next));
  });
});

const demoTarget = (name = DEMO.name): KubeTarget => ({
  cluster: clusterInfo(),
  namespace: DEMO.namespace,
  name,
});

describe('demo-service managed by the in-cluster operator', () => {
  test('config/demo runs as real pods; the Enforce policy gives it its settings', async () => {
    const applied = await kubectl(['apply', '--server-side', '-k', demoOverlayDir]);
    expect(applied.code, applied.stderr).toBe(0);
    const managed = await waitFor(
      'the operator to own demo-service',
      async () => {
        const d = await apps().readNamespacedDeployment(DEMO);
        const record = d.metadata?.annotations?.[APPLIED_ANNOTATION];
        return record ? d : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const c = managed.spec?.template.spec?.containers[0];
    expect(c?.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(c?.lifecycle?.preStop?.sleep?.seconds).toBe(5);
    await waitRolledOut(demoTarget());
    const pods = await core().listNamespacedPod({
      namespace: DEMO.namespace,
      labelSelector: 'app=demo-service',
    });
    expect(pods.items.map((p) => p.spec?.nodeName)).toEqual(['gso-real-node', 'gso-real-node']);
    // Traffic through the Service reaches the pods, each named in its answer.
    // kube-proxy programs the Service a moment after the pods turn Ready.
    const url = `http://${await clusterIp(demoTarget())}/work?ms=1`;
    const answer = await waitFor('the Service to answer', () =>
      fetch(url).then((r) => (r.ok ? r : undefined)),
    );
    expect(pods.items.map((p) => p.metadata?.name)).toContain(answer.headers.get('x-instance'));
    // The policy scrapes demo-service itself: with some traffic the operator learns its latency
    // and owns the grace period computed from it. Settle that before the rollouts below.
    let last: unknown;
    const observed = await waitFor(
      'the observed latency of demo-service',
      async () => {
        // Some traffic between two looks, as a service has.
        for (let i = 0; i < 20; i++) await fetch(url.replace('ms=1', 'ms=20')).catch(() => undefined);
        const status = await readPolicyStatus(kc(), DEMO.name);
        const w = status.workloads?.find((x) => x.name === DEMO.name);
        last = w;
        // Trusted (minSamples 100 in config/demo) and applied: no rollout of its own comes later.
        return w?.verdict === 'Compliant' && (w.observedLatency?.samples ?? 0) >= 100 ? w : undefined;
      },
      { timeoutMs: 150_000, intervalMs: 500 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last status: ${JSON.stringify(last)}`);
    });
    console.log(
      `[in-cluster] demo-service: ${observed.message?.split('; ').find((m) => m.startsWith('grace'))}`,
    );
    await waitRolledOut(demoTarget());
  });

  test('a rolling restart under load through the ClusterIP loses no request', async () => {
    const report = await loadDuringRollout(demoTarget(), zeroLossLoad);
    console.log(`[zero-loss] with the policy: ${formatLoad(report)}`);
    expect(report.stoppedEarly).toBeUndefined();
    expect(report.sent).toBeGreaterThanOrEqual(2_000);
    // Old and new pods both answered: the load spanned the rollout.
    expect(Object.keys(report.byInstance).length).toBeGreaterThanOrEqual(4);
    expect(report.lost).toBe(0);
  });

  test('control: the same rollout of demo-service without a preStop loses requests', async () => {
    const name = 'demo-no-prestop';
    await createNoPreStopCopy(demoTarget(), name, EXCLUDE_ANNOTATION);
    const report = await loadDuringRollout(demoTarget(name), zeroLossLoad);
    console.log(`[zero-loss] control without preStop: ${formatLoad(report)}`);
    // The same load for the whole rollout (shorter without a preStop to wait for).
    expect(report.stoppedEarly).toBeUndefined();
    expect(report.sent).toBeGreaterThanOrEqual(500);
    expect(report.lost).toBeGreaterThan(0);
  });

  test("the app's own drain deadline follows the grace period the policy sets", async () => {
    // grace 16 s, preStop 5 s, margin 2 s: demo-service cuts what is still running 9 s after
    // SIGTERM (14 s after deletion), before the kubelet's SIGKILL at 16 s, and exits 124.
    const patched = await kubectl([
      'patch',
      'gsp',
      DEMO.name,
      '--type=merge',
      '-p',
      JSON.stringify({
        spec: { terminationGracePeriod: { inject: 'Override', strategy: 'Fixed', fixedSeconds: 16 } },
      }),
    ]);
    expect(patched.code, patched.stderr).toBe(0);
    await waitFor(
      'the grace period and its annotation at 16',
      async () => {
        const d = await apps().readNamespacedDeployment(DEMO);
        const t = d.spec?.template;
        return (
          t?.spec?.terminationGracePeriodSeconds === 16 &&
          t.metadata?.annotations?.[GRACE_PERIOD_SECONDS_ANNOTATION] === '16'
        );
      },
      { timeoutMs: 60_000 },
    );
    await waitRolledOut(demoTarget());
    const pod = (
      await core().listNamespacedPod({ namespace: DEMO.namespace, labelSelector: 'app=demo-service' })
    ).items.find((p) => !p.metadata?.deletionTimestamp && p.spec?.terminationGracePeriodSeconds === 16);
    const name = pod?.metadata?.name as string;
    const ip = pod?.status?.podIP as string;
    expect(ip).toBeDefined();
    const watch = await watchTermination(DEMO.namespace, name);
    try {
      // A request that would take a minute, sent straight to the pod.
      const inFlight = fetch(`http://${ip}:8080/work?ms=60000`, { signal: AbortSignal.timeout(30_000) }).then(
        () => ({ cut: false, at: Date.now() }),
        () => ({ cut: true, at: Date.now() }),
      );
      await new Promise((r) => setTimeout(r, 500));
      const deletedAt = Date.now();
      await core().deleteNamespacedPod({ namespace: DEMO.namespace, name });
      const request = await inFlight;
      const exit = await watch.terminated;
      console.log(
        `[deadline] request cut ${request.at - deletedAt} ms after deletion; exit code ${exit.exitCode}`,
      );
      expect(request.cut).toBe(true);
      expect(request.at - deletedAt).toBeGreaterThanOrEqual(13_500);
      expect(request.at - deletedAt).toBeLessThan(16_000);
      // 124: demo-service's own forced exit, not the kubelet's SIGKILL (137).
      expect(exit.exitCode).toBe(124);
    } finally {
      watch.stop();
    }
  });
});

describe('the Grafana dashboard (config/grafana)', () => {
  interface Panel {
    title: string;
    type: string;
    targets?: { expr: string }[];
  }

  /** Grafana's variables as the dashboard's defaults resolve them (every policy, a 1m rate window). */
  const resolve = (expr: string) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$policy', '.*');

  async function instant(
    expr: string,
  ): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const url = `${clusterInfo().prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`;
    const body = (await (await fetch(url)).json()) as {
      status: string;
      error?: string;
      data?: { result: [] };
    };
    if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
    return body.data?.result ?? [];
  }

  test("every panel's query returns data from the real Prometheus scraping the operator and demo-service", async () => {
    const dashboard = JSON.parse(
      await readFile(join(repoRoot, 'config', 'grafana', 'dashboard.json'), 'utf8'),
    ) as { panels: Panel[] };
    const queries = dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({ panel: p.title, expr: resolve(t.expr) })),
    );
    expect(queries.length).toBeGreaterThanOrEqual(24);
    const rows: string[] = [];
    for (const { panel, expr } of queries) {
      // Data: at least one series with a number (a rate needs two scrapes, 2 s apart here).
      const result = await waitFor(
        `data for panel "${panel}": ${expr}`,
        async () => {
          // Admissions happened minutes ago, in the tests above: their rate may have left the
          // panel's window. A server-side dry run is an admission review like any other.
          if (expr.includes('admission'))
            await kubectl([
              'create',
              'deployment',
              'dashboard-admission',
              '--image=registry.example/web:1',
              '--dry-run=server',
              '-n',
              DEMO.namespace,
            ]);
          const r = await instant(expr);
          return r.some((s) => Number.isFinite(Number(s.value[1]))) ? r : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 2_000 },
      );
      rows.push(`${panel}: ${result.length} series`);
    }
    console.log(`dashboard queries against Prometheus:\n  ${rows.join('\n  ')}`);
  });
});

describe('uninstall: kubectl delete -k of the same overlay', () => {
  test('every object it applied goes (operator, webhook, RBAC, guard, namespace, CRD with its policies); demo-service keeps its settings and its pods', async () => {
    const read = () => apps().readNamespacedDeployment({ name: DEMO.name, namespace: DEMO.namespace });
    const demoPods = async () =>
      (await core().listNamespacedPod({ namespace: DEMO.namespace, labelSelector: 'app=demo-service' })).items
        .map((p) => p.metadata?.name)
        .sort();
    const before = await read();
    const podsBefore = await demoPods();
    expect(before.spec?.template.spec?.containers[0]?.lifecycle?.preStop).toBeDefined();
    // Control: the overlay's objects are there before.
    const listed = await kubectl(['get', '-k', overlayDir, '-o', 'name']);
    expect(listed.stdout.split('\n').filter(Boolean).length).toBeGreaterThan(15);

    uninstalled = true;
    const deleted = await kubectl(['delete', '-k', overlayDir, '--wait=true', '--timeout=120s']);
    expect(deleted.code, deleted.stderr).toBe(0);
    const left = await kubectl(['get', '-k', overlayDir, '-o', 'name', '--ignore-not-found']);
    expect(left.stdout.trim()).toBe('');
    expect((await kubectl(['get', 'crd', `${PLURAL}.${GROUP}`])).stderr).toContain('NotFound');

    // The uninstall changed no pod template: the same pods, the settings as the operator left them.
    const after = await read();
    expect(after.spec?.template).toEqual(before.spec?.template);
    expect(await demoPods()).toEqual(podsBefore);
  }, 240_000);
});
