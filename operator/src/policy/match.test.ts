import { describe, expect, test } from 'vitest';
import type { LabelSelector } from '../api/policy.ts';
import { deploymentKey, labelSelectorMatches, matchDeployment, policySelects } from './match.ts';
import { deployment, policy } from './test-fixtures.ts';
import type { ValidPolicy } from './types.ts';

describe('labelSelectorMatches', () => {
  const labels = { app: 'web', tier: 'frontend', empty: '' };
  const cases: { title: string; selector: LabelSelector; labels?: Record<string, string>; want: boolean }[] =
    [
      { title: 'empty selector, labels', selector: {}, labels, want: true },
      { title: 'empty selector, no labels at all', selector: {}, want: true },
      { title: 'empty lists', selector: { matchLabels: {}, matchExpressions: [] }, want: true },
      { title: 'matchLabels equal', selector: { matchLabels: { app: 'web' } }, labels, want: true },
      {
        title: 'matchLabels all of several',
        selector: { matchLabels: { app: 'web', tier: 'frontend' } },
        labels,
        want: true,
      },
      {
        title: 'matchLabels one differs',
        selector: { matchLabels: { app: 'web', tier: 'backend' } },
        labels,
        want: false,
      },
      { title: 'matchLabels key missing', selector: { matchLabels: { team: 'a' } }, labels, want: false },
      { title: 'matchLabels empty value', selector: { matchLabels: { empty: '' } }, labels, want: true },
      {
        title: 'matchLabels empty value, key missing',
        selector: { matchLabels: { other: '' } },
        labels,
        want: false,
      },
      { title: 'matchLabels, no labels', selector: { matchLabels: { app: 'web' } }, want: false },
      {
        title: 'In, value listed',
        selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['api', 'web'] }] },
        labels,
        want: true,
      },
      {
        title: 'In, value not listed',
        selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['api'] }] },
        labels,
        want: false,
      },
      {
        title: 'In, key missing',
        selector: { matchExpressions: [{ key: 'team', operator: 'In', values: ['a'] }] },
        labels,
        want: false,
      },
      {
        title: 'NotIn, value listed',
        selector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['web'] }] },
        labels,
        want: false,
      },
      {
        title: 'NotIn, value not listed',
        selector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['api'] }] },
        labels,
        want: true,
      },
      {
        title: 'NotIn, key missing matches',
        selector: { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] },
        labels,
        want: true,
      },
      {
        title: 'Exists, present',
        selector: { matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
        labels,
        want: true,
      },
      {
        title: 'Exists, present with empty value',
        selector: { matchExpressions: [{ key: 'empty', operator: 'Exists' }] },
        labels,
        want: true,
      },
      {
        title: 'Exists, missing',
        selector: { matchExpressions: [{ key: 'team', operator: 'Exists' }] },
        labels,
        want: false,
      },
      {
        title: 'DoesNotExist, missing',
        selector: { matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] },
        labels,
        want: true,
      },
      {
        title: 'DoesNotExist, present',
        selector: { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] },
        labels,
        want: false,
      },
      {
        title: 'DoesNotExist, no labels at all',
        selector: { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] },
        want: true,
      },
      {
        title: 'matchLabels AND expressions, both hold',
        selector: {
          matchLabels: { app: 'web' },
          matchExpressions: [{ key: 'tier', operator: 'In', values: ['frontend'] }],
        },
        labels,
        want: true,
      },
      {
        title: 'matchLabels AND expressions, expression fails',
        selector: {
          matchLabels: { app: 'web' },
          matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['frontend'] }],
        },
        labels,
        want: false,
      },
      {
        title: 'matchLabels AND expressions, label fails',
        selector: { matchLabels: { app: 'api' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
        labels,
        want: false,
      },
      {
        title: 'every expression must hold',
        selector: {
          matchExpressions: [
            { key: 'app', operator: 'Exists' },
            { key: 'team', operator: 'Exists' },
          ],
        },
        labels,
        want: false,
      },
      {
        title: 'a key inherited from Object.prototype is not a label',
        selector: { matchExpressions: [{ key: 'constructor', operator: 'Exists' }] },
        labels,
        want: false,
      },
    ];
  test.each(cases)('$title -> $want', ({ selector, labels: given, want }) => {
    expect(labelSelectorMatches(selector, given)).toBe(want);
  });
});

describe('policySelects', () => {
  const cases: {
    title: string;
    spec: Parameters<typeof policy>[1];
    namespace?: string;
    labels?: Record<string, string>;
    namespaceLabels?: Record<string, string>;
    want: boolean;
  }[] = [
    { title: 'empty selectors select everything', spec: {}, want: true },
    { title: 'kube-system is excluded by default', spec: {}, namespace: 'kube-system', want: false },
    {
      title: "the operator's namespace is excluded by default",
      spec: {},
      namespace: 'graceful-shutdown-system',
      want: false,
    },
    {
      title: 'excludedNamespaces replaces the default list',
      spec: { excludedNamespaces: ['shop'] },
      namespace: 'kube-system',
      want: true,
    },
    { title: 'a listed namespace is excluded', spec: { excludedNamespaces: ['shop'] }, want: false },
    {
      title: 'excluded even when the selectors match',
      spec: { excludedNamespaces: ['shop'], namespaceSelector: { matchLabels: { env: 'prod' } } },
      namespaceLabels: { env: 'prod' },
      want: false,
    },
    {
      title: 'namespaceSelector on the namespace labels',
      spec: { namespaceSelector: { matchLabels: { env: 'prod' } } },
      namespaceLabels: { env: 'prod' },
      want: true,
    },
    {
      title: 'namespaceSelector not matching',
      spec: { namespaceSelector: { matchLabels: { env: 'prod' } } },
      namespaceLabels: { env: 'dev' },
      want: false,
    },
    {
      title: 'namespaceSelector is not matched against the Deployment labels',
      spec: { namespaceSelector: { matchLabels: { env: 'prod' } } },
      labels: { env: 'prod' },
      want: false,
    },
    {
      title: 'deploymentSelector on the Deployment labels',
      spec: { deploymentSelector: { matchLabels: { tier: 'web' } } },
      labels: { tier: 'web' },
      want: true,
    },
    {
      title: 'deploymentSelector is not matched against the namespace labels',
      spec: { deploymentSelector: { matchLabels: { tier: 'web' } } },
      namespaceLabels: { tier: 'web' },
      want: false,
    },
  ];
  test.each(cases)('$title', ({ spec, namespace, labels, namespaceLabels, want }) => {
    const d = deployment({ ...(namespace ? { namespace } : {}), ...(labels ? { labels } : {}) });
    expect(policySelects(policy('p', spec), d, namespaceLabels)).toBe(want);
  });
});

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

describe('matchDeployment', () => {
  const names = (policies: ValidPolicy[]) => policies.map((p) => p.name);

  test('the highest priority wins; equal priorities go to the name that sorts first, whatever the input order', () => {
    const policies = [
      policy('b-low', { priority: 1 }),
      policy('z-high', { priority: 10 }),
      policy('a-high', { priority: 10 }),
      policy('a-zero'),
    ];
    for (const order of permutations(policies)) {
      const result = matchDeployment(order, deployment(), undefined);
      expect(result.kind).toBe('Matched');
      if (result.kind !== 'Matched') return;
      expect(result.policy.name).toBe('a-high');
      expect(names(result.losers)).toEqual(['z-high', 'b-low', 'a-zero']);
    }
  });

  test('policies that do not select the Deployment are neither winner nor loser', () => {
    const result = matchDeployment(
      [
        policy('strong', { priority: 100, deploymentSelector: { matchLabels: { tier: 'db' } } }),
        policy('weak'),
      ],
      deployment({ labels: { tier: 'web' } }),
      undefined,
    );
    expect(result).toMatchObject({ kind: 'Matched', policy: { name: 'weak' }, losers: [] });
  });

  test('the exclude annotation opts out from every selecting policy, listed winner first', () => {
    const result = matchDeployment(
      [policy('b'), policy('a'), policy('other', { excludedNamespaces: ['shop'] })],
      deployment({ annotations: { 'gracefulshutdown.dev/exclude': 'true' } }),
      undefined,
    );
    expect(result.kind).toBe('OptedOut');
    if (result.kind === 'OptedOut') expect(names(result.policies)).toEqual(['a', 'b']);
  });

  test.each(['false', 'TRUE', 'yes', ''])('exclude annotation %j does not opt out', (value) => {
    const result = matchDeployment(
      [policy('a')],
      deployment({ annotations: { 'gracefulshutdown.dev/exclude': value } }),
      undefined,
    );
    expect(result.kind).toBe('Matched');
  });

  test('an opted-out Deployment no policy selects is Unmatched', () => {
    const result = matchDeployment(
      [policy('a', { excludedNamespaces: ['shop'] })],
      deployment({ annotations: { 'gracefulshutdown.dev/exclude': 'true' } }),
      undefined,
    );
    expect(result).toEqual({ kind: 'Unmatched' });
  });

  test('no policies: Unmatched', () => {
    expect(matchDeployment([], deployment(), undefined)).toEqual({ kind: 'Unmatched' });
  });

  test('a Deployment in an excluded namespace is Unmatched', () => {
    expect(matchDeployment([policy('a')], deployment({ namespace: 'kube-system' }), undefined)).toEqual({
      kind: 'Unmatched',
    });
  });

  test('the input array is not reordered', () => {
    const input = [policy('b'), policy('a')];
    matchDeployment(input, deployment(), undefined);
    expect(names(input)).toEqual(['b', 'a']);
  });

  test('deploymentKey is namespace/name', () => {
    expect(deploymentKey(deployment({ namespace: 'shop', name: 'checkout' }))).toBe('shop/checkout');
  });
});
