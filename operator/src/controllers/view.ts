// The operator's read side: the informer caches every controller reads, the policies parsed
// once per resourceVersion, and the indexes kept from cache events so that no reconcile scans
// every Deployment: which policies select each Deployment (and each policy's Deployments), and
// which Deployments carry a rollout or a failure of the operator's (what the budget counts).
import type { KubernetesObject, V1Deployment, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import {
  type FieldError,
  type GracefulShutdownPolicyStatus,
  type LabelSelector,
  parsePolicySpec,
} from '../api/policy.ts';
import type { EventHandlers, Informer } from '../kube/informer.ts';
import { rolloutCompleted } from '../policy/budget.ts';
import { deploymentKey, deploymentNamespace, labelSelectorMatches, policySelects } from '../policy/match.ts';
import { readAppliedRecord } from '../policy/ownership.ts';
import { type CachedService, serviceSelects } from '../policy/protocols.ts';
import type { RecordSeal } from '../policy/record-seal.ts';
import { owningDeployment } from '../policy/shutdowns.ts';
import type { ValidPolicy } from '../policy/types.ts';
import { ownedByDeployment } from '../probes/verifier.ts';

/** A policy as stored: the spec is unknown until parsed (an old CRD may let anything through). */
export interface PolicyObject extends KubernetesObject {
  spec?: unknown;
  status?: GracefulShutdownPolicyStatus;
}

export interface ParsedPolicies {
  valid: ValidPolicy[];
  invalid: Map<string, { generation: number; errors: FieldError[] }>;
}

/** The index by namespace, of the Deployment, Service and pod caches. */
export const BY_NAMESPACE = 'namespace';
/** The index of the pod cache by the Deployment owning the pod's ReplicaSet (namespace/name). */
const BY_DEPLOYMENT = 'deployment';

/** The informer surface the view reads and indexes (tests substitute a map-backed one). */
export type ViewInformer<T extends KubernetesObject> = Pick<
  Informer<T>,
  'get' | 'values' | 'keys' | 'addHandlers' | 'byIndex' | 'addIndex' | 'hasSynced'
>;

/**
 * Which policies select a Deployment changed (or it changed while selected): the policies
 * that selected it before or do now, whose status must be computed again; `selectionChanged`
 * when who selects it changed (not only the Deployment).
 */
export type SelectionListener = (
  key: string,
  policies: ReadonlySet<string>,
  selectionChanged: boolean,
) => void;

export class ClusterView {
  readonly deployments: Informer<V1Deployment>;
  readonly namespaces: Informer<V1Namespace>;
  readonly policies: Informer<PolicyObject>;
  /** Services (trimmed: selector and ports), whose ports say what a container port speaks. */
  readonly services: Informer<V1Service> | undefined;
  /** Pods of Deployments (trimmed), for the Scrape source and probe checks. */
  readonly pods: Informer<V1Pod> | undefined;
  readonly #serviceListeners: ((keys: string[]) => void)[] = [];
  readonly #parsed = new Map<string, { resourceVersion: string; result: ValidPolicy | FieldError[] }>();
  /** key -> names of the valid policies selecting the Deployment. */
  readonly #selecting = new Map<string, readonly string[]>();
  /** policy name -> keys of the Deployments it selects. */
  readonly #selected = new Map<string, Set<string>>();
  /** policy name -> keys whose applied record names an unfinished rollout or a failure of it. */
  readonly #rollouts = new Map<string, Set<string>>();
  readonly #rolloutPolicy = new Map<string, string>();
  readonly #seal: RecordSeal | undefined;
  /** What the selection was last computed from: the valid policies' names and generations. */
  #selectionSignature = '';
  readonly #listeners: SelectionListener[] = [];
  readonly #rolloutListeners: ((policy: string) => void)[] = [];
  readonly #deploymentSubscribers: EventHandlers<V1Deployment>[] = [];
  readonly #policySubscribers: EventHandlers<PolicyObject>[] = [];

  constructor(
    informers: {
      deployments: ViewInformer<V1Deployment>;
      namespaces: ViewInformer<V1Namespace>;
      policies: ViewInformer<PolicyObject>;
      /** Omitted: no Services are read (a port's protocol comes from its own name alone). */
      services?: ViewInformer<V1Service>;
      /** Omitted: no pods are read (podsOf and podsIn find none). */
      pods?: ViewInformer<V1Pod>;
    },
    options: {
      /** Checks the records' seals: only a sealed rollout or failure enters rolloutsOf. */
      seal?: RecordSeal;
    } = {},
  ) {
    this.#seal = options.seal;
    this.deployments = informers.deployments as Informer<V1Deployment>;
    this.namespaces = informers.namespaces as Informer<V1Namespace>;
    this.policies = informers.policies as Informer<PolicyObject>;
    this.services = informers.services as Informer<V1Service> | undefined;
    this.pods = informers.pods as Informer<V1Pod> | undefined;
    this.deployments.addIndex(BY_NAMESPACE, (d) => [deploymentNamespace(d)]);
    this.pods?.addIndex(BY_DEPLOYMENT, (pod) => [`${pod.metadata?.namespace}/${owningDeployment(pod)}`]);
    this.pods?.addIndex(BY_NAMESPACE, (pod) => [pod.metadata?.namespace ?? '']);
    if (this.services) {
      this.services.addIndex(BY_NAMESPACE, (service) => [service.metadata?.namespace ?? '']);
      this.services.addHandlers({
        onAdd: (service) => this.#serviceChanged(service),
        onUpdate: (service, old) => {
          if (canonicalService(service) !== canonicalService(old)) this.#serviceChanged(service, old);
        },
        onDelete: (service) => this.#serviceChanged(service),
      });
    }
    // Controllers subscribe through the view (onDeployment, onPolicy): their handlers run after
    // the indexes are current, whatever the order of registration.
    this.deployments.addHandlers(
      indexThenTell((d, present) => this.#deploymentChanged(d, present), this.#deploymentSubscribers),
    );
    this.namespaces.addHandlers({
      onAdd: (ns) => this.#reselectNamespace(ns.metadata?.name),
      onUpdate: (ns, old) => {
        if (JSON.stringify(ns.metadata?.labels ?? {}) !== JSON.stringify(old.metadata?.labels ?? {}))
          this.#reselectNamespace(ns.metadata?.name);
      },
    });
    this.policies.addHandlers(
      indexThenTell(() => this.#reselectAllIfPoliciesChanged(), this.#policySubscribers),
    );
    // What the caches hold already (a view made over started informers, tests).
    this.#selectionSignature = this.#policiesSignature();
    for (const deployment of this.deployments.values()) this.#deploymentChanged(deployment, true);
  }

  /** Deployment events, after the view's indexes took them in. */
  onDeployment(handlers: EventHandlers<V1Deployment>): void {
    this.#deploymentSubscribers.push(handlers);
  }

  /** Policy events, after the selection took them in. */
  onPolicy(handlers: EventHandlers<PolicyObject>): void {
    this.#policySubscribers.push(handlers);
  }

  /** Called on every change of who selects a Deployment, and on every change of a selected one. */
  onSelectionChange(listener: SelectionListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Called with a policy when a Deployment leaves its rollouts (`rolloutsOf`: the rollout
   * finished, the failure is gone, the record changed or the Deployment went) or a Deployment
   * among them is no longer selected by it: what the policy's budget counted may have freed a slot.
   */
  onRolloutEnded(listener: (policy: string) => void): void {
    this.#rolloutListeners.push(listener);
  }

  /**
   * Called with the keys of the Deployments whose pod template a Service selects (before or
   * after the change) when its selector or ports change: what their plans read of it changed.
   */
  onServicesChanged(listener: (deploymentKeys: string[]) => void): void {
    this.#serviceListeners.push(listener);
  }

  /** The cached Services of a namespace, as planning reads them (controllers/plan.ts ServiceReader). */
  servicesIn(namespace: string): CachedService[] {
    if (!this.services) return [];
    return this.services.byIndex(BY_NAMESPACE, namespace).map(cachedService);
  }

  #serviceChanged(service: V1Service, old?: V1Service): void {
    const namespace = service.metadata?.namespace ?? '';
    const selectors = [cachedService(service), ...(old ? [cachedService(old)] : [])];
    const keys = this.deployments
      .byIndex(BY_NAMESPACE, namespace)
      .filter((d) => selectors.some((s) => serviceSelects(s, d.spec?.template?.metadata?.labels)))
      .map(deploymentKey);
    if (keys.length > 0) for (const listener of this.#serviceListeners) listener(keys);
  }

  /** A Deployment's pods from the cache: its selector's, owned by its ReplicaSets. */
  podsOf(deployment: V1Deployment): V1Pod[] {
    const selector = deployment.spec?.selector;
    if (!this.pods || selector === undefined) return [];
    return this.pods
      .byIndex(BY_DEPLOYMENT, deploymentKey(deployment))
      .filter(
        (p) =>
          labelSelectorMatches(selector as LabelSelector, p.metadata?.labels) &&
          ownedByDeployment(p, deployment),
      );
  }

  /** The cached pods (of Deployments) of a namespace. */
  podsIn(namespace: string): V1Pod[] {
    return this.pods?.byIndex(BY_NAMESPACE, namespace) ?? [];
  }

  namespaceLabels(namespace: string | undefined): Record<string, string> | undefined {
    return namespace === undefined ? undefined : this.namespaces.get(namespace)?.metadata?.labels;
  }

  /** The names of the valid policies selecting the Deployment (policy/match.ts policySelects). */
  policiesSelecting(key: string): readonly string[] {
    return this.#selecting.get(key) ?? [];
  }

  /** The Deployments the policy selects, from the index (no scan). */
  *selectedBy(policy: string): Generator<V1Deployment> {
    // The keys as they are now: a caller pausing between items (the status pass yields to the
    // event loop) must not meet a key the index removed and added again meanwhile a second time.
    for (const key of [...(this.#selected.get(policy) ?? [])]) {
      const deployment = this.deployments.get(key);
      if (deployment !== undefined) yield deployment;
    }
  }

  selectedCount(policy: string): number {
    return this.#selected.get(policy)?.size ?? 0;
  }

  /**
   * Keys of the Deployments whose applied record names an unfinished rollout or a failure of
   * this policy: the only ones whose rollout state can take budget or open the breaker.
   */
  rolloutsOf(policy: string): ReadonlySet<string> {
    return this.#rollouts.get(policy) ?? new Set();
  }

  /** Every policy in the cache, parsed with the operator's own validation (memoized). */
  parsedPolicies(): ParsedPolicies {
    const valid: ValidPolicy[] = [];
    const invalid: ParsedPolicies['invalid'] = new Map();
    const seen = new Set<string>();
    for (const policy of this.policies.values()) {
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

  #deploymentChanged(deployment: V1Deployment, present: boolean): void {
    const key = deploymentKey(deployment);
    this.#indexRollout(key, present ? deployment : undefined);
    const before = this.#selecting.get(key) ?? [];
    const after = present ? this.#select(deployment, this.parsedPolicies().valid) : [];
    this.#setSelection(key, after);
    // Its policies' verdicts change with the Deployment, whether they still select it or not.
    this.#notify(key, new Set([...before, ...after]), !sameNames(before, after));
  }

  #select(deployment: V1Deployment, policies: readonly ValidPolicy[]): string[] {
    const labels = this.namespaceLabels(deployment.metadata?.namespace);
    return policies.filter((p) => policySelects(p, deployment, labels)).map((p) => p.name);
  }

  #setSelection(key: string, names: readonly string[]): void {
    if (sameNames(this.#selecting.get(key) ?? [], names)) return;
    for (const name of this.#selecting.get(key) ?? []) {
      const keys = this.#selected.get(name);
      keys?.delete(key);
      if (keys?.size === 0) this.#selected.delete(name);
      if (!names.includes(name) && this.#rollouts.get(name)?.has(key)) this.#rolloutEnded(name);
    }
    if (names.length === 0) {
      this.#selecting.delete(key);
      return;
    }
    this.#selecting.set(key, names);
    for (const name of names) {
      const keys = this.#selected.get(name) ?? new Set<string>();
      keys.add(key);
      this.#selected.set(name, keys);
    }
  }

  /** Selects the given Deployments again; tells the listeners of those whose selection changed. */
  #reselect(deployments: Iterable<V1Deployment>): void {
    const valid = this.parsedPolicies().valid;
    for (const deployment of deployments) {
      const key = deploymentKey(deployment);
      const before = this.#selecting.get(key) ?? [];
      const after = this.#select(deployment, valid);
      if (sameNames(before, after)) continue;
      this.#setSelection(key, after);
      this.#notify(key, new Set([...before, ...after]), true);
    }
  }

  #reselectNamespace(namespace: string | undefined): void {
    if (namespace !== undefined) this.#reselect(this.deployments.byIndex(BY_NAMESPACE, namespace));
  }

  #policiesSignature(): string {
    return this.parsedPolicies()
      .valid.map((p) => `${p.name}@${p.generation}`)
      .sort()
      .join(',');
  }

  /** A status write changes a policy's resourceVersion, not what it selects: only a new generation counts. */
  #reselectAllIfPoliciesChanged(): void {
    const signature = this.#policiesSignature();
    if (signature === this.#selectionSignature) return;
    this.#selectionSignature = signature;
    this.#reselect(this.deployments.values());
  }

  #indexRollout(key: string, deployment: V1Deployment | undefined): void {
    const before = this.#rolloutPolicy.get(key);
    if (before !== undefined) {
      this.#rollouts.get(before)?.delete(key);
      this.#rolloutPolicy.delete(key);
    }
    const record = deployment === undefined ? undefined : readAppliedRecord(deployment, this.#seal);
    const unfinished =
      deployment !== undefined &&
      record?.rollout !== undefined &&
      !rolloutCompleted(deployment, record.rollout.generation);
    if (record && (unfinished || record.failure !== undefined)) {
      const keys = this.#rollouts.get(record.policy) ?? new Set<string>();
      keys.add(key);
      this.#rollouts.set(record.policy, keys);
      this.#rolloutPolicy.set(key, record.policy);
    }
    if (before !== undefined && this.#rolloutPolicy.get(key) !== before) this.#rolloutEnded(before);
  }

  #rolloutEnded(policy: string): void {
    for (const listener of this.#rolloutListeners) listener(policy);
  }

  #notify(key: string, policies: ReadonlySet<string>, selectionChanged: boolean): void {
    if (policies.size === 0) return;
    for (const listener of this.#listeners) listener(key, policies, selectionChanged);
  }
}

/** Handlers that update the view's indexes, then tell its subscribers. */
function indexThenTell<T extends KubernetesObject>(
  index: (object: T, present: boolean) => void,
  subscribers: readonly EventHandlers<T>[],
): EventHandlers<T> {
  return {
    onAdd: (object) => {
      index(object, true);
      for (const s of subscribers) s.onAdd?.(object);
    },
    onUpdate: (object, old) => {
      index(object, true);
      for (const s of subscribers) s.onUpdate?.(object, old);
    },
    onDelete: (object) => {
      index(object, false);
      for (const s of subscribers) s.onDelete?.(object);
    },
  };
}

/** The same policy names in the same order (#select keeps the policies' order). */
function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, i) => b[i] === name);
}

/** The parts of a Service planning reads, per cached object (cached objects are never mutated). */
const cachedServices = new WeakMap<V1Service, CachedService>();

export function cachedService(service: V1Service): CachedService {
  let cached = cachedServices.get(service);
  if (cached === undefined) {
    cached = {
      namespace: service.metadata?.namespace ?? '',
      name: service.metadata?.name ?? '',
      ...(service.spec?.selector ? { selector: service.spec.selector } : {}),
      ports: (service.spec?.ports ?? []).map((p) => ({
        port: p.port,
        ...(p.name ? { name: p.name } : {}),
        ...(p.targetPort !== undefined ? { targetPort: p.targetPort as number | string } : {}),
        ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
        ...(p.protocol ? { protocol: p.protocol } : {}),
      })),
    };
    cachedServices.set(service, cached);
  }
  return cached;
}

function canonicalService(service: V1Service): string {
  return JSON.stringify(cachedService(service));
}
