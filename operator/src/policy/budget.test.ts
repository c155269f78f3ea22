import type { V1DeploymentStatus } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import type { GracefulShutdownPolicySpecInput } from '../api/policy.ts';
import { isPaused, isRolling, isTemplateRolloutInProgress, rolloutDecision } from './budget.ts';
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
    ['new generation not observed', { generation: 2, status: steady(2, 1) }, true, true],
    ['no status yet (just created)', { status: {} }, true, true],
    ['fewer updated replicas', { status: { ...steady(2), updatedReplicas: 1 } }, true, true],
    ['fewer ready replicas', { status: { ...steady(2), readyReplicas: 1 } }, true, false],
    ['fewer available replicas', { status: { ...steady(2), availableReplicas: 1 } }, true, false],
    ['old pods still around', { status: { ...steady(2), replicas: 3 } }, true, false],
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
});

describe('rolloutDecision', () => {
  const rolling: DeploymentOptions = { generation: 3, status: steady(2, 2) };
  const cases: {
    title: string;
    spec?: GracefulShutdownPolicySpecInput;
    options?: DeploymentOptions;
    rollingKeys?: string[];
    want: string;
  }[] = [
    { title: 'steady, budget free', want: 'Apply' },
    { title: 'paused', options: { paused: true }, want: 'Paused' },
    { title: 'paused wins over rolling', options: { ...rolling, paused: true }, want: 'Paused' },
    { title: 'itself rolling', options: rolling, want: 'RollingOut' },
    {
      title: 'another Deployment rolling, maxConcurrent 1',
      rollingKeys: ['shop/api'],
      want: 'RolloutBudgetExhausted',
    },
    { title: 'only itself in the set does not count', rollingKeys: ['shop/web'], want: 'Apply' },
    {
      title: 'maxConcurrent 2, one other rolling',
      spec: { rollout: { maxConcurrent: 2 } },
      rollingKeys: ['shop/api'],
      want: 'Apply',
    },
    {
      title: 'maxConcurrent 2, two others rolling',
      spec: { rollout: { maxConcurrent: 2 } },
      rollingKeys: ['shop/api', 'shop/cart', 'shop/web'],
      want: 'RolloutBudgetExhausted',
    },
    {
      title: 'OnNextRollout, steady: wait',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      want: 'WaitingForNextRollout',
    },
    {
      title: 'OnNextRollout, own template rollout in progress: join it',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      options: rolling,
      rollingKeys: ['shop/web'],
      want: 'Apply',
    },
    {
      title: 'OnNextRollout, pods merely not ready is no template change',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      options: { status: { ...steady(2), readyReplicas: 1 } },
      want: 'WaitingForNextRollout',
    },
    {
      title: 'OnNextRollout, mid-rollout but the budget is full',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      options: rolling,
      rollingKeys: ['shop/api', 'shop/web'],
      want: 'RolloutBudgetExhausted',
    },
    {
      title: 'OnNextRollout, paused',
      spec: { rollout: { updateExisting: 'OnNextRollout' } },
      options: { ...rolling, paused: true },
      want: 'Paused',
    },
  ];
  test.each(cases)('$title -> $want', ({ spec, options, rollingKeys, want }) => {
    const decision = rolloutDecision({
      policy: policy('p', spec ?? {}),
      deployment: deployment(options ?? {}),
      rollingKeys: new Set(rollingKeys ?? []),
      key: 'shop/web',
    });
    expect(decision.kind === 'Apply' ? 'Apply' : decision.reason).toBe(want);
    if (decision.kind === 'Wait') expect(decision.message).not.toBe('');
  });

  test('the budget message names the count and the limit', () => {
    const decision = rolloutDecision({
      policy: policy('web-tier', { rollout: { maxConcurrent: 2 } }),
      deployment: deployment(),
      rollingKeys: new Set(['a/x', 'b/y']),
      key: 'shop/web',
    });
    expect(decision).toMatchObject({
      kind: 'Wait',
      message: expect.stringMatching(/2 Deployments .*web-tier.* 2/),
    });
  });
});
