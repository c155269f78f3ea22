// Policy reports on the real apiserver, with the report CRDs installed from the published schema
// (test/fixtures/reports): wgpolicyk8s.io PolicyReports where only that group is served,
// openreports.io Reports once it is; no writes while nothing changes; gone with their policy.
import { join } from 'node:path';
import { AppsV1Api, CustomObjectsApi, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  deletePolicy,
  type OperatorProcess,
  repoRoot,
  sampleContainer,
  sampleDeployment,
  waitFor,
  waitGone,
} from '../operator/harness.ts';
import { adminKubeConfig, kubectl, startOperatorProcess, useNamespace, usePolicies } from './support.ts';

const RESYNC_MS = 2_000;
const ns = useNamespace('reports');
const policies = usePolicies();
const custom = () => adminKubeConfig().makeApiClient(CustomObjectsApi);
const fixtures = join(repoRoot, 'test', 'fixtures', 'reports');
let operator: OperatorProcess;

interface Report {
  metadata: { resourceVersion: string; ownerReferences?: { kind: string; name: string }[] };
  summary: Record<string, number>;
  results: {
    policy: string;
    result: string;
    message: string;
    resources: { name: string }[];
    properties: Record<string, string>;
  }[];
}

/** Compliant: a probe, a preStop and a grace of 30 s; else none of them and 5 s. */
function deployment(name: string, compliant: boolean): V1Deployment {
  const settings = {
    readinessProbe: { httpGet: { path: '/readyz', port: 8080 } },
    lifecycle: { preStop: { sleep: { seconds: 5 } } },
  };
  return sampleDeployment(name, {
    namespace: ns.name,
    podSpec: { terminationGracePeriodSeconds: compliant ? 30 : 5 },
    containers: [sampleContainer(compliant ? settings : {})],
  });
}

/** The operator's report in this file's namespace; rejects as the apiserver does (404 before it exists). */
function report(group: string, version: string, plural: string): Promise<Report> {
  return custom().getNamespacedCustomObject({
    group,
    version,
    plural,
    namespace: ns.name,
    name: 'gsp-reports',
  }) as Promise<Report>;
}

beforeAll(async () => {
  const applied = await kubectl(['apply', '--server-side', '-f', join(fixtures, 'wgpolicyk8s.yaml')]);
  if (applied.code !== 0) throw new Error(applied.stderr);
  await kubectl(['wait', '--for=condition=Established', 'crd/policyreports.wgpolicyk8s.io']);
  operator = await startOperatorProcess('operator-reports.log', ['--resync-ms', String(RESYNC_MS)]);
  const apps = adminKubeConfig().makeApiClient(AppsV1Api);
  await apps.createNamespacedDeployment({ namespace: ns.name, body: deployment('good', true) });
  await apps.createNamespacedDeployment({ namespace: ns.name, body: deployment('bad', false) });
  await policies.apply('reports', ns.name, { mode: 'Audit', observedLatency: { source: 'None' } });
});

afterAll(async () => {
  await operator?.stop();
  for (const file of ['openreports.yaml', 'wgpolicyk8s.yaml'])
    await kubectl(['delete', '-f', join(fixtures, file), '--ignore-not-found']);
});

describe('policy reports', () => {
  test('only wgpolicyk8s.io served: a PolicyReport per namespace, a result per Deployment, owned by the policy', async () => {
    const polr = await waitFor('the PolicyReport', async () => {
      const r = await report('wgpolicyk8s.io', 'v1alpha2', 'policyreports');
      return r.summary?.pass === 1 && r.summary.fail === 1 ? r : undefined;
    });
    expect(polr.metadata.ownerReferences?.[0]).toMatchObject({
      kind: 'GracefulShutdownPolicy',
      name: 'reports',
    });
    const bad = polr.results.find((r) => r.resources[0]?.name === 'bad');
    expect(bad).toMatchObject({
      policy: 'reports',
      result: 'fail',
      properties: { recommendedGraceSeconds: '30', appliedGraceSeconds: '5' },
    });
    expect(bad?.message).toContain('terminationGracePeriodSeconds: 5 -> 30');
    // kubectl shows it with the CRD's printer columns.
    const table = await kubectl(['get', 'policyreports.wgpolicyk8s.io', '-n', ns.name]);
    expect(table.stdout).toMatch(/gsp-reports\s+1\s+1\s+0\s+0\s+0/);
    console.log(`[reports] kubectl get policyreports:\n${table.stdout.trim()}`);
    const yaml = await kubectl([
      'get',
      'policyreports.wgpolicyk8s.io',
      'gsp-reports',
      '-n',
      ns.name,
      '-o',
      'yaml',
    ]);
    console.log(`[reports] the report as YAML:\n${yaml.stdout.trim()}`);

    // Nothing changes over three status passes: nothing is written.
    const version = polr.metadata.resourceVersion;
    await new Promise((resolve) => setTimeout(resolve, 3 * RESYNC_MS + 500));
    expect((await report('wgpolicyk8s.io', 'v1alpha2', 'policyreports')).metadata.resourceVersion).toBe(
      version,
    );
  });

  test('openreports.io served too: the operator writes Reports there', async () => {
    const applied = await kubectl(['apply', '--server-side', '-f', join(fixtures, 'openreports.yaml')]);
    expect(applied.code, applied.stderr).toBe(0);
    const reps = await waitFor(
      'the Report',
      async () => {
        const r = await report('openreports.io', 'v1alpha1', 'reports');
        return r.summary?.fail === 1 ? r : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(reps.results.map((r) => [r.resources[0]?.name, r.result]).sort()).toEqual([
      ['bad', 'fail'],
      ['good', 'pass'],
    ]);
  });

  test('deleting the policy deletes its reports (garbage collection)', async () => {
    await deletePolicy(adminKubeConfig(), 'reports');
    // Gone means NotFound: a report that merely cannot be read fails the test.
    await waitGone('the Report', () => report('openreports.io', 'v1alpha1', 'reports'), {
      timeoutMs: 60_000,
    });
    await waitGone('the PolicyReport', () => report('wgpolicyk8s.io', 'v1alpha2', 'policyreports'), {
      timeoutMs: 60_000,
    });
  });
});
