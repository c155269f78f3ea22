import { describe, expect, test } from 'vitest';
import {
  type GracefulShutdownPolicyStatus,
  MAX_WORKLOADS_IN_STATUS,
  PolicyStatusSchema,
  type Verdict,
  type WorkloadStatus,
} from '../api/policy.ts';
import type { RolloutDecision } from './budget.ts';
import {
  compareWorkloads,
  formatTime,
  invalidPolicyStatus,
  type LatencyFreshness,
  latencyObservedCondition,
  latencyProblem,
  statusEquals,
  summarizePolicyStatus,
  workloadVerdict,
} from './compliance.ts';
import { desiredSettings } from './desired.ts';
import { diffDeployment } from './diff.ts';
import {
  container,
  type DeploymentOptions,
  deployment,
  NEW_CLUSTER,
  NO_SOURCE,
  observed,
  policy,
} from './test-fixtures.ts';
import type { LatencyObservation } from './types.ts';

const T0 = new Date('2025-01-01T00:00:00.123Z');
const T1 = new Date('2025-01-01T01:00:00Z');

function planned(
  options: DeploymentOptions,
  extra: {
    spec?: Parameters<typeof policy>[1];
    observation?: LatencyObservation;
    mode?: 'Audit' | 'Enforce';
    decision?: RolloutDecision;
    freshness?: LatencyFreshness;
  } = {},
): WorkloadStatus {
  const p = policy('p', extra.spec ?? {});
  const d = deployment(options);
  const observation = extra.observation ?? NO_SOURCE;
  const result = desiredSettings({ policy: p, deployment: d, observation, facts: NEW_CLUSTER });
  if (!result.ok) throw new Error('annotation errors');
  return workloadVerdict({
    kind: 'Planned',
    deployment: d,
    policy: p,
    plan: result.plan,
    diff: diffDeployment(d, result.plan),
    observation,
    mode: extra.mode ?? 'Audit',
    ...(extra.decision ? { decision: extra.decision } : {}),
    freshness: extra.freshness ?? { latest: observation, stale: false, observedTime: T1 },
  });
}

const compliantContainer = container('web', [8080], {
  readinessProbe: {
    httpGet: { path: '/readyz', port: 8080 },
    periodSeconds: 5,
    timeoutSeconds: 1,
    failureThreshold: 3,
  },
  lifecycle: { preStop: { sleep: { seconds: 5 } } },
});

describe('workloadVerdict', () => {
  test('settings written but the rollout that carried them failed (onFailure Pause): NonCompliant RolloutFailed', () => {
    const verdict = planned(
      { grace: 30, containers: [compliantContainer] },
      {
        mode: 'Enforce',
        decision: {
          kind: 'Wait',
          reason: 'RolloutFailed',
          message: 'the rollout the operator started did not progress',
        },
      },
    );
    expect(verdict).toMatchObject({
      verdict: 'NonCompliant',
      reason: 'RolloutFailed',
      message: expect.stringContaining('did not progress'),
    });
  });

  test('a probe kept out because the app does not answer it: NonCompliant ProbeUnverified, even with every written field right', () => {
    const p = policy('p', { mode: 'Enforce' });
    const d = deployment({
      grace: 30,
      containers: [container('web', [8080], { lifecycle: { preStop: { sleep: { seconds: 5 } } } })],
    });
    const result = desiredSettings({
      policy: p,
      deployment: d,
      observation: NO_SOURCE,
      facts: NEW_CLUSTER,
      probeVerdict: () => ({
        state: 'Unverified',
        tried: 'x',
        message: 'GET http://10.88.0.5:8080/readyz on pod web-1 answered 404',
      }),
    });
    if (!result.ok) throw new Error('annotation errors');
    const diff = diffDeployment(d, result.plan);
    expect(diff.compliant).toBe(true);
    const verdict = workloadVerdict({
      kind: 'Planned',
      deployment: d,
      policy: p,
      plan: result.plan,
      diff,
      observation: NO_SOURCE,
      mode: 'Enforce',
    });
    expect(verdict).toMatchObject({
      verdict: 'NonCompliant',
      reason: 'ProbeUnverified',
      message: expect.stringContaining('answered 404'),
    });
  });

  test('opted out: Exempt', () => {
    expect(workloadVerdict({ kind: 'OptedOut', deployment: deployment() })).toMatchObject({
      namespace: 'shop',
      name: 'web',
      verdict: 'Exempt',
      reason: 'OptedOut',
    });
  });

  test('another policy wins: Exempt, naming the winner', () => {
    const status = workloadVerdict({
      kind: 'OtherPolicyWins',
      deployment: deployment(),
      winner: policy('web-tier', { priority: 10 }),
    });
    expect(status).toMatchObject({ verdict: 'Exempt', reason: 'OtherPolicyWins' });
    expect(status.message).toContain('web-tier');
  });

  test('invalid annotations: Unknown, naming them', () => {
    const status = workloadVerdict({
      kind: 'InvalidAnnotations',
      deployment: deployment(),
      errors: [{ annotation: 'gracefulshutdown.dev/readiness-port', message: 'bad' }],
    });
    expect(status).toMatchObject({ verdict: 'Unknown', reason: 'InvalidAnnotation' });
    expect(status.message).toContain('gracefulshutdown.dev/readiness-port: bad');
  });

  test('compliant: recommended and applied reported', () => {
    const status = planned({ containers: [compliantContainer] });
    expect(status).toMatchObject({
      verdict: 'Compliant',
      reason: 'SettingsMatch',
      recommended: {
        terminationGracePeriodSeconds: 30,
        preStop: { action: 'Sleep', seconds: 5 },
        readinessProbe: { path: '/readyz', port: 8080 },
      },
      applied: {
        terminationGracePeriodSeconds: 30,
        preStop: { action: 'Sleep', seconds: 5 },
        readinessProbe: { path: '/readyz', port: 8080 },
      },
    });
    expect(status.observedLatency).toBeUndefined();
    expect(status.message).toContain('source is None');
  });

  test.each<[string, DeploymentOptions, Parameters<typeof policy>[1], string]>([
    [
      'grace too short comes first',
      { containers: [container('web', [8080])] },
      { observedLatency: { source: 'Prometheus' } },
      'GracePeriodTooShort',
    ],
    [
      'grace longer than wanted under Override',
      { containers: [compliantContainer], grace: 500 },
      { terminationGracePeriod: { inject: 'Override' } },
      'GracePeriodMismatch',
    ],
    [
      'preStop missing before probe missing',
      { containers: [container('web', [8080])] },
      {},
      'PreStopMissing',
    ],
    [
      'preStop differs',
      { containers: [container('web', [8080], { lifecycle: { preStop: { sleep: { seconds: 3 } } } })] },
      { preStop: { inject: 'Override' } },
      'PreStopMismatch',
    ],
    [
      'probe missing only',
      { containers: [container('web', [8080], { lifecycle: { preStop: { sleep: { seconds: 5 } } } })] },
      {},
      'ReadinessProbeMissing',
    ],
    [
      'probe differs',
      {
        containers: [
          container('web', [8080], { ...compliantContainer, readinessProbe: { tcpSocket: { port: 8080 } } }),
        ],
      },
      { readinessProbe: { inject: 'Override' } },
      'ReadinessProbeMismatch',
    ],
  ])('non-compliant: %s', (_title, options, spec, reason) => {
    const status = planned(options, { spec, observation: observed(20) });
    expect(status).toMatchObject({ verdict: 'NonCompliant', reason });
  });

  test('Enforce mode held back by the budget: the wait reason, and the changes', () => {
    const decision: RolloutDecision = {
      kind: 'Wait',
      reason: 'RolloutBudgetExhausted',
      message: '1 Deployments rolling',
    };
    const enforce = planned({ containers: [container('web', [8080])] }, { mode: 'Enforce', decision });
    expect(enforce).toMatchObject({ verdict: 'NonCompliant', reason: 'RolloutBudgetExhausted' });
    expect(enforce.message).toMatch(/^1 Deployments rolling; containers\[web\]/);
    // In Audit mode nothing waits: the reason is the change.
    expect(planned({ containers: [container('web', [8080])] }, { mode: 'Audit', decision }).reason).toBe(
      'PreStopMissing',
    );
  });

  test('observed latency: known, unknown (with the policy percentile and window), none', () => {
    const spec = { observedLatency: { source: 'Prometheus' as const, percentile: 0.95, window: '6h' } };
    expect(planned({}, { spec, observation: observed(1.5, 500) }).observedLatency).toEqual({
      source: 'Prometheus',
      percentile: 0.99,
      seconds: 1.5,
      samples: 500,
      window: '1h',
      observedTime: '2025-01-01T01:00:00Z',
    });
    expect(
      planned({}, { spec, observation: { known: false, source: 'Prometheus', reason: 'down' } })
        .observedLatency,
    ).toEqual({
      source: 'Prometheus',
      percentile: 0.95,
      samples: 0,
      window: '6h',
      observedTime: '2025-01-01T01:00:00Z',
      message: 'down',
    });
    expect(planned({}).observedLatency).toBeUndefined();
  });

  test('observed latency: kept while the source fails, and a percentile above the largest bucket', () => {
    const spec = { observedLatency: { source: 'Prometheus' as const } };
    const down: LatencyObservation = {
      known: false,
      source: 'Prometheus',
      reason: 'ECONNREFUSED',
      unavailable: true,
    };
    expect(
      planned(
        {},
        { spec, observation: observed(2, 500), freshness: { latest: down, stale: true, observedTime: T1 } },
      ).observedLatency?.message,
    ).toBe('kept while Prometheus fails: ECONNREFUSED');
    const atLeast = { ...observed(10, 500), atLeast: true } as LatencyObservation;
    expect(planned({}, { spec, observation: atLeast }).observedLatency?.message).toBe(
      "the p99 lies above the largest finite bucket: at least 10 s; the histogram's buckets are too small",
    );
    const linkerd = {
      ...observed(2, 500),
      preset: 'Linkerd',
      caveat: 'time to first byte',
    } as LatencyObservation;
    const status = planned({}, { spec, observation: linkerd }).observedLatency;
    expect(status?.preset).toBe('Linkerd');
    expect(status?.message).toBe('time to first byte');
    // Negative control: a plain observation carries no message.
    expect(planned({}, { spec, observation: observed(2, 500) }).observedLatency?.message).toBeUndefined();
  });

  test('the message shows the grace arithmetic', () => {
    const spec = { observedLatency: { source: 'Prometheus' as const } };
    expect(planned({}, { spec, observation: observed(2, 500) }).message).toContain(
      'grace 30 s: preStop 5 + drain 3 (p99 2 s x 1.5) + overhead 5 = 13, raised to minSeconds of [30, 300]',
    );
  });

  test('the message stays within the schema bound', () => {
    const errors = Array.from({ length: 100 }, (_, i) => ({ annotation: `a${i}`, message: 'x'.repeat(50) }));
    const status = workloadVerdict({ kind: 'InvalidAnnotations', deployment: deployment(), errors });
    expect(status.message?.length).toBe(1024);
    expect(status.message?.endsWith('...')).toBe(true);
  });

  test('every verdict fits the status schema', () => {
    const statuses = [
      planned({ name: 'a' }),
      planned({ name: 'b', containers: [container('web', [8080])] }, { observation: observed(3) }),
      workloadVerdict({ kind: 'OptedOut', deployment: deployment({ name: 'other' }) }),
    ];
    const parsed = PolicyStatusSchema.safeParse({ workloads: statuses });
    expect(parsed.error).toBeUndefined();
  });
});

function workload(verdict: Verdict, namespace: string, name: string): WorkloadStatus {
  return { namespace, name, verdict, reason: verdict === 'NonCompliant' ? 'PreStopMissing' : verdict };
}

function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('summarizePolicyStatus', () => {
  const p = policy('web-tier', {}, 7);
  const compliance = (s: GracefulShutdownPolicyStatus) => s.conditions?.find((c) => c.type === 'Compliant');
  const accepted = (s: GracefulShutdownPolicyStatus) => s.conditions?.find((c) => c.type === 'Accepted');

  test('150 workloads: counts over all, at most 100 listed, non-compliant first then namespace/name', () => {
    const all: WorkloadStatus[] = [];
    for (let i = 0; i < 60; i++)
      all.push(workload('Compliant', `ns-${i % 3}`, `c-${String(i).padStart(2, '0')}`));
    for (let i = 0; i < 50; i++)
      all.push(workload('NonCompliant', `ns-${i % 2}`, `n-${String(i).padStart(2, '0')}`));
    for (let i = 0; i < 30; i++) all.push(workload('Exempt', 'ns-0', `e-${i}`));
    for (let i = 0; i < 10; i++) all.push(workload('Unknown', 'ns-9', `u-${i}`));
    const status = summarizePolicyStatus({ policy: p, workloads: shuffled(all, 42), now: T0 });
    expect(status.counts).toEqual({ matched: 120, compliant: 60, nonCompliant: 50, exempt: 30 });
    expect(status.workloads).toHaveLength(MAX_WORKLOADS_IN_STATUS);
    const verdicts = status.workloads?.map((w) => w.verdict) ?? [];
    expect(verdicts.slice(0, 50).every((v) => v === 'NonCompliant')).toBe(true);
    expect(verdicts.slice(50, 60).every((v) => v === 'Unknown')).toBe(true);
    expect(verdicts.slice(60).every((v) => v === 'Compliant')).toBe(true);
    const listed = status.workloads ?? [];
    expect([...listed].sort(compareWorkloads)).toEqual(listed);
    expect(listed[0]).toMatchObject({ namespace: 'ns-0', name: 'n-00' });
    expect(listed[25]).toMatchObject({ namespace: 'ns-1', name: 'n-01' });
    expect(PolicyStatusSchema.safeParse(status).error).toBeUndefined();
  });

  test('Enforce: applied, waiting by reason, blocked by the breaker, and the RolloutBreakerOpen condition', () => {
    const enforce = policy('web-tier', { mode: 'Enforce' }, 7);
    const withReason = (w: WorkloadStatus, reason: string): WorkloadStatus => ({ ...w, reason });
    const workloads = [
      withReason(workload('Compliant', 'a', 'applied-1'), 'SettingsApplied'),
      withReason(workload('Compliant', 'a', 'applied-2'), 'SettingsApplied'),
      withReason(workload('Compliant', 'a', 'user-set'), 'SettingsMatch'),
      withReason(workload('NonCompliant', 'a', 'paused'), 'Paused'),
      withReason(workload('NonCompliant', 'a', 'crashing'), 'Unhealthy'),
      withReason(workload('NonCompliant', 'a', 'pending'), 'Unhealthy'),
      withReason(workload('NonCompliant', 'a', 'held'), 'BreakerOpen'),
      withReason(workload('NonCompliant', 'a', 'failed'), 'RolloutFailed'),
      workload('NonCompliant', 'a', 'not-waiting'),
    ];
    const hold = { key: 'a/failed', message: 'the rollout the operator started did not progress' };
    const rollouts = {
      held: new Map([
        ['a', hold],
        ['b', { key: 'b/x', message: 'stuck' }],
      ]),
      breaker: { namespaces: ['a', 'b'], message: 'rollouts the operator started failed in 2 namespaces' },
    };
    const status = summarizePolicyStatus({ policy: enforce, workloads, now: T0, rollouts });
    expect(status.counts).toEqual({
      matched: 9,
      compliant: 3,
      nonCompliant: 6,
      exempt: 0,
      applied: 2,
      waiting: 5,
      waitingReasons: [
        { reason: 'Unhealthy', count: 2 },
        { reason: 'BreakerOpen', count: 1 },
        { reason: 'Paused', count: 1 },
        { reason: 'RolloutFailed', count: 1 },
      ],
      blockedByBreaker: 2,
    });
    expect(status.conditions?.find((c) => c.type === 'RolloutBreakerOpen')).toMatchObject({
      status: 'True',
      reason: 'RolloutFailed',
      message: expect.stringContaining('failed in 2 namespaces; no new rollouts in any namespace'),
    });
    expect(status.heldNamespaces).toEqual(['a', 'b']);
    expect(PolicyStatusSchema.safeParse(status).error).toBeUndefined();
    // One namespace held: the breaker stays closed, the condition names it.
    const one = summarizePolicyStatus({
      policy: enforce,
      workloads,
      now: T0,
      previous: status,
      rollouts: { held: new Map([['a', hold]]) },
    });
    expect(one.conditions?.find((c) => c.type === 'RolloutBreakerOpen')).toMatchObject({
      status: 'False',
      reason: 'NamespacesHeld',
      message: expect.stringContaining('1 namespace where one the operator started failed (a: a/failed:'),
    });
    expect(one.heldNamespaces).toEqual(['a']);
    const closed = summarizePolicyStatus({ policy: enforce, workloads, now: T0, previous: status });
    expect(closed.conditions?.find((c) => c.type === 'RolloutBreakerOpen')).toMatchObject({
      status: 'False',
      reason: 'NoFailedRollouts',
    });
    expect(closed).not.toHaveProperty('heldNamespaces');
    // Audit: none of it.
    const audit = summarizePolicyStatus({ policy: p, workloads, now: T0, rollouts });
    expect(audit).not.toHaveProperty('heldNamespaces');
    expect(audit.counts).not.toHaveProperty('waiting');
    expect(audit.conditions?.map((c) => c.type)).not.toContain('RolloutBreakerOpen');
  });

  test('the same workloads in any order give the same status', () => {
    const all = [
      workload('Compliant', 'b', 'x'),
      workload('NonCompliant', 'b', 'a'),
      workload('NonCompliant', 'a', 'z'),
      workload('Exempt', 'a', 'a'),
      workload('Compliant', 'a', 'y'),
    ];
    const first = summarizePolicyStatus({ policy: p, workloads: all, now: T0 });
    for (const seed of [1, 2, 3, 4, 5]) {
      expect(summarizePolicyStatus({ policy: p, workloads: shuffled(all, seed), now: T0 })).toEqual(first);
    }
    expect(first.workloads?.map((w) => `${w.namespace}/${w.name}`)).toEqual([
      'a/z',
      'b/a',
      'a/y',
      'b/x',
      'a/a',
    ]);
  });

  test.each<[string, Verdict[], string, string, string]>([
    ['no workloads', [], 'True', 'NoWorkloads', 'matches no Deployment'],
    ['only exempt workloads', ['Exempt'], 'True', 'NoWorkloads', 'matches no Deployment'],
    [
      'all compliant',
      ['Compliant', 'Compliant', 'Exempt'],
      'True',
      'AllCompliant',
      '2 matched Deployments are compliant',
    ],
    ['one compliant', ['Compliant'], 'True', 'AllCompliant', '1 matched Deployment is compliant'],
    [
      'one of three not compliant',
      ['Compliant', 'NonCompliant', 'Compliant'],
      'False',
      'NonCompliantWorkloads',
      '1 of 3 matched Deployments is not compliant',
    ],
    [
      'two not compliant',
      ['NonCompliant', 'NonCompliant', 'Unknown'],
      'False',
      'NonCompliantWorkloads',
      '2 of 3 matched Deployments are not compliant',
    ],
    ['unknown only', ['Compliant', 'Unknown'], 'Unknown', 'UnknownWorkloads', '1 of 2 matched Deployments'],
  ])('Compliant condition: %s', (_title, verdicts, status, reason, message) => {
    const s = summarizePolicyStatus({
      policy: p,
      workloads: verdicts.map((v, i) => workload(v, 'ns', `d${i}`)),
      now: T0,
    });
    expect(compliance(s)).toMatchObject({ status, reason, observedGeneration: 7 });
    expect(compliance(s)?.message).toContain(message);
    expect(accepted(s)).toMatchObject({ status: 'True', reason: 'Valid', observedGeneration: 7 });
    expect(s.observedGeneration).toBe(7);
  });

  test('times are whole seconds, as the apiserver stores them', () => {
    const s = summarizePolicyStatus({ policy: p, workloads: [], now: T0 });
    expect(accepted(s)?.lastTransitionTime).toBe('2025-01-01T00:00:00Z');
    expect(formatTime(T1)).toBe('2025-01-01T01:00:00Z');
  });

  test('lastTransitionTime is kept while the condition status stays, even when reason and message change', () => {
    const before = summarizePolicyStatus({
      policy: p,
      workloads: [workload('Compliant', 'ns', 'a')],
      now: T0,
    });
    const after = summarizePolicyStatus({
      policy: p,
      workloads: [workload('Compliant', 'ns', 'a'), workload('Compliant', 'ns', 'b')],
      now: T1,
      previous: before,
    });
    expect(compliance(after)?.message).not.toBe(compliance(before)?.message);
    expect(compliance(after)?.lastTransitionTime).toBe('2025-01-01T00:00:00Z');
    expect(accepted(after)?.lastTransitionTime).toBe('2025-01-01T00:00:00Z');
  });

  test('lastTransitionTime moves when the condition status changes', () => {
    const before = summarizePolicyStatus({
      policy: p,
      workloads: [workload('Compliant', 'ns', 'a')],
      now: T0,
    });
    const after = summarizePolicyStatus({
      policy: p,
      workloads: [workload('NonCompliant', 'ns', 'a')],
      now: T1,
      previous: before,
    });
    expect(compliance(after)?.lastTransitionTime).toBe('2025-01-01T01:00:00Z');
    expect(accepted(after)?.lastTransitionTime).toBe('2025-01-01T00:00:00Z');
  });

  test('a policy that becomes valid again: Accepted moves to True with a new time', () => {
    const invalid = invalidPolicyStatus(6, [{ path: 'spec.priority', message: 'too big' }], T0);
    const valid = summarizePolicyStatus({ policy: p, workloads: [], now: T1, previous: invalid });
    expect(accepted(valid)).toMatchObject({ status: 'True', lastTransitionTime: '2025-01-01T01:00:00Z' });
  });
});

describe('invalidPolicyStatus', () => {
  test('Accepted=False, InvalidSpec, naming every field; Compliant Unknown; nothing counted', () => {
    const s = invalidPolicyStatus(
      3,
      [
        {
          path: 'spec.preStop.seconds',
          message: 'preStop.seconds must be below terminationGracePeriod.maxSeconds',
        },
        { path: 'spec.observedLatency.percentile', message: 'must be strictly between 0 and 1' },
      ],
      T0,
    );
    expect(s.observedGeneration).toBe(3);
    expect(s.conditions?.[0]).toMatchObject({
      type: 'Accepted',
      status: 'False',
      reason: 'InvalidSpec',
      observedGeneration: 3,
    });
    expect(s.conditions?.[0]?.message).toBe(
      'spec.preStop.seconds: preStop.seconds must be below terminationGracePeriod.maxSeconds; spec.observedLatency.percentile: must be strictly between 0 and 1',
    );
    expect(s.conditions?.[1]).toMatchObject({ type: 'Compliant', status: 'Unknown', reason: 'InvalidSpec' });
    expect(s.counts).toEqual({ matched: 0, compliant: 0, nonCompliant: 0, exempt: 0 });
    expect(s.workloads).toBeUndefined();
    expect(PolicyStatusSchema.safeParse(s).error).toBeUndefined();
  });

  test('keeps the time while it stays invalid, even with other errors', () => {
    const first = invalidPolicyStatus(3, [{ path: 'spec.a', message: 'x' }], T0);
    const second = invalidPolicyStatus(4, [{ path: 'spec.b', message: 'y' }], T1, first);
    expect(second.conditions?.[0]?.lastTransitionTime).toBe('2025-01-01T00:00:00Z');
    expect(second.conditions?.[0]?.message).toBe('spec.b: y');
  });
});

describe('statusEquals', () => {
  const base = summarizePolicyStatus({
    policy: policy('p'),
    workloads: [workload('NonCompliant', 'a', 'b'), workload('Compliant', 'a', 'c')],
    now: T0,
  });

  test('a deep copy with keys in another order is equal', () => {
    const reordered = JSON.parse(
      JSON.stringify(base, (_key, value) =>
        value && typeof value === 'object' && !Array.isArray(value)
          ? Object.fromEntries(Object.entries(value).reverse())
          : value,
      ),
    );
    expect(Object.keys(reordered)).not.toEqual(Object.keys(base));
    expect(statusEquals(base, reordered)).toBe(true);
  });

  test('an undefined member equals an absent one', () => {
    expect(statusEquals({ observedGeneration: 1 }, { observedGeneration: 1, counts: undefined })).toBe(true);
  });

  test.each<[string, (s: GracefulShutdownPolicyStatus) => void]>([
    [
      'a count',
      (s) => {
        if (s.counts) s.counts.compliant += 1;
      },
    ],
    [
      'a condition message',
      (s) => {
        if (s.conditions?.[1]) s.conditions[1].message = 'other';
      },
    ],
    [
      'a lastTransitionTime',
      (s) => {
        if (s.conditions?.[0]) s.conditions[0].lastTransitionTime = '2030-01-01T00:00:00Z';
      },
    ],
    ['the workload order', (s) => s.workloads?.reverse()],
    [
      'observedGeneration',
      (s) => {
        s.observedGeneration = 9;
      },
    ],
  ])('a different %s is not equal', (_title, change) => {
    const copy = structuredClone(base);
    change(copy);
    expect(statusEquals(base, copy)).toBe(false);
  });

  test('undefined versus a status', () => {
    expect(statusEquals(undefined, undefined)).toBe(true);
    expect(statusEquals(undefined, {})).toBe(false);
  });
});

describe('LatencyObserved', () => {
  const down: LatencyObservation = {
    known: false,
    source: 'Prometheus',
    reason: 'ECONNREFUSED',
    unavailable: true,
  };
  const noSeries: LatencyObservation = { known: false, source: 'Prometheus', reason: 'no series' };

  test('each workload: fine, not asked yet, unavailable, no data, too few samples', () => {
    expect(latencyProblem(observed(2, 500), 100)).toBeUndefined();
    expect(latencyProblem(undefined, 100)).toEqual({ problem: 'Pending', detail: 'not observed yet' });
    expect(latencyProblem(down, 100)).toEqual({ problem: 'SourceUnavailable', detail: 'ECONNREFUSED' });
    expect(latencyProblem(noSeries, 100)).toEqual({ problem: 'NoData', detail: 'no series' });
    expect(latencyProblem(observed(2, 12), 100)).toEqual({
      problem: 'TooFewSamples',
      detail: '12 requests, fewer than minSamples 100',
    });
  });

  test('True when all are observed; False with the worst reason and counts; Unknown while pending; none without a source', () => {
    expect(latencyObservedCondition('Prometheus', [undefined, undefined])).toEqual({
      status: 'True',
      reason: 'Observed',
      message: 'Prometheus observes the latency of 2 Deployments',
    });
    const mixed = latencyObservedCondition('Prometheus', [
      undefined,
      latencyProblem(observed(2, 12), 100),
      latencyProblem(down, 100),
      latencyProblem(down, 100),
    ]);
    expect(mixed).toEqual({
      status: 'False',
      reason: 'SourceUnavailable',
      message:
        '2 of 4: Prometheus could not be asked (ECONNREFUSED); 1 of 4: too few requests in the window (12 requests, fewer than minSamples 100); a grace period the operator applied is never lowered on that account',
    });
    expect(latencyObservedCondition('Prometheus', [latencyProblem(undefined, 1)])).toMatchObject({
      status: 'Unknown',
      reason: 'Pending',
    });
    expect(latencyObservedCondition('None', [undefined])).toBeUndefined();
    expect(latencyObservedCondition('Prometheus', [])).toBeUndefined();
  });

  test('the condition joins the policy status, its time moving only on a status change', () => {
    const p = policy('p', { observedLatency: { source: 'Prometheus' } });
    const base = { policy: p, workloads: [], now: T1 };
    const falseStatus = summarizePolicyStatus({
      ...base,
      latency: latencyObservedCondition('Prometheus', [latencyProblem(down, 100)]),
    });
    const cond = falseStatus.conditions?.find((c) => c.type === 'LatencyObserved');
    expect(cond).toMatchObject({
      status: 'False',
      reason: 'SourceUnavailable',
      lastTransitionTime: formatTime(T1),
    });
    const later = new Date(T1.getTime() + 60_000);
    const still = summarizePolicyStatus({
      ...base,
      now: later,
      previous: falseStatus,
      latency: latencyObservedCondition('Prometheus', [latencyProblem(noSeries, 100)]),
    });
    expect(still.conditions?.find((c) => c.type === 'LatencyObserved')?.lastTransitionTime).toBe(
      formatTime(T1),
    );
    expect(summarizePolicyStatus(base).conditions?.map((c) => c.type)).toEqual(['Accepted', 'Compliant']);
  });
});
