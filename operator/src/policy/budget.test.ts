import type { V1DeploymentStatus } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import type { GracefulShutdownPolicySpecInput } from '../api/policy.ts';
import {
  isPaused,
  isRolling,
  isTemplateRolloutInProgress,
  policyRollouts,
  type RolloutState,
  rolloutDecision,
  rolloutState,
  templateHash,
} from './budget.ts';
import type { AppliedRecord } from './ownership.ts';
import { type DeploymentOptions, deployment, policy } from './test-fixtures.ts';

const steady = (replicas: number, generation = 1): V1DeploymentStatus => ({
  observedGeneration: generation,
  replicas,
  updatedReplicas: replicas,
  readyReplicas: replicas,
  availableReplicas: replicas,
});

describe('isRolling and isTemplateRolloutInProgress', () => {
  test.each<[string, DeploymentOptions, boolean, boolean]>([
    ['steady', {}, false, false],
    // Unobserved: a scale or a template change, not known yet; the next status says.
    ['new generation not observed', { generation: 2, status: steady(2, 1) }, true, false],
    ['no status yet (just created)', { status: {} }, true, false],
    ['pods of an older template still running', { status: { ...steady(2), updatedReplicas: 1 } }, true, true],
    [
      'scaled up: new pods not ready yet, all of the current template',
      { replicas: 4, status: steady(2) },
      true,
      false,
    ],
    ['fewer ready replicas', { status: { ...steady(2), readyReplicas: 1 } }, true, false],
    ['fewer available replicas', { status: { ...steady(2), availableReplicas: 1 } }, true, false],
    ['scaled to zero', { replicas: 0, status: steady(0) }, false, false],
    ['replicas unset means 1', { replicas: undefined, status: steady(1) }, false, false],
  ])('%s', (_title, options, rolling, templateRollout) => {
    const d = deployment(options);
    if (options.replicas === undefined && 'replicas' in options && d.spec) d.spec.replicas = undefined;
    expect(isRolling(d)).toBe(rolling);
    expect(isTemplateRolloutInProgress(d)).toBe(templateRollout);
  });

  test('isPaused', () => {
    expect(isPaused(deployment({ paused: true }))).toBe(true);
    expect(isPaused(deployment({ paused: false }))).toBe(false);
    expect(isPaused(deployment())).toBe(false);
  });

  test('templateHash changes with the pod template, not with a scale', () => {
    const d = deployment();
    expect(templateHash(deployment({ replicas: 7 }))).toBe(templateHash(d));
    expect(templateHash(deployment({ grace: 99 }))).not.toBe(templateHash(d));
  });
});

const NOW = Date.parse('2026-11-30T12:00:00Z');
const P = policy('p', { mode: 'Enforce', rollout: { progressDeadlineSeconds: 60 } });
const rolloutRecord = (generation: number, startedAt = NOW - 10_000): AppliedRecord => ({
  policy: 'p',
  policyGeneration: 1,
  containers: {},
  reason: '',
  rollout: { generation, startedAt: new Date(startedAt).toISOString(), previous: {} },
});
const ownRolling = { generation: 2, status: { ...steady(2, 2), updatedReplicas: 1, replicas: 3 } };

describe('rolloutState', () => {
  test.each<[string, DeploymentOptions, AppliedRecord | undefined, string, boolean?]>([
    ['settled', {}, undefined, 'Settled'],
    ['paused', { paused: true }, undefined, 'Paused'],
    [
      'rolling for its own reasons',
      { status: { ...steady(2), updatedReplicas: 1, replicas: 3 } },
      undefined,
      'RollingOut',
    ],
    [
      'crash-looping: no rollout, replicas unavailable',
      { status: { ...steady(2), availableReplicas: 0, readyReplicas: 0 } },
      undefined,
      'Unhealthy',
    ],
    ['the operator rollout, recorded at this generation', ownRolling, rolloutRecord(2), 'OwnRollout'],
    ['the operator rollout done', { generation: 2, status: steady(2, 2) }, rolloutRecord(2), 'Settled'],
    ['a recorded rollout of an older generation is not ours', ownRolling, rolloutRecord(1), 'RollingOut'],
    ['... unless this replica started it (scaled since)', ownRolling, rolloutRecord(1), 'OwnRollout', true],
    [
      'ours, past rollout.progressDeadlineSeconds',
      ownRolling,
      rolloutRecord(2, NOW - 61_000),
      'OwnRolloutFailed',
    ],
  ])('%s -> %s', (_title, options, record, want, startedHere) => {
    expect(
      rolloutState(deployment(options), record, P, NOW, { startedHere: startedHere ?? false }).kind,
    ).toBe(want);
  });

  test('a new template not yet observed is a template rollout only when it differs from the one last seen settled', () => {
    const unobserved = deployment({ generation: 2, status: steady(2, 1) });
    expect(rolloutState(unobserved, undefined, P, NOW)).toEqual({ kind: 'RollingOut', template: false });
    expect(rolloutState(unobserved, undefined, P, NOW, { templateChanged: true })).toEqual({
      kind: 'RollingOut',
      template: true,
    });
  });

  test('ours and completed (NewReplicaSetAvailable), a pod lost days later: Unhealthy, never a failed rollout', () => {
    const d = deployment({
      generation: 2,
      status: { ...steady(2, 2), availableReplicas: 1, readyReplicas: 1 },
    });
    d.status = {
      ...d.status,
      conditions: [
        { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: 'done' },
      ],
    };
    const old = rolloutRecord(2, NOW - 86_400_000);
    expect(rolloutState(d, old, P, NOW).kind).toBe('Unhealthy');
    expect(rolloutState(d, old, P, NOW, { startedHere: true }).kind).toBe('Unhealthy');
  });

  test('a failure that no longer holds (policy changed) on the template it failed with: a new write may replace it', () => {
    const d = deployment({ generation: 3, status: { ...steady(2, 3), updatedReplicas: 1, replicas: 3 } });
    const failed = {
      ...rolloutRecord(2),
      failure: {
        policyGeneration: 1,
        reason: 'RolloutTimedOut',
        message: 'stuck',
        at: '',
        template: templateHash(d),
      },
    };
    expect(rolloutState(d, failed, P, NOW).kind).toBe('Failed');
    expect(rolloutState(d, failed, policy('p', { mode: 'Enforce' }, 2), NOW).kind).toBe('Settled');
  });

  test('ours, and the Deployment controller says ProgressDeadlineExceeded: failed at once', () => {
    const d = deployment(ownRolling);
    d.status = {
      ...d.status,
      conditions: [
        {
          type: 'Progressing',
          status: 'False',
          reason: 'ProgressDeadlineExceeded',
          message: 'ReplicaSet "web-1" has timed out progressing.',
        },
      ],
    };
    expect(rolloutState(d, rolloutRecord(2), P, NOW)).toEqual({
      kind: 'OwnRolloutFailed',
      reason: 'ProgressDeadlineExceeded',
      message: expect.stringContaining('has timed out progressing'),
    });
  });

  test('a recorded failure holds until the policy or the pod template changes', () => {
    const d = deployment();
    const failed = {
      ...rolloutRecord(1),
      failure: {
        policyGeneration: 1,
        reason: 'RolloutTimedOut',
        message: 'stuck',
        at: '',
        template: templateHash(d),
      },
    };
    expect(rolloutState(d, failed, P, NOW)).toEqual({ kind: 'Failed', message: 'stuck' });
    expect(rolloutState(deployment({ grace: 99 }), failed, P, NOW).kind).toBe('Settled');
    expect(rolloutState(d, failed, policy('p', { mode: 'Enforce' }, 2), NOW).kind).toBe('Settled');
    // A revert still to write holds whatever the template.
    const { template: _t, ...pending } = failed.failure;
    expect(rolloutState(deployment({ grace: 99 }), { ...failed, failure: pending }, P, NOW).kind).toBe(
      'Failed',
    );
  });
});

describe('policyRollouts and rolloutDecision', () => {
  const states = (entries: Record<string, RolloutState>) => new Map(Object.entries(entries));
  const settled: RolloutState = { kind: 'Settled' };
  const own: RolloutState = { kind: 'OwnRollout', startedAt: NOW };

  test('only the operator rollouts and writes in flight take slots; a failure holds its namespace', () => {
    const rollouts = policyRollouts(
      states({
        'shop/a': own,
        'shop/b': { kind: 'RollingOut', template: true },
        'shop/c': { kind: 'Unhealthy', message: '1 of 2 replicas unavailable' },
        'shop/d': { kind: 'Paused' },
      }),
      3,
      ['shop/e'],
    );
    expect([...rollouts.active].sort()).toEqual(['shop/a', 'shop/e']);
    expect(rollouts.breaker).toBeUndefined();
    expect(rollouts.held.size).toBe(0);
    const broken = policyRollouts(states({ 'shop/a': { kind: 'Failed', message: 'stuck' } }), 3);
    expect([...broken.held]).toEqual([['shop', { key: 'shop/a', message: 'stuck' }]]);
    expect(broken.breaker).toBeUndefined();
  });

  test('failures in rollout.breakerNamespaces namespaces open the breaker for every namespace', () => {
    const failed = (message: string): RolloutState => ({ kind: 'Failed', message });
    const two = states({ 'a/x': failed('stuck'), 'a/y': failed('stuck'), 'b/z': failed('crash') });
    expect(policyRollouts(two, 3).breaker).toBeUndefined();
    expect([...policyRollouts(two, 3).held.keys()]).toEqual(['a', 'b']);
    // Two failures in one namespace count once: a team breaking its own rollouts holds itself.
    const open = policyRollouts(two, 2).breaker;
    expect(open?.namespaces).toEqual(['a', 'b']);
    expect(open?.message).toMatch(
      /failed in 2 namespaces \(a, b\), rollout.breakerNamespaces is 2; first: a\/x: stuck/,
    );
    expect(policyRollouts(states({ 'a/x': failed('stuck') }), 1).breaker?.namespaces).toEqual(['a']);
  });

  const cases: {
    title: string;
    spec?: GracefulShutdownPolicySpecInput;
    state?: RolloutState;
    others?: Record<string, RolloutState>;
    want: string;
  }[] = [
    { title: 'settled, budget free', want: 'Apply' },
    { title: 'paused', state: { kind: 'Paused' }, want: 'Paused' },
    { title: 'unhealthy', state: { kind: 'Unhealthy', message: 'x' }, want: 'Unhealthy' },
    {
      title: 'rolling out for its own reasons',
      state: { kind: 'RollingOut', template: true },
      want: 'RollingOut',
    },
    { title: 'its operator rollout in progress', state: own, want: 'RollingOut' },
    { title: 'its own failure', state: { kind: 'Failed', message: 'x' }, want: 'RolloutFailed' },
    {
      title: 'another operator rollout, maxConcurrent 1',
      others: { 'shop/api': own },
      want: 'RolloutBudgetExhausted',
    },
    {
      title: 'maxConcurrent 2, one other',
      spec: { rollout: { maxConcurrent: 2 } },
      others: { 'shop/api': own },
      want: 'Apply',
    },
    {
      title: 'others unhealthy, paused and rolling for their own reasons take no slot',
      others: {
        'shop/a': { kind: 'Unhealthy', message: 'x' },
        'shop/b': { kind: 'Paused' },
        'shop/c': { kind: 'RollingOut', template: true },
      },
      want: 'Apply',
    },
    {
      title: 'another failed in the same namespace: held',
      others: { 'shop/api': { kind: 'Failed', message: 'x' } },
      want: 'BreakerOpen',
    },
    {
      title: 'another failed in another namespace: applied',
      others: { 'tenant-a/evil': { kind: 'Failed', message: 'x' } },
      want: 'Apply',
    },
    {
      title: 'failures in two other namespaces, breakerNamespaces 2: breaker open',
      spec: { rollout: { breakerNamespaces: 2 } },
      others: {
        'a/x': { kind: 'Failed', message: 'x' },
        'b/y': { kind: 'OwnRolloutFailed', reason: 'r', message: 'y' },
      },
      want: 'BreakerOpen',
    },
    {
      title: 'OnNextRollout, settled: wait',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      want: 'WaitingForNextRollout',
    },
    {
      title: 'OnNextRollout, a scale (no template change) is no rollout',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      state: { kind: 'RollingOut', template: false },
      want: 'WaitingForNextRollout',
    },
    {
      title: 'OnNextRollout, a template rollout in progress: join it',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      state: { kind: 'RollingOut', template: true },
      want: 'Apply',
    },
    {
      title: 'OnNextRollout, joining but the budget is full',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      state: { kind: 'RollingOut', template: true },
      others: { 'shop/api': own },
      want: 'RolloutBudgetExhausted',
    },
  ];
  test.each(cases)('$title -> $want', ({ spec, state, others, want }) => {
    const valid = policy('p', { mode: 'Enforce', ...spec });
    const decision = rolloutDecision({
      policy: valid,
      key: 'shop/web',
      state: state ?? settled,
      rollouts: policyRollouts(
        states({ ...others, 'shop/web': state ?? settled }),
        valid.spec.rollout.breakerNamespaces,
      ),
    });
    expect(decision.kind === 'Apply' ? 'Apply' : decision.reason).toBe(want);
    if (decision.kind === 'Wait') expect(decision.message).not.toBe('');
  });

  test('the budget message names the count and the limit', () => {
    const decision = rolloutDecision({
      policy: policy('web-tier', { rollout: { maxConcurrent: 2 } }),
      key: 'shop/web',
      state: settled,
      rollouts: policyRollouts(states({ 'a/x': own, 'b/y': own }), 3),
    });
    expect(decision).toMatchObject({
      kind: 'Wait',
      message: expect.stringMatching(/2 rollouts .*web-tier.* 2/),
    });
  });
});
