import type { V1Deployment, V1Probe } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { GRACE_PERIOD_SECONDS_ANNOTATION, PRESTOP_SECONDS_ANNOTATION } from '../api/annotations.ts';
import type { GracefulShutdownPolicySpecInput } from '../api/policy.ts';
import { afterApply } from '../controllers/test-support.ts';
import { EstimateCache } from '../latency/estimates.ts';
import { type AppliedRecord, applyConfiguration, ownsNothing } from '../policy/ownership.ts';
import type { CachedService } from '../policy/protocols.ts';
import { container, deployment, observed, policy } from '../policy/test-fixtures.ts';
import type { ClusterFacts, ProbeVerdict } from '../policy/types.ts';
import { latencyFor, PlanCache, planWorkload, sameOwnership } from './plan.ts';

const record = (fields: Partial<AppliedRecord> = {}): AppliedRecord => ({
  policy: 'p',
  policyGeneration: 1,
  containers: {},
  reason: '',
  ...fields,
});

describe('ownsNothing', () => {
  test.each<[string, Partial<AppliedRecord>, boolean]>([
    ['empty', {}, true],
    ['a grace period', { terminationGracePeriodSeconds: 30 }, false],
    ['a grace period of 0', { terminationGracePeriodSeconds: 0 }, false],
    ['a container', { containers: { web: { preStop: true } } }, false],
    ['a pod-template annotation', { templateAnnotations: ['gracefulshutdown.dev/prestop-seconds'] }, false],
  ])('%s -> %s', (_title, fields, want) => {
    expect(ownsNothing(record(fields))).toBe(want);
  });
});

describe('sameOwnership', () => {
  const owning = record({
    terminationGracePeriodSeconds: 30,
    containers: { web: { readinessProbe: true, preStop: true }, worker: { preStop: true } },
  });
  test.each<[string, AppliedRecord | undefined, AppliedRecord, boolean]>([
    ['no record, owning nothing', undefined, record(), true],
    ['no record, owning something', undefined, owning, false],
    ['identical', owning, structuredClone(owning), true],
    [
      'containers in another order',
      owning,
      record({
        terminationGracePeriodSeconds: 30,
        containers: { worker: { preStop: true }, web: { preStop: true, readinessProbe: true } },
      }),
      true,
    ],
    [
      'generation and reason do not matter',
      owning,
      { ...owning, policyGeneration: 7, reason: 'other' },
      true,
    ],
    ['another policy', owning, { ...owning, policy: 'q' }, false],
    ['another grace period', owning, { ...owning, terminationGracePeriodSeconds: 31 }, false],
    ['grace no longer owned', owning, record({ containers: owning.containers }), false],
    [
      'a field fewer',
      owning,
      { ...owning, containers: { web: { readinessProbe: true }, worker: { preStop: true } } },
      false,
    ],
    [
      'a container fewer',
      owning,
      { ...owning, containers: { web: { readinessProbe: true, preStop: true } } },
      false,
    ],
    [
      'a false flag is the same as an absent one',
      record({ containers: { web: { preStop: true } } }),
      record({ containers: { web: { preStop: true, readinessProbe: false } } }),
      true,
    ],
    ['a record owning nothing vs owning something', record(), owning, false],
    [
      'an annotation more',
      owning,
      { ...owning, templateAnnotations: ['gracefulshutdown.dev/termination-grace-period-seconds'] },
      false,
    ],
    [
      'the same annotations in another order',
      { ...owning, templateAnnotations: ['gracefulshutdown.dev/b', 'gracefulshutdown.dev/a'] },
      { ...owning, templateAnnotations: ['gracefulshutdown.dev/a', 'gracefulshutdown.dev/b'] },
      true,
    ],
    ['no annotations is an empty list', owning, { ...owning, templateAnnotations: [] }, true],
  ])('%s -> %s', (_title, a, b, want) => {
    expect(sameOwnership(a, b)).toBe(want);
  });
});

const noEstimates = new EstimateCache();

const FACTS: ClusterFacts = { nativeSleep: true };

describe('planWorkload', () => {
  const enforce = policy('p', { mode: 'Enforce' });

  test('reads the published estimate of the workload; without one, says why', () => {
    const prometheus = policy('p', {
      mode: 'Enforce',
      observedLatency: { source: 'Prometheus', minSamples: 10 },
    });
    const cache = new EstimateCache();
    const d = deployment({ name: 'web', namespace: 'shop' });
    expect(latencyFor(d, prometheus, cache)).toEqual({
      observation: {
        known: false,
        source: 'Prometheus',
        reason: 'not observed yet: waiting for the first Prometheus refresh',
      },
      estimate: undefined,
    });
    cache.update('shop/web', observed(4, 50), { stabilizationMs: 60_000, minSamples: 10 });
    expect(latencyFor(d, prometheus, cache).observation).toEqual(observed(4, 50));
    const planned = planWorkload(d, prometheus, { estimates: cache, facts: FACTS });
    expect(planned.ok && planned.plan.drain.reason).toBe('ObservedLatency');
    // Source None: no estimate is looked at, whatever the cache holds.
    expect(latencyFor(d, enforce, cache)).toMatchObject({ observation: { known: false, source: 'None' } });
  });

  test('a fresh Deployment: not compliant, the record owns probe and preStop', async () => {
    const planned = planWorkload(deployment(), enforce, { estimates: noEstimates, facts: FACTS });
    if (!planned.ok) throw new Error('plan failed');
    expect(planned.diff.compliant).toBe(false);
    expect(planned.diff.fields.map((f) => f.field).sort()).toEqual(['preStop', 'readinessProbe']);
    expect(planned.record).toBeUndefined();
    expect(planned.nextRecord).toMatchObject({
      policy: 'p',
      policyGeneration: 1,
      containers: { web: { readinessProbe: true, preStop: true } },
    });
    expect(planned.nextRecord).not.toHaveProperty('terminationGracePeriodSeconds');
    expect(sameOwnership(planned.record, planned.nextRecord)).toBe(false);
    expect(planned.observation).toEqual({
      known: false,
      source: 'None',
      reason: 'observedLatency.source is None',
    });
    expect(planned.plan.containers[0]?.preStop).toEqual({ sleep: { seconds: 5 } });
  });

  test.each<[string, number | undefined]>([
    ['default grace', undefined],
    ['short grace raised and owned', 10],
  ])('after applying (%s): compliant, same ownership, nothing to write', async (_title, grace) => {
    const fresh = deployment({ ...(grace === undefined ? {} : { grace }) });
    const deps = { estimates: noEstimates, facts: FACTS };
    const first = planWorkload(fresh, enforce, deps);
    if (!first.ok) throw new Error('plan failed');
    expect(first.diff.compliant).toBe(false);
    if (grace !== undefined) expect(first.nextRecord.terminationGracePeriodSeconds).toBe(30);

    const applied = afterApply(fresh, applyConfiguration(fresh, first.nextRecord, first.plan));
    const second = planWorkload(applied, enforce, deps);
    if (!second.ok) throw new Error('plan failed');
    expect(second.record).toEqual(first.nextRecord);
    expect(second.diff).toEqual({ compliant: true, changes: [], fields: [] });
    expect(sameOwnership(second.record, second.nextRecord)).toBe(true);
    // The operator's own values are planned again (kept owned), not mistaken for the user's.
    expect(second.nextRecord.containers).toEqual(first.nextRecord.containers);
  });

  test("a user's probe is kept and not owned", async () => {
    const userProbe: V1Probe = { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 2 };
    const d = deployment({ containers: [container('web', [['http', 8080]], { readinessProbe: userProbe })] });
    const planned = planWorkload(d, enforce, { estimates: noEstimates, facts: FACTS });
    if (!planned.ok) throw new Error('plan failed');
    expect(planned.nextRecord.containers).toEqual({ web: { preStop: true } });
    expect(planned.plan.containers).toEqual([{ name: 'web', preStop: { sleep: { seconds: 5 } } }]);
    expect(planned.diff.fields.map((f) => f.field)).toEqual(['preStop']);
  });

  test('an owned probe the policy no longer matches follows the policy', async () => {
    // Applied under an earlier policy with another path: still the operator's, so it is replaced.
    const owned: V1Probe = { httpGet: { path: '/old', port: 8080 }, periodSeconds: 5 };
    const d = deployment({
      annotations: {
        'gracefulshutdown.dev/applied': JSON.stringify(
          record({ containers: { web: { readinessProbe: true } } }),
        ),
      },
      containers: [container('web', [['http', 8080]], { readinessProbe: owned })],
    });
    const planned = planWorkload(d, enforce, { estimates: noEstimates, facts: FACTS });
    if (!planned.ok) throw new Error('plan failed');
    expect(planned.plan.containers[0]?.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(planned.nextRecord.containers.web).toEqual({ readinessProbe: true, preStop: true });
    expect(planned.diff.compliant).toBe(false);
  });

  test('invalid annotations: not ok, with the errors and the observation', async () => {
    const d = deployment({ annotations: { 'gracefulshutdown.dev/readiness-port': 'not a port' } });
    const planned = planWorkload(d, enforce, { estimates: noEstimates, facts: FACTS });
    expect(planned.ok).toBe(false);
    if (planned.ok) return;
    expect(planned.errors.map((e) => e.annotation)).toEqual(['gracefulshutdown.dev/readiness-port']);
    expect(planned.observation.known).toBe(false);
  });
});

describe('planWorkload: the annotations mirroring grace and preStop for the app', () => {
  const GRACE = GRACE_PERIOD_SECONDS_ANNOTATION;
  const PRESTOP = PRESTOP_SECONDS_ANNOTATION;
  const enforce = (spec: GracefulShutdownPolicySpecInput = {}) => policy('p', { mode: 'Enforce', ...spec });
  const deps = { estimates: noEstimates, facts: FACTS };
  const plan = async (d: V1Deployment, spec: GracefulShutdownPolicySpecInput = {}) => {
    const planned = planWorkload(d, enforce(spec), deps);
    if (!planned.ok) throw new Error('plan failed');
    return planned;
  };
  /** The Deployment after the operator's write of its plan. */
  const written = async (d: V1Deployment, spec: GracefulShutdownPolicySpecInput = {}) => {
    const planned = await plan(d, spec);
    return afterApply(d, applyConfiguration(d, planned.nextRecord, planned.plan));
  };
  /** The same, as an operator from before the annotations left it: no annotations, none recorded. */
  const writtenBefore = async (d: V1Deployment) => {
    const planned = await plan(d);
    const { annotations: _a, ...oldPlan } = planned.plan;
    const { templateAnnotations: _t, ...oldRecord } = planned.nextRecord;
    return afterApply(d, applyConfiguration(d, oldRecord, oldPlan));
  };
  const template = (d: V1Deployment) => d.spec?.template?.metadata?.annotations;

  test('the write that sets grace and preStop sets their annotations, and the record owns them', async () => {
    const planned = await plan(deployment({ grace: 10 }));
    expect(planned.plan.terminationGracePeriodSeconds).toBe(30);
    expect(planned.plan.annotations).toEqual({ [GRACE]: '30', [PRESTOP]: '5' });
    expect(planned.nextRecord.templateAnnotations).toEqual([PRESTOP, GRACE].sort());
    expect(planned.diff.changes).toContain(
      `terminationGracePeriodSeconds: 10 -> 30 (annotation ${GRACE}: missing -> "30")`,
    );
    const applied = await written(deployment({ grace: 10 }));
    expect(template(applied)).toEqual({ [GRACE]: '30', [PRESTOP]: '5' });
    // Applied: compliant, same ownership, nothing more to write.
    const again = await plan(applied);
    expect(again.diff.compliant).toBe(true);
    expect(sameOwnership(again.record, again.nextRecord)).toBe(true);
  });

  test('the grace annotation follows the grace period the operator writes', async () => {
    const applied = await written(deployment({ grace: 10 }));
    const raised = await plan(applied, { terminationGracePeriod: { minSeconds: 45 } });
    expect(raised.plan.terminationGracePeriodSeconds).toBe(45);
    expect(raised.plan.annotations).toEqual({ [GRACE]: '45', [PRESTOP]: '5' });
    expect(raised.diff.fields).toEqual([
      expect.objectContaining({
        field: 'terminationGracePeriodSeconds',
        annotation: { key: GRACE, from: '30', to: '45' },
      }),
    ]);
    // And down again: the operator's own value follows the policy.
    const after = afterApply(applied, applyConfiguration(applied, raised.nextRecord, raised.plan));
    const lowered = await plan(after, { terminationGracePeriod: { minSeconds: 35 } });
    expect(lowered.plan.annotations?.[GRACE]).toBe('35');
  });

  test('managed from before the annotations, values right: no write just to add them', async () => {
    const before = await writtenBefore(deployment({ grace: 10 }));
    const planned = await plan(before);
    expect(planned.diff).toEqual({ compliant: true, changes: [], fields: [] });
    expect(planned.plan.annotations).toBeUndefined();
    expect(planned.nextRecord).not.toHaveProperty('templateAnnotations');
    // Same ownership: the controller writes nothing (a pod-template write would restart the pods).
    expect(sameOwnership(planned.record, planned.nextRecord)).toBe(true);
  });

  test('... they come with the next write that changes the pod template anyway', async () => {
    const before = await writtenBefore(deployment({ grace: 10 }));
    const planned = await plan(before, { readinessProbe: { path: '/ready' } });
    expect(planned.diff.compliant).toBe(false);
    // Not counted as changes of their own: the grace and the preStop are right.
    expect(planned.diff.fields.map((f) => f.field)).toEqual(['readinessProbe']);
    expect(planned.plan.annotations).toEqual({ [GRACE]: '30', [PRESTOP]: '5' });
    expect(planned.nextRecord.templateAnnotations).toEqual([PRESTOP, GRACE].sort());
  });

  test("a user's grace period gets no annotation; the operator's preStop does", async () => {
    const planned = await plan(deployment({ grace: 120 }));
    expect(planned.plan).not.toHaveProperty('terminationGracePeriodSeconds');
    expect(planned.plan.annotations).toEqual({ [PRESTOP]: '5' });
    expect(planned.nextRecord.templateAnnotations).toEqual([PRESTOP]);
  });

  test("a user's preStop on the serving container gets no annotation", async () => {
    const d = deployment({
      grace: 10,
      containers: [container('web', [8080], { lifecycle: { preStop: { sleep: { seconds: 9 } } } })],
    });
    const planned = await plan(d);
    expect(planned.plan.annotations).toEqual({ [GRACE]: '30' });
  });
});

describe('PlanCache: one planning per change', () => {
  const enforce = policy('p', { mode: 'Enforce' });
  const deps = { estimates: noEstimates, facts: FACTS };

  test('the same Deployment, policy generation and sources: the same plan, not planned again', () => {
    const memo = new PlanCache();
    const d = deployment();
    const first = memo.plan(d, enforce, deps);
    // Another controller's deps object with the same sources (the status pass's) shares it.
    expect(memo.plan(d, enforce, { ...deps })).toBe(first);
    expect(first).toEqual(planWorkload(d, enforce, deps));
  });

  test('a status update sharing the spec and metadata objects (the cache shares them): not planned again', () => {
    const memo = new PlanCache();
    const d = deployment();
    const first = memo.plan(d, enforce, deps);
    const statusUpdate: V1Deployment = {
      ...d,
      status: { observedGeneration: 2, replicas: 2, updatedReplicas: 1 },
    };
    expect(memo.plan(statusUpdate, enforce, deps)).toBe(first);
  });

  const withMetadata = (d: V1Deployment, metadata: Partial<NonNullable<V1Deployment['metadata']>>) => ({
    ...d,
    metadata: { ...d.metadata, ...metadata },
  });
  test.each<[string, (d: V1Deployment) => Parameters<PlanCache['plan']>]>([
    [
      'an updated spec (a new object, even if equal)',
      (d) => [{ ...d, spec: structuredClone(d.spec) }, enforce, deps],
    ],
    ['new annotations', (d) => [withMetadata(d, { annotations: { a: 'b' } }), enforce, deps]],
    ['new labels', (d) => [withMetadata(d, { labels: { a: 'b' } }), enforce, deps]],
    ['new managedFields', (d) => [withMetadata(d, { managedFields: [] }), enforce, deps]],
    [
      'another object under the name (another uid)',
      (d) => [withMetadata(d, { uid: 'other' }), enforce, deps],
    ],
    ['a new generation of the policy', (d) => [d, policy('p', { mode: 'Enforce' }, 2), deps]],
    [
      'other sources (another estimate cache)',
      (d) => [d, enforce, { ...deps, estimates: new EstimateCache() }],
    ],
  ])('planned again after %s', (_title, next) => {
    const memo = new PlanCache();
    const d = deployment();
    const first = memo.plan(d, enforce, deps);
    expect(memo.plan(...next(d))).not.toBe(first);
  });

  test('planned again when its latency estimate or a kill observed changes', () => {
    const prometheus = policy('p', {
      mode: 'Enforce',
      observedLatency: { source: 'Prometheus', minSamples: 10 },
    });
    const cache = new EstimateCache();
    const killed = new Map<string, number>();
    const sources = {
      estimates: cache,
      facts: FACTS,
      shutdowns: { killedAt: (key: string) => killed.get(key) },
    };
    const memo = new PlanCache();
    const d = deployment({ name: 'web', namespace: 'shop' });
    const before = memo.plan(d, prometheus, sources);
    cache.update('shop/web', observed(4, 50), { stabilizationMs: 60_000, minSamples: 10 });
    const observedPlan = memo.plan(d, prometheus, sources);
    expect(observedPlan).not.toBe(before);
    expect(observedPlan.ok && observedPlan.plan.drain.reason).toBe('ObservedLatency');
    expect(memo.plan(d, prometheus, sources)).toBe(observedPlan);
    killed.set('shop/web', 45);
    expect(memo.plan(d, prometheus, sources)).not.toBe(observedPlan);
  });

  test('planned again when a probe verdict it read arrives or expires', () => {
    const verify = policy('p', { mode: 'Enforce', readinessProbe: { verification: 'Verify' } });
    const verdicts = new Map<string, ProbeVerdict>();
    const probes = { lookup: () => (container: string) => verdicts.get(container) };
    const sources = { ...deps, probes };
    const memo = new PlanCache();
    const d = deployment();
    const unknown = memo.plan(d, verify, sources);
    expect(memo.plan(d, verify, sources)).toBe(unknown);
    verdicts.set('web', { state: 'Unverified', tried: '10.0.0.1:8080/readyz', message: 'HTTP 404' });
    const unverified = memo.plan(d, verify, sources);
    expect(unverified).not.toBe(unknown);
    expect(unverified.ok && unverified.plan.notes.map((n) => n.reason)).toContain('ProbeUnverified');
    verdicts.clear();
    expect(memo.plan(d, verify, sources)).not.toBe(unverified);
  });
});

describe('planWorkload: the protocol of the port and the fallback probe', () => {
  const enforce = policy('p', { mode: 'Enforce' });
  const noPods: ProbeVerdict = { state: 'NoPods', message: 'no pod of shop/web runs' };
  const verified: ProbeVerdict = {
    state: 'Verified',
    tried: 'GET http://10.88.0.5:8080/readyz on pod web-abc answered 200',
  };
  const verdictSource = (verdict: { current: ProbeVerdict | undefined }) => ({
    lookup: () => () => verdict.current,
  });
  const api = () => deployment({ containers: [container('web', [['api', 8080]])] });

  test('no pod: the tcpSocket fallback is written; pods verified later: kept until the template changes, then httpGet', () => {
    const verdict: { current: ProbeVerdict | undefined } = { current: noPods };
    const deps = { estimates: noEstimates, facts: FACTS, probes: verdictSource(verdict) };
    const first = planWorkload(api(), enforce, deps);
    if (!first.ok) throw new Error('plan failed');
    expect(first.plan.containers[0]?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
    const applied = afterApply(api(), applyConfiguration(api(), first.nextRecord, first.plan));

    // Pods run and answer GET /readyz; no template rollout: the owned tcpSocket probe is kept.
    verdict.current = verified;
    const settled = planWorkload(
      { ...applied, status: { observedGeneration: 2, replicas: 2, updatedReplicas: 2 } },
      enforce,
      deps,
    );
    if (!settled.ok) throw new Error('plan failed');
    expect(settled.diff.compliant).toBe(true);
    expect(settled.plan.containers[0]?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
    expect(settled.nextRecord.containers.web).toEqual({ readinessProbe: true, preStop: true });
    expect(settled.plan.notes.map((n) => n.reason)).toEqual(['ProbeUpgradeDeferred']);

    // A template rollout of the user's is in progress: the verified httpGet joins it.
    const rolling = planWorkload(
      { ...applied, status: { observedGeneration: 2, replicas: 3, updatedReplicas: 1 } },
      enforce,
      deps,
    );
    if (!rolling.ok) throw new Error('plan failed');
    expect(rolling.diff.compliant).toBe(false);
    expect(rolling.plan.containers[0]?.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 8080 });
    // The same at admission of an UPDATE changing the template.
    const admitted = planWorkload(applied, enforce, deps, { templateChanging: true });
    expect(admitted.ok && admitted.plan.containers[0]?.readinessProbe?.httpGet?.path).toBe('/readyz');
  });

  test("a Service's appProtocol is read through deps.services or the cache's own reader", () => {
    const services = {
      inNamespace: (namespace: string) => [
        {
          namespace,
          name: 'cache',
          selector: { app: 'web' },
          ports: [{ port: 80, targetPort: 8080, appProtocol: 'redis' }],
        },
      ],
    };
    const d = api();
    const direct = planWorkload(d, enforce, { estimates: noEstimates, facts: FACTS, services });
    expect(direct.ok && direct.plan.containers[0]?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
    const memo = new PlanCache({ services });
    const memoized = memo.plan(d, enforce, { estimates: noEstimates, facts: FACTS });
    expect(memoized.ok && memoized.plan.notes[0]?.message).toContain(
      'Service shop/cache port 80 has appProtocol redis',
    );
  });
});

describe('PlanCache: Services and template rollouts', () => {
  const enforce = policy('p', { mode: 'Enforce' });
  const deps = { estimates: noEstimates, facts: FACTS };

  test('planned again when a Service port it read changes, not when an unrelated Service does', () => {
    const byNamespace = new Map<string, CachedService[]>([
      [
        'shop',
        [
          {
            namespace: 'shop',
            name: 'web',
            selector: { app: 'web' },
            ports: [{ port: 80, targetPort: 8080 }],
          },
        ],
      ],
    ]);
    const memo = new PlanCache({ services: { inNamespace: (ns) => byNamespace.get(ns) ?? [] } });
    const d = deployment({ containers: [container('web', [['api', 8080]])] });
    const first = memo.plan(d, enforce, deps);
    byNamespace.set('shop', [
      ...(byNamespace.get('shop') ?? []),
      {
        namespace: 'shop',
        name: 'db',
        selector: { app: 'db' },
        ports: [{ port: 5432, appProtocol: 'postgres' }],
      },
    ]);
    expect(memo.plan(d, enforce, deps)).toBe(first);
    byNamespace.set('shop', [
      {
        namespace: 'shop',
        name: 'web',
        selector: { app: 'web' },
        ports: [{ port: 80, targetPort: 8080, appProtocol: 'grpc' }],
      },
    ]);
    const second = memo.plan(d, enforce, deps);
    expect(second).not.toBe(first);
    expect(second.ok && second.plan.containers[0]?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
  });

  test('with a tcpSocket probe, a template rollout starting is a change (the fallback may be replaced)', () => {
    const memo = new PlanCache();
    const tcp: V1Probe = { tcpSocket: { port: 8080 } };
    const d = deployment({ containers: [container('web', [['api', 8080]], { readinessProbe: tcp })] });
    const first = memo.plan(d, enforce, deps);
    const rolling: V1Deployment = {
      ...d,
      status: { observedGeneration: 1, replicas: 3, updatedReplicas: 1 },
    };
    expect(memo.plan(rolling, enforce, deps)).not.toBe(first);
  });
});
