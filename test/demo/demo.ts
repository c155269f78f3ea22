// `npm run demo`: a local cluster with a real node, the operator installed in it with
// `kubectl apply -k config/default`, sample Deployments on kwok nodes under a policy first in
// Audit then in Enforce (before/after table), and demo-service (config/demo, real pods) under its
// own policy: a rolling restart under load with and without the policy's settings.
// Ctrl-C (or --once) tears everything down.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Container,
  type V1Deployment,
} from '@kubernetes/client-node';
import { APPLIED_ANNOTATION, EXCLUDE_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { GROUP, PLURAL, VERSION } from '../../operator/src/api/policy.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import { LocalCluster } from '../cluster/cluster.ts';
import { REAL_NODE_NAME, realNodePlacement } from '../cluster/node/node.ts';
import { untilSignal } from '../cluster/signals.ts';
import {
  clusterIp,
  createNoPreStopCopy,
  formatLoad,
  type KubeTarget,
  loadDuringRollout,
  waitRolledOut,
} from '../drain/kube-rollout.ts';
import {
  DEMO_SERVICE as DEMO,
  installDemoService,
  installOperatorInCluster,
  kubectlOk,
  OPERATOR_NAMESPACE,
  patchPolicy,
  readPolicyStatus,
  sampleDeployment,
  testCluster,
  waitFor,
} from '../operator/harness.ts';

/** The kwok samples; config/demo has namespace `demo` for demo-service. */
const NAMESPACE = 'samples';
const POLICY = 'samples-zero-downtime';
/** Load during the demo's rolling restarts: a rollout of 2 pods lasts about 10 s. */
const DEMO_RPS = 250;

interface Sample {
  name: string;
  note: string;
  container: V1Container;
  grace?: number;
  annotations?: Record<string, string>;
}

const samples: Sample[] = [
  {
    name: 'already-compliant',
    note: 'has probe, preStop and a long grace',
    grace: 45,
    container: {
      name: 'app',
      image: 'registry.example/shop:1',
      ports: [{ name: 'http', containerPort: 8080 }],
      readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 5 },
      lifecycle: { preStop: { sleep: { seconds: 5 } } },
    },
  },
  {
    name: 'no-probe',
    note: 'nothing set',
    container: {
      name: 'app',
      image: 'registry.example/api:1',
      ports: [{ name: 'http', containerPort: 8080 }],
    },
  },
  {
    name: 'short-grace',
    note: 'user probe, grace 10 s',
    grace: 10,
    container: {
      name: 'app',
      image: 'registry.example/cart:1',
      ports: [{ containerPort: 9000 }],
      readinessProbe: { httpGet: { path: '/health', port: 9000 } },
    },
  },
  {
    name: 'distroless',
    note: 'no shell in the image',
    container: {
      name: 'app',
      image: 'gcr.io/distroless/static-debian12:nonroot',
      ports: [{ name: 'http', containerPort: 8080 }],
    },
  },
  {
    name: 'opted-out',
    note: `${EXCLUDE_ANNOTATION}: "true"`,
    annotations: { [EXCLUDE_ANNOTATION]: 'true' },
    container: {
      name: 'app',
      image: 'registry.example/legacy:1',
      ports: [{ name: 'http', containerPort: 8080 }],
    },
  },
];

function describeRow(d: V1Deployment): string[] {
  const podSpec = d.spec?.template?.spec;
  const c = podSpec?.containers[0];
  const probe = c?.readinessProbe?.httpGet
    ? `${c.readinessProbe.httpGet.path}:${c.readinessProbe.httpGet.port}`
    : '-';
  const hook = c?.lifecycle?.preStop;
  const preStop = hook?.sleep
    ? `sleep ${hook.sleep.seconds}s (native)`
    : hook?.exec
      ? `exec ${(hook.exec.command ?? []).join(' ')}`
      : '-';
  return [probe, preStop, `${podSpec?.terminationGracePeriodSeconds ?? 30}s`];
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { once: { type: 'boolean', default: false } } });
  const stop = untilSignal();
  const cluster = await LocalCluster.start({ nodes: 3, realNode: true });
  const overlays = await mkdtemp(join(tmpdir(), 'gso-demo-'));
  try {
    const kc = cluster.adminKubeConfig();
    const apps = kc.makeApiClient(AppsV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const kube = testCluster(cluster);
    const { images } = cluster;
    if (!images) throw new Error('the cluster started without its images');

    // The operator, installed as a user installs it; only the image and placement differ.
    const placement = realNodePlacement;
    const install = { cluster: kube, placement };
    await installOperatorInCluster({
      ...install,
      dir: join(overlays, 'operator'),
      image: images.operator.ref,
      // A demo has no patience for the default 30 s between latency refreshes.
      env: { LATENCY_REFRESH_MS: '5000' },
    });
    console.log(
      `\noperator: kubectl apply -k config/default (image ${images.operator.ref}), 2 pods on ${REAL_NODE_NAME}\n${await kubectlOk(kube, ['get', 'pods', '-n', OPERATOR_NAMESPACE, '-o', 'wide'])}`,
    );

    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    for (const s of samples) {
      await apps.createNamespacedDeployment({
        namespace: NAMESPACE,
        body: sampleDeployment(s.name, {
          replicas: 2,
          annotations: s.annotations,
          containers: [s.container],
          podSpec: { terminationGracePeriodSeconds: s.grace },
        }),
      });
    }
    const settled = async () => {
      const list = await apps.listNamespacedDeployment({ namespace: NAMESPACE });
      return list.items.length === samples.length && list.items.every((d) => !isRolling(d))
        ? list.items
        : undefined;
    };
    const before = await waitFor('sample Deployments ready', settled, { timeoutMs: 120_000 });

    const policy = (mode: 'Audit' | 'Enforce') => ({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'GracefulShutdownPolicy',
      metadata: { name: POLICY },
      spec: {
        mode,
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': NAMESPACE } },
        // The samples run on kwok nodes: their pods have no address to ask the probe path on.
        readinessProbe: { verification: 'Trust' },
        preStop: { seconds: 5, action: 'Auto' },
        terminationGracePeriod: { minSeconds: 20, maxSeconds: 120, overheadSeconds: 5 },
        rollout: { maxConcurrent: 2 },
      },
    });
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      body: policy('Audit'),
    });
    type Status = {
      counts?: { matched: number; compliant: number };
      workloads?: { name: string; verdict: string; reason: string }[];
    };
    const audited = await waitFor(
      'Audit status',
      async () => {
        const status = (await readPolicyStatus(kc, POLICY)) as Status;
        return status.workloads?.length === samples.length ? status : undefined;
      },
      { timeoutMs: 120_000 },
    );
    console.log(`\nAudit: the operator reports and writes nothing\n`);
    console.log(
      table(
        ['DEPLOYMENT', 'NOTE', 'VERDICT', 'REASON'],
        samples.map((s) => {
          const w = audited.workloads?.find((x) => x.name === s.name);
          return [s.name, s.note, w?.verdict ?? '?', w?.reason ?? '?'];
        }),
      ),
    );

    await patchPolicy(kc, POLICY, [{ op: 'replace', path: '/spec/mode', value: 'Enforce' }]);
    const after = await waitFor(
      'Enforce to converge',
      async () => {
        const status = (await readPolicyStatus(kc, POLICY)) as Status;
        const items = await settled();
        return status.counts?.compliant === status.counts?.matched && items ? items : undefined;
      },
      { timeoutMs: 180_000 },
    );

    const byName = (list: V1Deployment[], name: string) =>
      list.find((d) => d.metadata?.name === name) as V1Deployment;
    console.log(`\nEnforce: before -> after (readiness probe, preStop, terminationGracePeriodSeconds)\n`);
    console.log(
      table(
        ['DEPLOYMENT', 'PROBE', '', 'PRESTOP', '', 'GRACE', ''],
        samples.map((s) => {
          const [p0, h0, g0] = describeRow(byName(before, s.name));
          const [p1, h1, g1] = describeRow(byName(after, s.name));
          return [s.name, p0 ?? '', `-> ${p1}`, h0 ?? '', `-> ${h1}`, g0 ?? '', `-> ${g1}`];
        }),
      ),
    );

    // demo-service: config/demo as it ships (its policy in Enforce), real pods, real traffic.
    await installDemoService({ ...install, dir: join(overlays, 'demo'), image: images.demoService.ref });
    const managed = await waitFor(
      'the operator to manage demo-service',
      async () => {
        const d = await apps.readNamespacedDeployment(DEMO);
        return d.metadata?.annotations?.[APPLIED_ANNOTATION] ? d : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const target: KubeTarget = { cluster: kube, ...DEMO };
    await waitRolledOut(target);
    const url = `http://${await clusterIp(target)}/work?ms=1`;
    await waitFor('the demo-service Service to answer', () => fetch(url).then((r) => r.ok));
    await createNoPreStopCopy(target, 'demo-no-prestop', EXCLUDE_ANNOTATION);
    const [probe, preStop, grace] = describeRow(managed);
    console.log(
      `\ndemo-service on ${REAL_NODE_NAME}, managed by policy ${DEMO.name}: probe ${probe}, preStop ${preStop}, grace ${grace}`,
    );
    console.log(
      `Rolling restart (kubectl rollout restart) under ${DEMO_RPS} req/s through each Service ClusterIP:\n`,
    );
    const withPolicy = await loadDuringRollout(target, { rps: DEMO_RPS });
    const withoutPreStop = await loadDuringRollout({ ...target, name: 'demo-no-prestop' }, { rps: DEMO_RPS });
    const row = (name: string, settings: string, r: typeof withPolicy) => [
      name,
      settings,
      String(r.sent),
      String(r.lost),
      `${r.p99Ms?.toFixed(0) ?? '-'} ms`,
      r.stoppedEarly ? 'load ended early' : '',
    ];
    console.log(
      table(
        ['DEPLOYMENT', 'SETTINGS', 'SENT', 'LOST', 'P99', ''],
        [
          row('demo-service', `policy: ${preStop}, grace ${grace}`, withPolicy),
          row('demo-no-prestop', 'same pods, no preStop, no policy', withoutPreStop),
        ],
      ),
    );
    console.log(
      `\n  with the policy:    ${formatLoad(withPolicy)}\n  without a preStop:  ${formatLoad(withoutPreStop)}`,
    );

    // What the operator observed while the load ran, the grace period it computed from it, and
    // the grace period it wrote: the three must agree.
    type Observed = {
      message?: string;
      recommended?: { terminationGracePeriodSeconds?: number };
      observedLatency?: { seconds?: number; samples: number; percentile: number; preset?: string };
    };
    const observed = await waitFor(
      'the observed latency of demo-service, and the grace period computed from it written',
      async () => {
        const status = (await readPolicyStatus(kc, DEMO.name)) as {
          workloads?: (Observed & { name: string })[];
        };
        const w = status.workloads?.find((x) => x.name === DEMO.name);
        const computed = w?.recommended?.terminationGracePeriodSeconds;
        if (w?.observedLatency?.seconds === undefined || computed === undefined) return undefined;
        const written = (await apps.readNamespacedDeployment(DEMO)).spec?.template.spec
          ?.terminationGracePeriodSeconds;
        return written === computed ? { ...w, written } : undefined;
      },
      { timeoutMs: 180_000 },
    ).catch(() => undefined);
    if (observed?.observedLatency) {
      const { seconds, samples, percentile, preset } = observed.observedLatency;
      console.log(
        `\nObserved by scraping demo-service's pods (preset ${preset ?? 'none'}): p${percentile * 100} ${seconds?.toFixed(3)} s over ${samples} requests`,
      );
      console.log(
        `  computed: ${observed.message?.split('; ').find((m) => m.startsWith('grace ')) ?? observed.message}`,
      );
      console.log(
        `  written:  ${DEMO.namespace}/${DEMO.name} terminationGracePeriodSeconds ${observed.written} s`,
      );
    } else {
      console.log(
        "\nThe operator has not written a grace period from demo-service's observed latency yet (see kubectl get gsp demo-service -o yaml).",
      );
    }

    console.log(`\n$ kubectl get gsp\n${await kubectlOk(kube, ['get', 'gsp'])}`);
    console.log(
      `kubeconfig: ${cluster.kubeconfigPath}\n  ${cluster.binaries.kubectl} --kubeconfig ${cluster.kubeconfigPath} get gsp,pods -A`,
    );
    if (values.once) return;
    console.log('\nThe cluster and the operator keep running. Press Ctrl-C to stop.');
    await stop;
  } finally {
    console.log('stopping the cluster (the operator runs in it)...');
    await cluster.stop();
    await rm(overlays, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
