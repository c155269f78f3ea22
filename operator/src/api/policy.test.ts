import { describe, expect, test } from 'vitest';
import { EXCLUDE_ANNOTATION, isExcludedByAnnotation } from './annotations.ts';
import {
  comparePolicyPrecedence,
  DEFAULT_EXCLUDED_NAMESPACES,
  type GracefulShutdownPolicySpec,
  isPortNumberOrName,
  parsePolicy,
  parsePolicySpec,
} from './policy.ts';
import { INVALID_POLICIES, invalidPolicyManifest, namesField } from './testdata/invalid-policies.ts';
import { loadSamples } from './testdata/samples.ts';

const ALL_DEFAULTS: GracefulShutdownPolicySpec = {
  mode: 'Audit',
  priority: 0,
  deploymentSelector: {},
  namespaceSelector: {},
  excludedNamespaces: ['kube-system', 'graceful-shutdown-system'],
  readinessProbe: {
    inject: 'IfMissing',
    path: '/readyz',
    periodSeconds: 5,
    timeoutSeconds: 1,
    failureThreshold: 3,
    verification: 'Verify',
    grpcHealthService: false,
  },
  preStop: { inject: 'IfMissing', action: 'Auto', seconds: 5 },
  terminationGracePeriod: {
    inject: 'IfShorter',
    strategy: 'Computed',
    minSeconds: 30,
    maxSeconds: 300,
    overheadSeconds: 5,
  },
  observedLatency: {
    source: 'None',
    percentile: 0.99,
    window: '1h',
    stabilizationWindow: '15m',
    minSamples: 100,
    safetyFactor: 1.5,
  },
  rollout: {
    maxConcurrent: 1,
    updateExisting: 'Immediately',
    progressDeadlineSeconds: 600,
    onFailure: 'Pause',
    breakerNamespaces: 3,
    conflictWindowSeconds: 86400,
  },
  sidecars: { names: [], images: [] },
};

describe('invalid policies are refused by zod, naming the field', () => {
  test('the table covers every kind of mistake with at least 20 cases', () => {
    expect(INVALID_POLICIES.length).toBeGreaterThanOrEqual(20);
    const kinds = new Set(INVALID_POLICIES.map((c) => c.kind));
    expect([...kinds].sort()).toEqual([
      'contradiction',
      'missing required field',
      'out of range',
      'unknown field',
      'wrong type',
    ]);
  });

  test.each(INVALID_POLICIES.map((c, index) => ({ ...c, index })))(
    '$kind: $title -> $field',
    ({ index, field }) => {
      const result = parsePolicy(invalidPolicyManifest(index));
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors.map((e) => e.path).filter((path) => namesField(path, field))).not.toEqual([]);
    },
  );
});

describe('valid samples', () => {
  const samples = loadSamples();

  test('there are at least 5, each commented', () => {
    expect(samples.length).toBeGreaterThanOrEqual(5);
    for (const sample of samples) expect(sample.text, sample.file).toMatch(/^#/);
  });

  test.each(samples)('$file is accepted with its defaults filled', ({ manifest }) => {
    const result = parsePolicy(manifest);
    if (!result.ok) expect.fail(JSON.stringify(result.errors));
    const spec = result.value.spec;
    // Every group is present after defaulting, whatever the sample wrote.
    for (const key of Object.keys(ALL_DEFAULTS)) expect(spec, key).toHaveProperty(key);
    expect(spec.readinessProbe.failureThreshold).toBeTypeOf('number');
    expect(spec.rollout.maxConcurrent).toBeGreaterThanOrEqual(1);
  });

  test('a sample that sets part of a group gets the rest of the group defaulted', () => {
    const scrape = samples.find((s) => s.manifest.metadata.name === 'scrape-pods');
    const result = parsePolicy(scrape?.manifest);
    expect(result.ok && result.value.spec.preStop).toEqual({ inject: 'Never', action: 'Auto', seconds: 5 });
    expect(result.ok && result.value.spec.readinessProbe).toEqual({
      inject: 'Override',
      path: '/ready',
      periodSeconds: 5,
      timeoutSeconds: 1,
      failureThreshold: 3,
      verification: 'Verify',
      grpcHealthService: false,
    });
    expect(result.ok && result.value.spec.terminationGracePeriod).toEqual(
      ALL_DEFAULTS.terminationGracePeriod,
    );
  });
});

describe('parsePolicySpec', () => {
  test('fills every default in an empty spec', () => {
    expect(parsePolicySpec({})).toEqual({ ok: true, value: ALL_DEFAULTS });
  });

  test('a policy stored before presets keeps the old default metric, and may take a preset', () => {
    const stored = { observedLatency: { source: 'Prometheus', metric: 'http_request_duration_seconds' } };
    const result = parsePolicySpec({ observedLatency: { ...stored.observedLatency, preset: 'Istio' } });
    expect(result.ok).toBe(true);
    // Negative control: another metric next to a preset is refused.
    expect(
      parsePolicySpec({ observedLatency: { source: 'Prometheus', metric: 'rpc_seconds', preset: 'Istio' } })
        .ok,
    ).toBe(false);
  });

  test('keeps given values and defaults the rest of their group', () => {
    const result = parsePolicySpec({ preStop: { seconds: 12 }, readinessProbe: { port: 'http' } });
    expect(result.ok && result.value.preStop).toEqual({ inject: 'IfMissing', action: 'Auto', seconds: 12 });
    expect(result.ok && result.value.readinessProbe.port).toBe('http');
  });

  test('does not share default arrays between results', () => {
    const first = parsePolicySpec({});
    if (first.ok) first.value.excludedNamespaces.push('mutated');
    expect(DEFAULT_EXCLUDED_NAMESPACES).toEqual(['kube-system', 'graceful-shutdown-system']);
    const second = parsePolicySpec({});
    expect(second.ok && second.value.excludedNamespaces).toEqual(['kube-system', 'graceful-shutdown-system']);
  });

  test('reports every error with the path the apiserver would name', () => {
    const result = parsePolicySpec({
      preStop: { seconds: 400 },
      deploymentSelector: { matchExpressions: [{ key: 'a', operator: 'In', values: [] }] },
      colour: 'blue',
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map((e) => e.path).sort()).toEqual([
      'spec.colour',
      'spec.deploymentSelector.matchExpressions[0].values',
      'spec.preStop.seconds',
    ]);
    expect(result.errors.find((e) => e.path === 'spec.preStop.seconds')?.message).toMatch(/maxSeconds/);
    expect(result.errors.find((e) => e.path === 'spec.colour')?.message).toBe('unknown field');
  });

  test('a missing spec is an error on spec', () => {
    expect(parsePolicySpec(undefined)).toEqual({
      ok: false,
      errors: [{ path: 'spec', message: 'Required value' }],
    });
  });
});

describe('ports', () => {
  test.each([
    [8080, true],
    [1, true],
    [65535, true],
    [0, false],
    [65536, false],
    [80.5, false],
    ['http', true],
    ['http-metrics', true],
    ['h2c', true],
    ['8080', false],
    ['HTTP', false],
    ['a--b', false],
    ['-http', false],
    ['a-very-long-port-name', false],
  ])('%s is a port number or name: %s', (port, valid) => {
    expect(isPortNumberOrName(port)).toBe(valid);
  });
});

describe('precedence between policies matching one Deployment', () => {
  const policy = (name: string, priority: number) => ({ metadata: { name }, spec: { priority } });

  test('highest priority first, then the name that sorts first, whatever the input order', () => {
    const policies = [policy('b', 10), policy('z', 100), policy('a', 10), policy('c', 0)];
    const order = (list: typeof policies) =>
      [...list].sort(comparePolicyPrecedence).map((p) => p.metadata.name);
    expect(order(policies)).toEqual(['z', 'a', 'b', 'c']);
    expect(order([...policies].reverse())).toEqual(['z', 'a', 'b', 'c']);
  });
});

describe('annotations', () => {
  test('only "true" opts a Deployment out', () => {
    expect(isExcludedByAnnotation({ [EXCLUDE_ANNOTATION]: 'true' })).toBe(true);
    expect(isExcludedByAnnotation({ [EXCLUDE_ANNOTATION]: 'yes' })).toBe(false);
    expect(isExcludedByAnnotation(undefined)).toBe(false);
  });
});

describe('sidecars', () => {
  test('names and image repositories are kept as given', () => {
    const result = parsePolicySpec({
      sidecars: {
        names: ['log-shipper'],
        images: ['acme/agent', 'otel/opentelemetry-collector*', 'acme/*', 'aws-appmesh-envoy'],
      },
    });
    expect(result.ok && result.value.sidecars).toEqual({
      names: ['log-shipper'],
      images: ['acme/agent', 'otel/opentelemetry-collector*', 'acme/*', 'aws-appmesh-envoy'],
    });
  });

  test.each([
    'gcr.io/cloud-sql-connectors/cloud-sql-proxy',
    'localhost:5000/agent',
    'istio/proxyv2:1.24.0',
    'istio/proxyv2@sha256:abc',
    'Istio/proxyv2',
    '*',
    'istio/',
    '',
  ])('image %j is refused, saying what is expected', (image) => {
    const result = parsePolicySpec({ sidecars: { images: [image] } });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]?.path).toBe('spec.sidecars.images[0]');
    if (image !== '')
      expect(result.errors[0]?.message).toMatch(/repository path without registry host, tag or digest/);
  });

  test('at most 64 names', () => {
    const names = Array.from({ length: 65 }, (_, i) => `c${i}`);
    const result = parsePolicySpec({ sidecars: { names } });
    expect(result.ok || result.errors.map((e) => e.path)).toEqual(['spec.sidecars.names']);
  });
});

describe('readinessProbe.verification', () => {
  test('Trust is accepted, Verify is the default', () => {
    const trust = parsePolicySpec({ readinessProbe: { verification: 'Trust' } });
    expect(trust.ok && trust.value.readinessProbe.verification).toBe('Trust');
    const defaulted = parsePolicySpec({ readinessProbe: { path: '/ready' } });
    expect(defaulted.ok && defaulted.value.readinessProbe.verification).toBe('Verify');
  });
});
