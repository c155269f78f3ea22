// Which policy governs a Deployment: selection by labels and namespace, then precedence.
import type { V1Deployment } from '@kubernetes/client-node';
import { isExcludedByAnnotation } from '../api/annotations.ts';
import { comparePolicyPrecedence, type LabelSelector } from '../api/policy.ts';
import type { ValidPolicy } from './types.ts';

/** metav1.LabelSelector semantics: matchLabels and every matchExpression must hold; {} matches all. */
export function labelSelectorMatches(
  selector: LabelSelector,
  labels: Record<string, string> | undefined,
): boolean {
  const present = labels ?? {};
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(present, key) || present[key] !== value) return false;
  }
  for (const requirement of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(present, requirement.key);
    const value = present[requirement.key];
    const values = requirement.values ?? [];
    switch (requirement.operator) {
      case 'In':
        if (!has || value === undefined || !values.includes(value)) return false;
        break;
      case 'NotIn':
        // Like Kubernetes: a missing key satisfies NotIn.
        if (has && value !== undefined && values.includes(value)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** The Deployment's namespace; the apiserver always sets it, "default" covers a bare manifest. */
export function deploymentNamespace(deployment: V1Deployment): string {
  return deployment.metadata?.namespace ?? 'default';
}

/** "namespace/name", the key the controllers queue and budgets count. */
export function deploymentKey(deployment: V1Deployment): string {
  return `${deploymentNamespace(deployment)}/${deployment.metadata?.name ?? ''}`;
}

/**
 * True when the policy selects the Deployment: its namespace is not excluded, the namespace's
 * labels match namespaceSelector and the Deployment's labels match deploymentSelector.
 * The exclude annotation is not checked here: an opted-out Deployment is still selected (and
 * reported Exempt), see matchDeployment.
 */
export function policySelects(
  policy: ValidPolicy,
  deployment: V1Deployment,
  namespaceLabels: Record<string, string> | undefined,
): boolean {
  const { spec } = policy;
  if (spec.excludedNamespaces.includes(deploymentNamespace(deployment))) return false;
  if (!labelSelectorMatches(spec.namespaceSelector, namespaceLabels)) return false;
  return labelSelectorMatches(spec.deploymentSelector, deployment.metadata?.labels);
}

export type MatchResult =
  | { kind: 'Matched'; policy: ValidPolicy; losers: ValidPolicy[] }
  | { kind: 'OptedOut'; policies: ValidPolicy[] }
  | { kind: 'Unmatched' };

/** Orders policies winner first (comparePolicyPrecedence), whatever order they come in. */
export function sortByPrecedence(policies: readonly ValidPolicy[]): ValidPolicy[] {
  const view = (policy: ValidPolicy) => ({ metadata: { name: policy.name }, spec: policy.spec });
  return [...policies].sort((a, b) => comparePolicyPrecedence(view(a), view(b)));
}

/**
 * The policy that governs the Deployment. Matched: the winner, and the other selecting
 * policies (winner first order), which report it Exempt. OptedOut: the Deployment carries the
 * exclude annotation; every selecting policy reports it Exempt. Unmatched: no policy selects it.
 */
export function matchDeployment(
  policies: readonly ValidPolicy[],
  deployment: V1Deployment,
  namespaceLabels: Record<string, string> | undefined,
): MatchResult {
  const selecting = sortByPrecedence(policies.filter((p) => policySelects(p, deployment, namespaceLabels)));
  const [winner, ...losers] = selecting;
  if (winner === undefined) return { kind: 'Unmatched' };
  if (isExcludedByAnnotation(deployment.metadata?.annotations))
    return { kind: 'OptedOut', policies: selecting };
  return { kind: 'Matched', policy: winner, losers };
}

/** The key part naming the Deployment: its uid (namespace/name before it has one). */
export function deploymentUid(deployment: V1Deployment): string {
  const { uid, namespace, name } = deployment.metadata ?? {};
  return uid || `${namespace ?? ''}/${name ?? ''}`;
}
