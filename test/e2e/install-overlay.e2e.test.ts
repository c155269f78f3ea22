// config/install, the overlay a user copies: config/default with the Prometheus Operator's
// ServiceMonitor and alert rules and the Grafana dashboard as kustomize components, and the
// user's image. The real apiserver accepts every object it renders (a server-side dry run),
// with the Prometheus Operator's own CRDs (from its published module) installed for the
// monitoring objects.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ensureCorpus } from '../audit/corpus.ts';
import { repoRoot } from '../operator/install.ts';
import { kubectl } from './support.ts';

const install = join(repoRoot, 'config', 'install');
const MONITORING_CRDS = ['servicemonitors', 'prometheusrules'];

let crdFiles: string[] = [];

beforeAll(async () => {
  const corpus = await ensureCorpus(() => {});
  const dir = join(
    corpus,
    'github.com_prometheus-operator_prometheus-operator@v0.85.0/github.com/prometheus-operator/prometheus-operator@v0.85.0/example/prometheus-operator-crd',
  );
  crdFiles = MONITORING_CRDS.map((plural) => join(dir, `monitoring.coreos.com_${plural}.yaml`));
  for (const file of crdFiles) {
    const applied = await kubectl(['apply', '--server-side', '-f', file]);
    expect(applied.code, applied.stderr).toBe(0);
  }
  const established = await kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    ...MONITORING_CRDS.map((p) => `crd/${p}.monitoring.coreos.com`),
  ]);
  expect(established.code, established.stderr).toBe(0);
}, 240_000);

afterAll(async () => {
  await kubectl([
    'delete',
    '--ignore-not-found',
    ...MONITORING_CRDS.map((p) => `crd/${p}.monitoring.coreos.com`),
  ]);
});

describe('config/install: the overlay a user copies', () => {
  test('renders config/default with the user image, the ServiceMonitor, the alert rules and the dashboard', async () => {
    const rendered = await kubectl(['kustomize', install]);
    expect(rendered.code, rendered.stderr).toBe(0);
    const objects = parseAllDocuments(rendered.stdout).map(
      (d) => d.toJS() as { kind: string; metadata: { name: string; namespace?: string }; spec?: unknown },
    );
    const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'CustomResourceDefinition/gracefulshutdownpolicies.gracefulshutdown.dev',
        'Deployment/graceful-shutdown-operator',
        'ServiceMonitor/graceful-shutdown-operator',
        'PrometheusRule/graceful-shutdown-operator',
        'ConfigMap/graceful-shutdown-operator-dashboard',
        'MutatingWebhookConfiguration/graceful-shutdown-operator',
      ]),
    );
    for (const kind of ['ServiceMonitor', 'PrometheusRule', 'ConfigMap'])
      expect(objects.find((o) => o.kind === kind)?.metadata.namespace).toBe('graceful-shutdown-system');
    expect(rendered.stdout).toContain('image: registry.example.com/team/graceful-shutdown-operator:0.1.0');
    expect(rendered.stdout).not.toContain('ghcr.io/graceful-shutdown-operator/operator');
  });

  test('the apiserver accepts every object of it, the monitoring ones by the Prometheus Operator CRDs', async () => {
    const dryRun = await kubectl([
      'apply',
      '--server-side',
      '--dry-run=server',
      '--field-manager=gso-install-test',
      '-k',
      install,
    ]);
    expect(dryRun.code, dryRun.stderr).toBe(0);
    expect(dryRun.stdout).toContain(
      'servicemonitor.monitoring.coreos.com/graceful-shutdown-operator serverside-applied (server dry run)',
    );
    expect(dryRun.stdout).toContain(
      'prometheusrule.monitoring.coreos.com/graceful-shutdown-operator serverside-applied (server dry run)',
    );
    expect(dryRun.stdout).toContain(
      'configmap/graceful-shutdown-operator-dashboard serverside-applied (server dry run)',
    );
  });
});
