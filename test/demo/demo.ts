// `npm run demo`: a local control plane, the operator under its own ServiceAccount, sample
// Deployments, and a policy first in Audit then in Enforce, with a before/after table.
// Ctrl-C (or --once) tears everything down.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Container,
  type V1Deployment,
} from '@kubernetes/client-node';
import { EXCLUDE_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { GROUP, PLURAL, VERSION } from '../../operator/src/api/policy.ts';
import { isRolling } from '../../operator/src/policy/budget.ts';
import { LocalCluster } from '../cluster/cluster.ts';
import { untilSignal } from '../cluster/signals.ts';
import {
  installOperatorPrerequisites,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
} from '../operator/install.ts';
import { OperatorProcess } from '../operator/operator-process.ts';

const NAMESPACE = 'demo';
const POLICY = 'demo-zero-downtime';

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
    container: { name: 'app', image: 'registry.example/api:1', ports: [{ containerPort: 8080 }] },
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
      ports: [{ containerPort: 8080 }],
    },
  },
  {
    name: 'opted-out',
    note: `${EXCLUDE_ANNOTATION}: "true"`,
    annotations: { [EXCLUDE_ANNOTATION]: 'true' },
    container: { name: 'app', image: 'registry.example/legacy:1', ports: [{ containerPort: 8080 }] },
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

async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`demo: timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { once: { type: 'boolean', default: false } } });
  const stop = untilSignal();
  const cluster = await LocalCluster.start({ nodes: 3 });
  let operator: OperatorProcess | undefined;
  try {
    const kc = cluster.adminKubeConfig();
    const apps = kc.makeApiClient(AppsV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const kubectl = (args: string[]) =>
      promisify(execFile)(cluster.binaries.kubectl, ['--kubeconfig', cluster.kubeconfigPath, ...args]).then(
        (r) => r.stdout,
      );

    await installOperatorPrerequisites(cluster.binaries.kubectl, cluster.kubeconfigPath);
    operator = await OperatorProcess.start({
      kubeconfig: await cluster.serviceAccountKubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT),
      logPath: join(cluster.workDir, 'logs', 'operator.log'),
      identity: 'demo-operator',
    });
    await operator.waitReady();
    console.log(
      `operator running as ServiceAccount ${OPERATOR_NAMESPACE}/${OPERATOR_SERVICE_ACCOUNT} (log: ${operator.logPath})`,
    );

    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NAMESPACE } } });
    for (const s of samples) {
      await apps.createNamespacedDeployment({
        namespace: NAMESPACE,
        body: {
          metadata: { name: s.name, annotations: s.annotations },
          spec: {
            replicas: 2,
            selector: { matchLabels: { app: s.name } },
            template: {
              metadata: { labels: { app: s.name } },
              spec: { containers: [s.container], terminationGracePeriodSeconds: s.grace },
            },
          },
        },
      });
    }
    const settled = async () => {
      const list = await apps.listNamespacedDeployment({ namespace: NAMESPACE });
      return list.items.length === samples.length && list.items.every((d) => !isRolling(d))
        ? list.items
        : undefined;
    };
    const before = await waitUntil('sample Deployments ready', settled);

    const policy = (mode: 'Audit' | 'Enforce') => ({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'GracefulShutdownPolicy',
      metadata: { name: POLICY },
      spec: {
        mode,
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': NAMESPACE } },
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
    const audited = await waitUntil('Audit status', async () => {
      const p = (await custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        name: POLICY,
      })) as {
        status?: Status;
      };
      return p.status?.workloads?.length === samples.length ? p.status : undefined;
    });
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

    await custom.patchClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      name: POLICY,
      body: [{ op: 'replace', path: '/spec/mode', value: 'Enforce' }],
    });
    const after = await waitUntil('Enforce to converge', async () => {
      const p = (await custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        name: POLICY,
      })) as {
        status?: Status;
      };
      const items = await settled();
      return p.status?.counts?.compliant === p.status?.counts?.matched && items ? items : undefined;
    });

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
    console.log(`\n$ kubectl get gsp\n${await kubectl(['get', 'gsp'])}`);
    console.log(
      `kubeconfig: ${cluster.kubeconfigPath}\n  ${cluster.binaries.kubectl} --kubeconfig ${cluster.kubeconfigPath} get gsp ${POLICY} -o yaml`,
    );
    if (values.once) return;
    console.log('\nThe cluster and the operator keep running. Press Ctrl-C to stop.');
    await stop;
  } finally {
    console.log('stopping the operator and the cluster...');
    await operator?.stop();
    await cluster.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
