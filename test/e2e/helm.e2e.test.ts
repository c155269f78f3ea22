// The Helm chart (config/helm/graceful-shutdown-operator) with the real `helm` (v4, built from its
// Go module like the control plane): it lints; it renders exactly the objects kustomize renders
// from the same manifests (config/default, and config/install with monitoring, dashboard and an
// image); and on the real node it installs (operator Ready, a policy reconciled), upgrades from the
// previous chart version with a policy in place and no managed Deployment restarted, and
// uninstalls, leaving the CRD, the policy and the Deployment's settings.
//
// The e2e cluster already holds what other tests need (the CRD, the operator's RBAC, applied by
// the global setup): the file removes the RBAC the chart brings, has Helm take ownership of the
// existing CRD as a kustomize install leaves it (`--take-ownership --force-conflicts`), and restores
// the prerequisites afterwards.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { CHART_DIR } from '../../hack/helm-chart.ts';
import { APPLIED_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { ensureCorpus } from '../audit/corpus.ts';
import { buildHelm } from '../cluster/build.ts';
import {
  createPolicy,
  deletePolicy,
  installOperatorPrerequisites,
  OPERATOR_LEASE,
  OPERATOR_NAMESPACE,
  readPolicyStatus,
  readyOperatorPods,
  repoRoot,
  sampleDeployment,
  waitFor,
} from '../operator/harness.ts';
import { adminKubeConfig, clusterInfo, kubectl, useNamespace } from './support.ts';

const CHART = join(repoRoot, CHART_DIR);
const RELEASE = 'gso';
const POLICY = 'helm-chart';
const ns = useNamespace('helm');
let helmBinary: string;
let home: string;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** `helm` with its own home (no ~/.config writes) and the cluster's admin kubeconfig. */
function helm(args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(
      helmBinary,
      args,
      {
        maxBuffer: 64 * 1024 * 1024,
        timeout: 300_000,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: home,
          HELM_CACHE_HOME: join(home, 'cache'),
          HELM_CONFIG_HOME: join(home, 'config'),
          HELM_DATA_HOME: join(home, 'data'),
          KUBECONFIG: clusterInfo().kubeconfig,
        },
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') reject(err);
        else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
  });
}

async function helmOk(args: string[]): Promise<string> {
  const result = await helm(args);
  if (result.code !== 0)
    throw new Error(`helm ${args.join(' ')} failed (exit ${result.code}): ${result.stderr}`);
  return result.stdout;
}

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
};

/** Kinds without a namespace: kustomize (kubectl's) writes one on a ValidatingAdmissionPolicy anyway. */
const CLUSTER_SCOPED = new Set([
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleBinding',
  'MutatingWebhookConfiguration',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
]);
/** What each tool adds of its own: Helm's release labels and the CRD's keep policy; kustomize's managed-by. */
const HELM_LABELS = ['app.kubernetes.io/instance', 'app.kubernetes.io/version', 'helm.sh/chart'];

/** The objects of a render, by kind/namespace/name, without what only says which tool wrote them. */
function objects(yaml: string): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const doc of parseAllDocuments(yaml)) {
    const o = doc.toJS() as Obj | null;
    if (!o || o.kind === 'Namespace') continue;
    const meta = o.metadata;
    if (CLUSTER_SCOPED.has(o.kind)) delete meta.namespace;
    for (const label of ['app.kubernetes.io/managed-by', ...HELM_LABELS]) delete meta.labels?.[label];
    delete meta.annotations?.['helm.sh/resource-policy'];
    if (meta.annotations && Object.keys(meta.annotations).length === 0) delete meta.annotations;
    out.set(`${o.kind}/${meta.namespace ?? ''}/${meta.name}`, o);
  }
  return out;
}

/** The keys in only one of the two, and those whose objects differ. */
function differences(a: Map<string, Obj>, b: Map<string, Obj>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys].filter((k) => !isDeepStrictEqual(a.get(k), b.get(k))).sort();
}

/** `--set` for each KEY=VALUE. */
const set = (...pairs: string[]) => pairs.flatMap((pair) => ['--set', pair]);
/** The chart's monitoring objects and dashboard, as config/install adds them. */
const MONITORING = [
  'monitoring.serviceMonitor.enabled=true',
  'monitoring.rules.enabled=true',
  'grafana.dashboard.enabled=true',
];

/** The operator image on the real node, as the chart's image.repository and image.tag. */
function imageValues(): string[] {
  const ref = clusterInfo().realNode.operatorImage;
  const at = ref.lastIndexOf(':');
  return ['--set', `image.repository=${ref.slice(0, at)}`, '--set', `image.tag=${ref.slice(at + 1)}`];
}

/** Values that put the operator's pods on the real node. */
function placementValues(): string[] {
  const { placement } = clusterInfo().realNode;
  const args: string[] = [];
  for (const [key, value] of Object.entries(placement.nodeSelector))
    args.push('--set-string', `nodeSelector.${key.replaceAll('.', '\\.')}=${value}`);
  placement.tolerations.forEach((t, i) => {
    for (const [field, value] of Object.entries(t))
      if (value !== undefined) args.push('--set-string', `tolerations[${i}].${field}=${String(value)}`);
  });
  return args;
}

const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);

const operatorPods = () => readyOperatorPods(clusterInfo());
/** Every operator pod, Ready or not, terminating included. */
const operatorPodNames = async () =>
  (
    await adminKubeConfig().makeApiClient(CoreV1Api).listNamespacedPod({
      namespace: OPERATOR_NAMESPACE,
      labelSelector: 'app.kubernetes.io/name=graceful-shutdown-operator',
    })
  ).items.map((p) => p.metadata?.name);

beforeAll(async () => {
  helmBinary = (await buildHelm({ progress: () => {} })).helm;
  home = await mkdtemp(join(tmpdir(), 'gso-helm-'));
  await mkdir(join(home, 'config'), { recursive: true });
}, 600_000);

afterAll(async () => {
  await helm(['uninstall', RELEASE, '-n', OPERATOR_NAMESPACE, '--wait', '--timeout', '2m']);
  await deletePolicy(adminKubeConfig(), POLICY).catch(() => undefined);
  // The release's pods stop after their RBAC is gone (an uninstall deletes both at once), so
  // their Lease is not released: once they are gone, it goes too, for the next file's operators.
  await waitFor('the chart-installed operator pods gone', async () =>
    (await operatorPodNames()).length === 0 ? true : undefined,
  );
  await kubectl(['delete', 'lease', OPERATOR_LEASE, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
  // What the other test files need back: the operator's RBAC (the chart's was uninstalled), and
  // a CRD without Helm's labels and annotations, which a later server-side apply of the
  // kustomize install would otherwise conflict with (managed-by: Helm, owned by the manager helm).
  const crd = 'crd/gracefulshutdownpolicies.gracefulshutdown.dev';
  await kubectl([
    'label',
    crd,
    'app.kubernetes.io/managed-by-',
    'app.kubernetes.io/part-of-',
    ...HELM_LABELS.map((l) => `${l}-`),
  ]);
  await kubectl([
    'annotate',
    crd,
    'meta.helm.sh/release-name-',
    'meta.helm.sh/release-namespace-',
    'helm.sh/resource-policy-',
  ]);
  await installOperatorPrerequisites(clusterInfo().kubectl, clusterInfo().kubeconfig);
  await rm(home, { recursive: true, force: true });
}, 300_000);

describe('the Helm chart, generated from the kustomize manifests', () => {
  test('helm lint --strict passes with the defaults and with every option turned', async () => {
    for (const values of [
      [],
      ['--set', 'webhook.enabled=false'],
      set(
        'webhook.certificates=CertManager',
        ...MONITORING,
        'prometheus.url=http://prometheus.monitoring.svc:9090',
      ),
    ]) {
      const linted = await helm(['lint', '--strict', CHART, ...values]);
      expect(linted.code, `${values.join(' ')}: ${linted.stdout}${linted.stderr}`).toBe(0);
      expect(linted.stdout).toContain('0 chart(s) failed');
    }
    // Negative control: values.schema.json names a value that is not one of the choices.
    const typo = await helm(['lint', '--strict', CHART, ...set('webhook.certificates=certmanager')]);
    expect(typo.code).not.toBe(0);
    expect(typo.stdout + typo.stderr).toContain(
      "at '/webhook/certificates': value must be one of 'Operator', 'CertManager'",
    );
  });

  test('helm template renders the objects kustomize renders: config/default, and config/install', async () => {
    const kustomize = async (dir: string) => {
      const out = await kubectl(['kustomize', join(repoRoot, dir)]);
      expect(out.code, out.stderr).toBe(0);
      return objects(out.stdout);
    };
    const template = async (values: string[]) =>
      objects(await helmOk(['template', RELEASE, CHART, '-n', OPERATOR_NAMESPACE, ...values]));
    const fromKustomize = await kustomize('config/default');
    const fromHelm = await template([]);
    expect(fromHelm.size).toBeGreaterThan(15);
    expect(differences(fromKustomize, fromHelm)).toEqual([]);
    // The overlay a user copies: monitoring, the dashboard and their own image.
    const installed = await kustomize('config/install');
    const withEverything = await template(
      set(
        ...MONITORING,
        'image.repository=registry.example.com/team/graceful-shutdown-operator',
        'image.tag=0.1.0',
      ),
    );
    expect(differences(installed, withEverything)).toEqual([]);
    // Negative control: a value that changes an object is seen.
    expect(differences(fromKustomize, await template(['--set', 'replicaCount=3']))).toEqual([
      `Deployment/${OPERATOR_NAMESPACE}/graceful-shutdown-operator`,
    ]);
    // The options: no webhook objects, and the operator told so; cert-manager's injector.
    const noWebhook = await helmOk([
      'template',
      RELEASE,
      CHART,
      '-n',
      OPERATOR_NAMESPACE,
      '--set',
      'webhook.enabled=false',
    ]);
    expect(noWebhook).not.toContain('kind: MutatingWebhookConfiguration');
    expect(noWebhook).toMatch(/- name: WEBHOOK\n\s+value: "false"/);
    const certManager = await helmOk([
      'template',
      RELEASE,
      CHART,
      '-n',
      'ops',
      '--set',
      'webhook.certificates=CertManager',
    ]);
    expect(certManager).toContain('cert-manager.io/inject-ca-from: ops/graceful-shutdown-operator-webhook');
    expect(certManager).toContain('- graceful-shutdown-operator-webhook.ops.svc');
    expect(certManager).toContain('secretName: graceful-shutdown-operator-webhook-tls');
    expect(certManager).toMatch(/- name: WEBHOOK_CERTIFICATES\n\s+value: External/);
  });
});

describe('webhook.certificates=CertManager', () => {
  // cert-manager's binaries cannot be built here (its cmd/ modules are not on the module proxy),
  // so it does not run; its CRDs, from the module the audit corpus already fetches, are installed
  // and the chart's Issuer and Certificate go through them. The injector's annotation is the one
  // cert-manager reads (WantInjectAnnotation, pkg/apis/certmanager/v1/types.go), namespace/name.
  const CERT_MANAGER_CRDS = ['issuers', 'certificates'];
  afterAll(async () => {
    await kubectl([
      'delete',
      '--ignore-not-found',
      ...CERT_MANAGER_CRDS.map((p) => `crd/${p}.cert-manager.io`),
    ]);
  });

  test("the Issuer and Certificate pass cert-manager v1.21.2's own CRDs (server-side dry run); a wrong field is refused", async () => {
    const corpus = await ensureCorpus(() => {});
    const crds = join(
      corpus,
      'github.com_cert-manager_cert-manager@v1.21.2/github.com/cert-manager/cert-manager@v1.21.2/deploy/crds',
    );
    for (const plural of CERT_MANAGER_CRDS) {
      const applied = await kubectl([
        'apply',
        '--server-side',
        '-f',
        join(crds, `cert-manager.io_${plural}.yaml`),
      ]);
      expect(applied.code, applied.stderr).toBe(0);
    }
    const established = await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      ...CERT_MANAGER_CRDS.map((p) => `crd/${p}.cert-manager.io`),
    ]);
    expect(established.code, established.stderr).toBe(0);

    const rendered = await helmOk([
      'template',
      RELEASE,
      CHART,
      '-n',
      ns.name,
      ...set('webhook.certificates=CertManager'),
    ]);
    const certManagerObjects = [...objects(rendered).values()].filter(
      (o) => o.apiVersion === 'cert-manager.io/v1',
    );
    expect(certManagerObjects.map((o) => o.kind).sort()).toEqual(['Certificate', 'Issuer']);
    const dryRun = (docs: unknown[]) =>
      kubectl(['apply', '--server-side', '--dry-run=server', '--field-manager=gso-helm-test', '-f', '-'], {
        input: docs.map((d) => JSON.stringify(d)).join('\n'),
      });
    const accepted = await dryRun(certManagerObjects);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain(
      'certificate.cert-manager.io/graceful-shutdown-operator-webhook serverside-applied (server dry run)',
    );
    // The injector finds the Certificate by the annotation's namespace/name.
    const webhook = [...objects(rendered).values()].find((o) => o.kind === 'MutatingWebhookConfiguration');
    expect(webhook?.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBe(
      `${ns.name}/graceful-shutdown-operator-webhook`,
    );
    // Negative control: the same Certificate with a field cert-manager's schema lacks is refused.
    const certificate = certManagerObjects.find((o) => o.kind === 'Certificate') as Obj & { spec: object };
    const refused = await dryRun([
      { ...certificate, spec: { ...certificate.spec, dnsName: 'typo.example' } },
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('dnsName');
  });
});

describe('helm install, upgrade and uninstall on the real node', () => {
  const DEPLOYMENT = 'web';
  let writtenGeneration: number | undefined;
  let podsBefore: string[] = [];
  let packages: string;

  test('install: the operator is Ready and reconciles a policy', async () => {
    packages = join(home, 'packages');
    await mkdir(packages, { recursive: true });
    // The chart as released before this one (same templates, version 0.1.0), and this one.
    for (const version of ['0.1.0', '0.1.1'])
      await helmOk(['package', CHART, '--version', version, '--destination', packages]);
    // What the chart brings that the cluster's prerequisites put there: removed, so Helm creates
    // them; the CRD stays (it holds every policy) and Helm takes it over, as from a kustomize
    // install: the CRD is first server-side applied as `kubectl apply -k config/default` leaves
    // it (managed-by: kustomize, owned by kubectl), whatever other files did before.
    const fromKustomize = await kubectl(['kustomize', join(repoRoot, 'config/default')]);
    expect(fromKustomize.code, fromKustomize.stderr).toBe(0);
    const crd = parseAllDocuments(fromKustomize.stdout)
      .map((d) => d.toJS() as Obj | null)
      .find((o) => o?.kind === 'CustomResourceDefinition');
    const appliedCrd = await kubectl(['apply', '--server-side', '--force-conflicts', '-f', '-'], {
      input: JSON.stringify(crd),
    });
    expect(appliedCrd.code, appliedCrd.stderr).toBe(0);
    const rendered = await helmOk(['template', RELEASE, CHART, '-n', OPERATOR_NAMESPACE]);
    const withoutCrd = parseAllDocuments(rendered)
      .map((d) => d.toJS() as Obj | null)
      .filter((o): o is Obj => o !== null && o.kind !== 'CustomResourceDefinition');
    const deleted = await kubectl(['delete', '--ignore-not-found', '--wait=true', '-f', '-'], {
      input: withoutCrd.map((o) => JSON.stringify(o)).join('\n---\n'),
    });
    expect(deleted.code, deleted.stderr).toBe(0);

    const installed = await helm([
      'install',
      RELEASE,
      join(packages, 'graceful-shutdown-operator-0.1.0.tgz'),
      '-n',
      OPERATOR_NAMESPACE,
      '--create-namespace',
      // Taking over a kustomize install: the objects' managed-by label is kubectl's field.
      '--take-ownership',
      '--force-conflicts',
      '--wait',
      '--timeout',
      '4m',
      ...imageValues(),
      ...placementValues(),
      '--set',
      'logLevel=info',
    ]);
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.stdout).toContain('STATUS: deployed');
    podsBefore = await operatorPods();
    expect(podsBefore).toHaveLength(2);

    await apps().createNamespacedDeployment({
      namespace: ns.name,
      body: sampleDeployment(DEPLOYMENT, { namespace: ns.name }),
    });
    await createPolicy(adminKubeConfig(), POLICY, {
      mode: 'Enforce',
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns.name } },
      preStop: { seconds: 5 },
      terminationGracePeriod: { minSeconds: 20 },
    });
    const written = await waitFor(
      'the chart-installed operator to write the policy into the Deployment',
      async () => {
        const d = await apps().readNamespacedDeployment({ namespace: ns.name, name: DEPLOYMENT });
        return d.metadata?.annotations?.[APPLIED_ANNOTATION] ? d : undefined;
      },
      { timeoutMs: 120_000 },
    );
    expect(written.spec?.template.spec?.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(20);
    writtenGeneration = written.metadata?.generation;
    const status = await readPolicyStatus(adminKubeConfig(), POLICY);
    expect(status.workloads?.map((w) => w.name)).toContain(DEPLOYMENT);
  }, 420_000);

  test('upgrade from the previous chart version: the operator rolls, no managed Deployment restarts', async () => {
    expect(writtenGeneration).toBeDefined();
    const upgraded = await helm([
      'upgrade',
      RELEASE,
      join(packages, 'graceful-shutdown-operator-0.1.1.tgz'),
      '-n',
      OPERATOR_NAMESPACE,
      '--reuse-values',
      '--set',
      'logLevel=debug',
      '--wait',
      '--timeout',
      '4m',
    ]);
    expect(upgraded.code, upgraded.stderr).toBe(0);
    const history = await helmOk(['history', RELEASE, '-n', OPERATOR_NAMESPACE, '-o', 'json']);
    expect((JSON.parse(history) as { chart: string }[]).map((h) => h.chart)).toEqual([
      'graceful-shutdown-operator-0.1.0',
      'graceful-shutdown-operator-0.1.1',
    ]);
    // New operator pods (the log level is in their template), leading again.
    const podsAfter = await waitFor('two new operator pods Ready', async () => {
      const pods = await operatorPods();
      return pods.length === 2 && pods.every((p) => !podsBefore.includes(p)) ? pods : undefined;
    });
    expect(podsAfter).toHaveLength(2);
    const operator = await apps().readNamespacedDeployment({
      namespace: OPERATOR_NAMESPACE,
      name: 'graceful-shutdown-operator',
    });
    expect(operator.spec?.template.spec?.containers[0]?.env).toContainEqual({
      name: 'LOG_LEVEL',
      value: 'debug',
    });
    // The upgraded operator reconciles: a Deployment created now gets the policy's settings...
    await apps().createNamespacedDeployment({
      namespace: ns.name,
      body: sampleDeployment(`${DEPLOYMENT}-after`, { namespace: ns.name }),
    });
    await waitFor('the upgraded operator to write the policy into a new Deployment', async () => {
      const d = await apps().readNamespacedDeployment({ namespace: ns.name, name: `${DEPLOYMENT}-after` });
      return d.metadata?.annotations?.[APPLIED_ANNOTATION] ? true : undefined;
    });
    await waitFor('the policy status to list both Deployments', async () => {
      const names = (await readPolicyStatus(adminKubeConfig(), POLICY)).workloads?.map((w) => w.name) ?? [];
      return names.includes(`${DEPLOYMENT}-after`) && names.includes(DEPLOYMENT) ? true : undefined;
    });
    // ...and the one it had written before was not written again: no restart.
    const d = await apps().readNamespacedDeployment({ namespace: ns.name, name: DEPLOYMENT });
    expect(d.metadata?.generation).toBe(writtenGeneration);
  }, 420_000);

  test('uninstall: the operator and its webhook go; the CRD, the policy and the settings stay', async () => {
    const removed = await helm(['uninstall', RELEASE, '-n', OPERATOR_NAMESPACE, '--wait', '--timeout', '2m']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toContain('kept due to the resource policy');
    const gone = await kubectl([
      'get',
      'deployment/graceful-shutdown-operator',
      'mutatingwebhookconfiguration/graceful-shutdown-operator',
      '-n',
      OPERATOR_NAMESPACE,
      '--ignore-not-found',
      '-o',
      'name',
    ]);
    expect(gone.stdout.trim()).toBe('');
    const kept = await kubectl([
      'get',
      'crd/gracefulshutdownpolicies.gracefulshutdown.dev',
      `gsp/${POLICY}`,
      '-o',
      'name',
    ]);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stdout.trim().split('\n')).toHaveLength(2);
    const d = await apps().readNamespacedDeployment({ namespace: ns.name, name: DEPLOYMENT });
    expect(d.metadata?.generation).toBe(writtenGeneration);
    expect(d.spec?.template.spec?.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(20);
  }, 300_000);
});
