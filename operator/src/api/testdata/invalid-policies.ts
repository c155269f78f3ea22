// Policies that must be refused, each with the field the refusal must name. The unit test runs
// them through zod, the e2e test through the real apiserver: the verdicts must agree.
import { API_VERSION, KIND } from '../policy.ts';

export interface InvalidPolicyCase {
  /** What is wrong, as the test's title. */
  title: string;
  kind: 'wrong type' | 'out of range' | 'contradiction' | 'unknown field' | 'missing required field';
  /** The spec as written (undefined: the object has no spec at all). */
  spec: Record<string, unknown> | undefined;
  /**
   * The field the error must name, written as the apiserver writes it. An error at an index of
   * this field (spec.excludedNamespaces[1]) names it too: server-side apply reports duplicates in
   * a set without the index.
   */
  field: string;
}

export const INVALID_POLICIES: InvalidPolicyCase[] = [
  // wrong types
  { title: 'priority is a word', kind: 'wrong type', spec: { priority: 'high' }, field: 'spec.priority' },
  {
    title: 'preStop seconds as a string',
    kind: 'wrong type',
    spec: { preStop: { seconds: '5' } },
    field: 'spec.preStop.seconds',
  },
  {
    title: 'excludedNamespaces is a string, not a list',
    kind: 'wrong type',
    spec: { excludedNamespaces: 'kube-system' },
    field: 'spec.excludedNamespaces',
  },
  {
    title: 'readiness port is an object',
    kind: 'wrong type',
    spec: { readinessProbe: { port: { number: 8080 } } },
    field: 'spec.readinessProbe.port',
  },
  {
    title: 'percentile as a string',
    kind: 'wrong type',
    spec: { observedLatency: { percentile: '0.99' } },
    field: 'spec.observedLatency.percentile',
  },
  {
    title: 'maxConcurrent is fractional',
    kind: 'wrong type',
    spec: { rollout: { maxConcurrent: 1.5 } },
    field: 'spec.rollout.maxConcurrent',
  },
  {
    title: 'sidecars as a list of names instead of an object',
    kind: 'wrong type',
    spec: { sidecars: ['envoy'] },
    field: 'spec.sidecars',
  },
  // out of range
  {
    title: 'mode is not Audit or Enforce',
    kind: 'out of range',
    spec: { mode: 'enforce' },
    field: 'spec.mode',
  },
  { title: 'priority above 1000', kind: 'out of range', spec: { priority: 5000 }, field: 'spec.priority' },
  {
    title: 'readiness port above 65535',
    kind: 'out of range',
    spec: { readinessProbe: { port: 70000 } },
    field: 'spec.readinessProbe.port',
  },
  {
    title: 'readiness port name in upper case',
    kind: 'out of range',
    spec: { readinessProbe: { port: 'HTTP' } },
    field: 'spec.readinessProbe.port',
  },
  {
    title: 'readiness path without leading slash',
    kind: 'out of range',
    spec: { readinessProbe: { path: 'healthz' } },
    field: 'spec.readinessProbe.path',
  },
  {
    title: 'percentile of 1',
    kind: 'out of range',
    spec: { observedLatency: { percentile: 1 } },
    field: 'spec.observedLatency.percentile',
  },
  {
    title: 'percentile of 0',
    kind: 'out of range',
    spec: { observedLatency: { percentile: 0 } },
    field: 'spec.observedLatency.percentile',
  },
  {
    title: 'safety factor below 1',
    kind: 'out of range',
    spec: { observedLatency: { safetyFactor: 0.5 } },
    field: 'spec.observedLatency.safetyFactor',
  },
  {
    title: 'a latency unit that is not Seconds or Milliseconds',
    kind: 'wrong type',
    spec: { observedLatency: { unit: 'Minutes' } },
    field: 'spec.observedLatency.unit',
  },
  {
    title: 'window is not a Prometheus duration',
    kind: 'out of range',
    spec: { observedLatency: { window: '1 hour' } },
    field: 'spec.observedLatency.window',
  },
  {
    title: 'maxConcurrent of 0',
    kind: 'out of range',
    spec: { rollout: { maxConcurrent: 0 } },
    field: 'spec.rollout.maxConcurrent',
  },
  {
    title: 'negative minimum grace',
    kind: 'out of range',
    spec: { terminationGracePeriod: { minSeconds: -1 } },
    field: 'spec.terminationGracePeriod.minSeconds',
  },
  {
    title: 'excluded namespace listed twice',
    kind: 'out of range',
    spec: { excludedNamespaces: ['kube-system', 'kube-system'] },
    field: 'spec.excludedNamespaces',
  },
  {
    title: 'excluded namespace is not a DNS label',
    kind: 'out of range',
    spec: { excludedNamespaces: ['Kube_System'] },
    field: 'spec.excludedNamespaces[0]',
  },
  {
    title: 'probe verification not Verify or Trust',
    kind: 'out of range',
    spec: { readinessProbe: { verification: 'Skip' } },
    field: 'spec.readinessProbe.verification',
  },
  {
    title: 'sidecar name in upper case',
    kind: 'out of range',
    spec: { sidecars: { names: ['Envoy'] } },
    field: 'spec.sidecars.names[0]',
  },
  {
    title: 'sidecar image with its registry host',
    kind: 'out of range',
    spec: { sidecars: { images: ['gcr.io/cloud-sql-connectors/cloud-sql-proxy'] } },
    field: 'spec.sidecars.images[0]',
  },
  {
    title: 'sidecar image with a tag',
    kind: 'out of range',
    spec: { sidecars: { images: ['istio/proxyv2:1.24.0'] } },
    field: 'spec.sidecars.images[0]',
  },
  {
    title: 'sidecar image listed twice',
    kind: 'out of range',
    spec: { sidecars: { images: ['acme/agent', 'acme/agent'] } },
    field: 'spec.sidecars.images',
  },
  {
    title: 'label value with a space',
    kind: 'out of range',
    spec: { deploymentSelector: { matchLabels: { tier: 'web app' } } },
    field: 'spec.deploymentSelector.matchLabels.tier',
  },
  // contradictions (CEL)
  {
    title: 'minSeconds above maxSeconds',
    kind: 'contradiction',
    spec: { terminationGracePeriod: { minSeconds: 120, maxSeconds: 60 } },
    field: 'spec.terminationGracePeriod.minSeconds',
  },
  {
    title: 'preStop as long as the maximum grace',
    kind: 'contradiction',
    spec: { preStop: { seconds: 60 }, terminationGracePeriod: { maxSeconds: 60 } },
    field: 'spec.preStop.seconds',
  },
  {
    title: 'preStop longer than the fixed grace',
    kind: 'contradiction',
    spec: { preStop: { seconds: 40 }, terminationGracePeriod: { strategy: 'Fixed', fixedSeconds: 35 } },
    field: 'spec.preStop.seconds',
  },
  {
    title: 'Fixed strategy without fixedSeconds',
    kind: 'contradiction',
    spec: { terminationGracePeriod: { strategy: 'Fixed' } },
    field: 'spec.terminationGracePeriod.fixedSeconds',
  },
  {
    title: 'fixedSeconds with the Computed strategy',
    kind: 'contradiction',
    spec: { terminationGracePeriod: { fixedSeconds: 60 } },
    field: 'spec.terminationGracePeriod.fixedSeconds',
  },
  {
    title: 'fixedSeconds above maxSeconds',
    kind: 'contradiction',
    spec: { terminationGracePeriod: { strategy: 'Fixed', fixedSeconds: 600, maxSeconds: 300 } },
    field: 'spec.terminationGracePeriod.fixedSeconds',
  },
  {
    title: 'fixedSeconds below minSeconds',
    kind: 'contradiction',
    spec: { terminationGracePeriod: { strategy: 'Fixed', fixedSeconds: 20, minSeconds: 30 } },
    field: 'spec.terminationGracePeriod.fixedSeconds',
  },
  {
    title: 'probe timeout longer than its period',
    kind: 'contradiction',
    spec: { readinessProbe: { periodSeconds: 2, timeoutSeconds: 5 } },
    field: 'spec.readinessProbe.timeoutSeconds',
  },
  {
    title: 'a preset the operator does not know',
    kind: 'out of range',
    spec: { observedLatency: { source: 'Prometheus', preset: 'Nginx' } },
    field: 'spec.observedLatency.preset',
  },
  {
    title: 'a preset with a metric of its own',
    kind: 'contradiction',
    spec: { observedLatency: { source: 'Scrape', preset: 'Istio', metric: 'rpc_duration_seconds' } },
    field: 'spec.observedLatency.preset',
  },
  {
    title: "a proxy's preset without the namespaces its proxies run in",
    kind: 'missing required field',
    spec: { observedLatency: { source: 'Prometheus', preset: 'Envoy' } },
    field: 'spec.observedLatency.proxyNamespaces',
  },
  {
    title: "a proxy's preset read by scraping the pods",
    kind: 'contradiction',
    spec: { observedLatency: { source: 'Scrape', preset: 'IngressNginx' } },
    field: 'spec.observedLatency.preset',
  },
  {
    title: 'a preset with a unit',
    kind: 'contradiction',
    spec: { observedLatency: { source: 'Prometheus', preset: 'Auto', unit: 'Seconds' } },
    field: 'spec.observedLatency.preset',
  },
  {
    title: 'a preset with a query template',
    kind: 'contradiction',
    spec: { observedLatency: { source: 'Prometheus', preset: 'Linkerd', query: 'sum by (le) (x)' } },
    field: 'spec.observedLatency.preset',
  },
  {
    title: 'query without the Prometheus source',
    kind: 'contradiction',
    spec: { observedLatency: { query: 'histogram_quantile(0.99, rate(x[5m]))' } },
    field: 'spec.observedLatency.query',
  },
  {
    title: 'prometheus settings with the Scrape source',
    kind: 'contradiction',
    spec: { observedLatency: { source: 'Scrape', prometheus: { url: 'http://prometheus:9090' } } },
    field: 'spec.observedLatency.prometheus',
  },
  {
    title: 'scrape settings with the Prometheus source',
    kind: 'contradiction',
    spec: { observedLatency: { source: 'Prometheus', scrape: { port: 9090 } } },
    field: 'spec.observedLatency.scrape',
  },
  {
    title: 'In selector without values',
    kind: 'contradiction',
    spec: { deploymentSelector: { matchExpressions: [{ key: 'tier', operator: 'In' }] } },
    field: 'spec.deploymentSelector.matchExpressions[0].values',
  },
  {
    title: 'Exists selector with values',
    kind: 'contradiction',
    spec: { namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'Exists', values: ['a'] }] } },
    field: 'spec.namespaceSelector.matchExpressions[0].values',
  },
  // unknown fields (strict field validation)
  {
    title: 'unknown top-level spec field',
    kind: 'unknown field',
    spec: { dryRun: true },
    field: 'spec.dryRun',
  },
  {
    title: 'terminationGracePeriodSeconds misplaced under preStop',
    kind: 'unknown field',
    spec: { preStop: { seconds: 5, terminationGracePeriodSeconds: 30 } },
    field: 'spec.preStop.terminationGracePeriodSeconds',
  },
  {
    title: 'misspelt periodSeconds',
    kind: 'unknown field',
    spec: { readinessProbe: { periodSecond: 5 } },
    field: 'spec.readinessProbe.periodSecond',
  },
  // missing required fields
  { title: 'no spec at all', kind: 'missing required field', spec: undefined, field: 'spec' },
  {
    title: 'selector requirement without operator',
    kind: 'missing required field',
    spec: { deploymentSelector: { matchExpressions: [{ key: 'tier', values: ['web'] }] } },
    field: 'spec.deploymentSelector.matchExpressions[0].operator',
  },
  {
    title: 'selector requirement without key',
    kind: 'missing required field',
    spec: { namespaceSelector: { matchExpressions: [{ operator: 'Exists' }] } },
    field: 'spec.namespaceSelector.matchExpressions[0].key',
  },
];

/** True when an error at `path` names `field`. */
export function namesField(path: string, field: string): boolean {
  return path === field || path.startsWith(`${field}[`);
}

/** The case as a whole object, named so that cases never collide on the apiserver. */
export function invalidPolicyManifest(index: number): Record<string, unknown> {
  const testCase = INVALID_POLICIES[index];
  if (!testCase) throw new Error(`no invalid policy case ${index}`);
  const manifest: Record<string, unknown> = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: `invalid-${index}` },
  };
  if (testCase.spec !== undefined) manifest.spec = testCase.spec;
  return manifest;
}
