import type { V1Probe } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import type { ObservedLatencyPolicy } from '../api/policy.ts';
import type { LatencySource, Workload } from '../latency/source.ts';
import { type AppliedRecord, applyConfiguration } from '../policy/ownership.ts';
import { container, deployment, policy } from '../policy/test-fixtures.ts';
import type { ClusterFacts } from '../policy/types.ts';
import { ownsNothing, planWorkload, sameOwnership } from './plan.ts';
import { afterApply } from './test-support.ts';

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
  ])('%s -> %s', (_title, a, b, want) => {
    expect(sameOwnership(a, b)).toBe(want);
  });
});

/** A latency source that knows nothing, remembering what it was asked. */
function unknownLatency(): LatencySource & { calls: [Workload, ObservedLatencyPolicy][] } {
  const calls: [Workload, ObservedLatencyPolicy][] = [];
  return {
    calls,
    observe: async (workload, observed) => {
      calls.push([workload, observed]);
      return { known: false, source: 'None', reason: 'x' };
    },
  };
}

const FACTS: ClusterFacts = { nativeSleep: true };

describe('planWorkload', () => {
  const enforce = policy('p', { mode: 'Enforce' });

  test('asks the latency source about the workload with the policy settings', async () => {
    const latency = unknownLatency();
    await planWorkload(deployment({ name: 'web', namespace: 'shop' }), enforce, { latency, facts: FACTS });
    expect(latency.calls).toEqual([
      [{ namespace: 'shop', name: 'web', podLabels: { app: 'web' } }, enforce.spec.observedLatency],
    ]);
  });

  test('a fresh Deployment: not compliant, the record owns probe and preStop', async () => {
    const planned = await planWorkload(deployment(), enforce, { latency: unknownLatency(), facts: FACTS });
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
    expect(planned.observation).toEqual({ known: false, source: 'None', reason: 'x' });
    expect(planned.plan.containers[0]?.preStop).toEqual({ sleep: { seconds: 5 } });
  });

  test.each<[string, number | undefined]>([
    ['default grace', undefined],
    ['short grace raised and owned', 10],
  ])('after applying (%s): compliant, same ownership, nothing to write', async (_title, grace) => {
    const fresh = deployment({ ...(grace === undefined ? {} : { grace }) });
    const deps = { latency: unknownLatency(), facts: FACTS };
    const first = await planWorkload(fresh, enforce, deps);
    if (!first.ok) throw new Error('plan failed');
    expect(first.diff.compliant).toBe(false);
    if (grace !== undefined) expect(first.nextRecord.terminationGracePeriodSeconds).toBe(30);

    const applied = afterApply(fresh, applyConfiguration(fresh, first.nextRecord, first.plan));
    const second = await planWorkload(applied, enforce, deps);
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
    const planned = await planWorkload(d, enforce, { latency: unknownLatency(), facts: FACTS });
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
    const planned = await planWorkload(d, enforce, { latency: unknownLatency(), facts: FACTS });
    if (!planned.ok) throw new Error('plan failed');
    expect(planned.plan.containers[0]?.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(planned.nextRecord.containers.web).toEqual({ readinessProbe: true, preStop: true });
    expect(planned.diff.compliant).toBe(false);
  });

  test('invalid annotations: not ok, with the errors and the observation', async () => {
    const d = deployment({ annotations: { 'gracefulshutdown.dev/readiness-port': 'not a port' } });
    const planned = await planWorkload(d, enforce, { latency: unknownLatency(), facts: FACTS });
    expect(planned.ok).toBe(false);
    if (planned.ok) return;
    expect(planned.errors.map((e) => e.annotation)).toEqual(['gracefulshutdown.dev/readiness-port']);
    expect(planned.observation.known).toBe(false);
  });
});
