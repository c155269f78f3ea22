// The GracefulShutdownPolicy API on the real apiserver: the generated CRD installs, refuses every
// invalid policy naming the field (as zod does), fills the same defaults as zod, and the
// kustomize config in config/default passes a strict server-side dry run.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CRD_FILE } from '../../operator/src/api/crd.ts';
import { CRD_NAME, OPERATOR_NAMESPACE, parsePolicy } from '../../operator/src/api/policy.ts';
import {
  INVALID_POLICIES,
  invalidPolicyManifest,
  namesField,
} from '../../operator/src/api/testdata/invalid-policies.ts';
import { loadSamples } from '../../operator/src/api/testdata/samples.ts';
import { kubectl } from './support.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const samples = loadSamples();

/** Server-side apply with strict field validation: unknown or duplicate fields are errors. */
function applyStrict(manifest: unknown, extraArgs: string[] = []) {
  return kubectl(['apply', '--server-side', '--validate=strict', ...extraArgs, '-f', '-'], {
    input: JSON.stringify(manifest),
  });
}

async function getPolicy(name: string): Promise<Record<string, unknown>> {
  const result = await kubectl(['get', 'gsp', name, '-o', 'json']);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout);
}

beforeAll(async () => {
  const install = await kubectl(['apply', '--server-side', '-f', join(repoRoot, 'crds', CRD_FILE)]);
  expect(install.stderr).toBe('');
  expect(install.code).toBe(0);
  const established = await kubectl([
    'wait',
    '--for=condition=Established',
    `crd/${CRD_NAME}`,
    '--timeout=60s',
  ]);
  expect(established.code, established.stderr).toBe(0);
});

afterAll(async () => {
  // Leave no policy behind: later test files run an operator that would act on them.
  const names = [
    ...samples.map((s) => s.manifest.metadata.name),
    ...INVALID_POLICIES.map((_, i) => `invalid-${i}`),
  ];
  await kubectl(['delete', 'gsp', '--ignore-not-found', '--wait=false', ...names]);
});

describe('invalid policies: the apiserver and zod refuse each, naming the field', () => {
  test.each(INVALID_POLICIES.map((c, index) => ({ ...c, index })))(
    '$kind: $title -> $field',
    async ({ index, field }) => {
      const manifest = invalidPolicyManifest(index);
      const zod = parsePolicy(manifest);
      expect(zod.ok, 'zod accepted it').toBe(false);
      if (!zod.ok)
        expect(
          zod.errors.some((e) => namesField(e.path, field)),
          JSON.stringify(zod.errors),
        ).toBe(true);

      const result = await applyStrict(manifest);
      expect(result.code, `the apiserver accepted it: ${result.stdout}`).not.toBe(0);
      expect(result.stderr).toContain(field);
    },
  );
});

describe('valid samples: accepted, read back with the defaults zod fills', () => {
  test.each(samples)('$file', async ({ manifest }) => {
    const zod = parsePolicy(manifest);
    if (!zod.ok) expect.fail(JSON.stringify(zod.errors));

    const result = await applyStrict(manifest);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const stored = await getPolicy(manifest.metadata.name);
    expect(stored.spec).toEqual(zod.value.spec);
  });

  test('status is a subresource whose shape zod accepts, and kubectl get gsp prints its counts', async () => {
    const name = samples[0]?.manifest.metadata.name ?? '';
    const status = {
      observedGeneration: 1,
      conditions: [
        {
          type: 'Accepted',
          status: 'True',
          reason: 'Valid',
          message: 'the spec is valid',
          lastTransitionTime: '2025-01-01T00:00:00Z',
          observedGeneration: 1,
        },
      ],
      counts: { matched: 3, compliant: 2, nonCompliant: 1, exempt: 0 },
      workloads: [
        {
          namespace: 'shop',
          name: 'checkout',
          verdict: 'NonCompliant',
          reason: 'GracePeriodTooShort',
          message: 'terminationGracePeriodSeconds 30 < recommended 47',
          recommended: {
            terminationGracePeriodSeconds: 47,
            preStop: { action: 'Sleep', seconds: 5 },
            readinessProbe: { path: '/readyz', port: 'http' },
          },
          applied: { terminationGracePeriodSeconds: 30 },
          observedLatency: {
            source: 'Prometheus',
            percentile: 0.99,
            seconds: 12.3,
            samples: 5400,
            window: '1h',
          },
        },
      ],
    };
    const patch = await kubectl([
      'patch',
      'gsp',
      name,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status }),
    ]);
    expect(patch.stderr).toBe('');
    expect(patch.code).toBe(0);

    const stored = await getPolicy(name);
    expect(stored.status).toEqual(status);
    const zod = parsePolicy(stored);
    expect(zod.ok ? [] : zod.errors).toEqual([]);

    const table = await kubectl(['get', 'gsp', name]);
    const [header, row] = table.stdout.trim().split('\n');
    expect(header?.split(/\s+/)).toEqual(['NAME', 'MODE', 'MATCHED', 'COMPLIANT', 'WAITING', 'AGE']);
    expect(row?.split(/\s+/).slice(0, 4)).toEqual([name, 'Audit', '3', '2']);
    const byCategory = await kubectl(['get', 'gracefulshutdown', '-o', 'name']);
    expect(byCategory.stdout).toContain(`gracefulshutdownpolicy.gracefulshutdown.dev/${name}`);
  });

  test('a write to spec through the status subresource is ignored', async () => {
    const name = samples[0]?.manifest.metadata.name ?? '';
    const before = await getPolicy(name);
    const patch = await kubectl([
      'patch',
      'gsp',
      name,
      '--subresource=status',
      '--type=merge',
      '-p',
      '{"spec":{"priority":999}}',
    ]);
    expect(patch.code, patch.stderr).toBe(0);
    expect((await getPolicy(name)).spec).toEqual(before.spec);
  });
});

describe('config/default', () => {
  let createdNamespace = false;

  afterAll(async () => {
    if (createdNamespace) await kubectl(['delete', 'namespace', OPERATOR_NAMESPACE, '--wait=false']);
  });

  test('renders with kustomize and passes a strict server-side dry run without warnings', async () => {
    const rendered = await kubectl(['kustomize', join(repoRoot, 'config', 'default')]);
    expect(rendered.stderr).toBe('');
    expect(rendered.code).toBe(0);
    for (const kind of ['CustomResourceDefinition', 'ClusterRole', 'Role', 'ServiceAccount', 'Deployment']) {
      expect(rendered.stdout).toMatch(new RegExp(`^kind: ${kind}$`, 'm'));
    }

    // A dry run creates nothing, so the namespaced objects need their namespace to exist already.
    const namespace = await kubectl(['get', 'namespace', OPERATOR_NAMESPACE]);
    if (namespace.code !== 0) {
      const created = await kubectl(['create', 'namespace', OPERATOR_NAMESPACE]);
      expect(created.code, created.stderr).toBe(0);
      createdNamespace = true;
    }

    const dryRun = await kubectl(
      ['apply', '--server-side', '--dry-run=server', '--validate=strict', '-f', '-'],
      {
        input: rendered.stdout,
      },
    );
    // No stderr at all: no error, and no warning (Pod Security "restricted" included).
    expect(dryRun.stderr).toBe('');
    expect(dryRun.code).toBe(0);
    expect(dryRun.stdout).toContain(
      'deployment.apps/graceful-shutdown-operator serverside-applied (server dry run)',
    );
  });
});
