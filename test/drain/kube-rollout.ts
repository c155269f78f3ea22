// A rolling restart of a Kubernetes Deployment under load through its Service's ClusterIP, as
// `kubectl rollout restart` does it, measured by the drain harness's ledger (url-load.ts). The
// load lasts exactly as long as the rollout, old pods' termination included. Shared by the e2e
// tests and `npm run demo`.
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { waitFor } from '../cluster/wait.ts';
import { adminKubeConfig, kubectlOk, type TestCluster } from '../operator/harness.ts';
import { runUrlLoad, type UrlLoadOptions, type UrlLoadReport } from './url-load.ts';

export interface KubeTarget {
  cluster: TestCluster;
  namespace: string;
  /** Deployment and Service of that name; pods labelled app=<name>. */
  name: string;
}

/** `kubectl rollout status`: resolves when the Deployment (default t.name) has rolled out. */
export async function waitRolledOut(t: KubeTarget, name = t.name): Promise<void> {
  await kubectlOk(t.cluster, [
    'rollout',
    'status',
    `deployment/${name}`,
    '-n',
    t.namespace,
    '--timeout=120s',
  ]);
}

/** `kubectl rollout restart`, resolved when the rollout is complete and no old pod is left. */
export async function rolloutRestart(t: KubeTarget): Promise<void> {
  const core = adminKubeConfig(t.cluster).makeApiClient(CoreV1Api);
  const selector = { namespace: t.namespace, labelSelector: `app=${t.name}` };
  const before = new Set((await core.listNamespacedPod(selector)).items.map((p) => p.metadata?.name));
  await kubectlOk(t.cluster, ['rollout', 'restart', `deployment/${t.name}`, '-n', t.namespace]);
  await waitRolledOut(t);
  await waitFor(
    `the old pods of ${t.namespace}/${t.name} gone`,
    async () => (await core.listNamespacedPod(selector)).items.every((p) => !before.has(p.metadata?.name)),
    { timeoutMs: 120_000, intervalMs: 200 },
  );
}

/** The ClusterIP of the Service of that name. */
export async function clusterIp(t: KubeTarget, name = t.name): Promise<string> {
  const core = adminKubeConfig(t.cluster).makeApiClient(CoreV1Api);
  const ip = (await core.readNamespacedService({ namespace: t.namespace, name })).spec?.clusterIP;
  if (!ip) throw new Error(`Service ${t.namespace}/${name} has no ClusterIP`);
  return ip;
}

/** Default load: 150 req/s on 16 keep-alive sockets that ignore Keep-Alive hints, bounded. */
export const rolloutLoad = {
  path: '/work',
  rps: 150,
  connections: 16,
  keepAliveMode: 'ignore',
  maxRequests: 15_000,
  maxDurationMs: 100_000,
  timeoutMs: 10_000,
} as const;

/** Load through the ClusterIP for exactly as long as a rolling restart takes. */
export async function loadDuringRollout(
  t: KubeTarget,
  load: Partial<Omit<UrlLoadOptions, 'url' | 'until'>> & { path?: string } = {},
): Promise<UrlLoadReport> {
  const { path, ...options } = { ...rolloutLoad, ...load };
  const rollout = rolloutRestart(t);
  const report = await runUrlLoad({
    ...options,
    url: `http://${await clusterIp(t)}${path}`,
    until: rollout,
  }).done;
  await rollout;
  return report;
}

/**
 * A copy of a Deployment, excluded from every policy, without the preStop hook of its
 * containers, with its own Service: the control that shows the load can see loss.
 */
export async function createNoPreStopCopy(
  t: KubeTarget,
  name: string,
  excludeAnnotation: string,
): Promise<void> {
  const admin = adminKubeConfig(t.cluster);
  const apps = admin.makeApiClient(AppsV1Api);
  const base = await apps.readNamespacedDeployment({ namespace: t.namespace, name: t.name });
  const template = structuredClone(base.spec?.template);
  if (!template?.spec || !template.metadata) throw new Error(`${t.namespace}/${t.name} has no pod template`);
  template.metadata.labels = { app: name };
  for (const c of template.spec.containers) delete c.lifecycle;
  await apps.createNamespacedDeployment({
    namespace: t.namespace,
    body: {
      metadata: { name, annotations: { [excludeAnnotation]: 'true' } },
      spec: {
        replicas: base.spec?.replicas ?? 1,
        selector: { matchLabels: { app: name } },
        strategy: base.spec?.strategy,
        template,
      },
    },
  });
  const port = base.spec?.template.spec?.containers[0]?.ports?.[0];
  await admin.makeApiClient(CoreV1Api).createNamespacedService({
    namespace: t.namespace,
    body: {
      metadata: { name },
      spec: {
        selector: { app: name },
        ports: [{ port: 80, targetPort: port?.name ?? port?.containerPort ?? 8080 }],
      },
    },
  });
  await waitRolledOut(t, name);
}

export function formatLoad(r: UrlLoadReport): string {
  const kinds = Object.entries(r.lostByKind)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
  return `sent ${r.sent}, lost ${r.lost}${kinds ? ` (${kinds})` : ''}, p99 ${r.p99Ms?.toFixed(0) ?? '-'} ms, ${Object.keys(r.byInstance).length} pods answered`;
}
