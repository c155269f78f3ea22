// The operator's read side: the informer caches every controller reads, and the policies
// parsed once per resourceVersion.
import type { KubernetesObject, V1Deployment, V1Namespace } from '@kubernetes/client-node';
import { type FieldError, type GracefulShutdownPolicyStatus, parsePolicySpec } from '../api/policy.ts';
import type { Informer } from '../kube/informer.ts';
import type { ValidPolicy } from '../policy/types.ts';

/** A policy as stored: the spec is unknown until parsed (an old CRD may let anything through). */
export interface PolicyObject extends KubernetesObject {
  spec?: unknown;
  status?: GracefulShutdownPolicyStatus;
}

export interface ParsedPolicies {
  valid: ValidPolicy[];
  invalid: Map<string, { generation: number; errors: FieldError[] }>;
}

export class ClusterView {
  readonly deployments: Informer<V1Deployment>;
  readonly namespaces: Informer<V1Namespace>;
  readonly policies: Informer<PolicyObject>;
  readonly #parsed = new Map<string, { resourceVersion: string; result: ValidPolicy | FieldError[] }>();

  constructor(informers: {
    deployments: Informer<V1Deployment>;
    namespaces: Informer<V1Namespace>;
    policies: Informer<PolicyObject>;
  }) {
    this.deployments = informers.deployments;
    this.namespaces = informers.namespaces;
    this.policies = informers.policies;
  }

  namespaceLabels(namespace: string | undefined): Record<string, string> | undefined {
    return namespace === undefined ? undefined : this.namespaces.get(namespace)?.metadata?.labels;
  }

  /** Every policy in the cache, parsed with the operator's own validation (memoized). */
  parsedPolicies(): ParsedPolicies {
    const valid: ValidPolicy[] = [];
    const invalid: ParsedPolicies['invalid'] = new Map();
    const seen = new Set<string>();
    for (const policy of this.policies.list()) {
      const name = policy.metadata?.name ?? '';
      const generation = policy.metadata?.generation ?? 0;
      const resourceVersion = policy.metadata?.resourceVersion ?? '';
      seen.add(name);
      let memo = this.#parsed.get(name);
      if (memo?.resourceVersion !== resourceVersion) {
        const parsed = parsePolicySpec(policy.spec);
        memo = {
          resourceVersion,
          result: parsed.ok ? { name, generation, spec: parsed.value } : parsed.errors,
        };
        this.#parsed.set(name, memo);
      }
      if (Array.isArray(memo.result)) invalid.set(name, { generation, errors: memo.result });
      else valid.push(memo.result);
    }
    for (const name of this.#parsed.keys()) if (!seen.has(name)) this.#parsed.delete(name);
    return { valid, invalid };
  }
}
