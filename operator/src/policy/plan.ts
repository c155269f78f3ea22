// What a policy wants for one Deployment, computed the same way by the controller that writes
// Deployments, the one that reports status, the admission webhook and `gsp audit`: cache in,
// plan out, no I/O. The latency is
// the estimate the leader's refresher published (latency/), read synchronously.
import type { V1Deployment, V1Probe } from '@kubernetes/client-node';
import { isTemplateRolloutInProgress } from './budget.ts';
import { carriedConflict } from './conflicts.ts';
import { desiredSettings } from './desired.ts';
import { type DiffResult, diffDeployment } from './diff.ts';
import { deploymentKey, deploymentUid } from './match.ts';
import {
  type AppliedRecord,
  ownedFields,
  ownsNothing,
  recordFor,
  retainOwnedFields,
  withMirrorAnnotations,
  withoutOwnedFields,
} from './ownership.ts';
import { canonicalJson, probeSatisfies, regularContainers } from './podspec.ts';
import { type CachedService, servicePortsFor } from './protocols.ts';
import type {
  AnnotationError,
  ClusterFacts,
  Estimate,
  LatencyObservation,
  ProbeVerdictLookup,
  ServicePortLookup,
  ShutdownPlan,
  ValidPolicy,
} from './types.ts';

export type PlanResult =
  | {
      ok: true;
      plan: ShutdownPlan;
      observation: LatencyObservation;
      /** What the operator owns now (ownership.ts ownedFields); undefined when nothing. */
      record: AppliedRecord | undefined;
      /** What it would own after writing the plan. */
      nextRecord: AppliedRecord;
      diff: DiffResult;
      /** The latency estimate behind the plan; undefined with source None or before the first refresh. */
      estimate: Estimate | undefined;
    }
  | { ok: false; errors: AnnotationError[]; observation: LatencyObservation; estimate: Estimate | undefined };

/** What planning reads of the latency estimates (latency/estimates.ts's EstimateCache). */
export interface EstimateReader {
  get(deploymentKey: string): Estimate | undefined;
}

/** The observation planning uses: the published estimate, or why there is none. */
export function latencyFor(
  deployment: V1Deployment,
  policy: ValidPolicy,
  estimates: EstimateReader,
): { observation: LatencyObservation; estimate: Estimate | undefined } {
  const source = policy.spec.observedLatency.source;
  if (source === 'None')
    return {
      observation: { known: false, source, reason: 'observedLatency.source is None' },
      estimate: undefined,
    };
  const estimate = estimates.get(deploymentKey(deployment));
  return {
    observation: estimate?.published ?? {
      known: false,
      source,
      reason: `not observed yet: waiting for the first ${source} refresh`,
    },
    estimate,
  };
}

/** What planning reads of the probe verdicts (probes/verifier.ts's ProbeVerifier). */
export interface ProbeVerdictReader {
  lookup(deploymentUid: string): ProbeVerdictLookup;
}

/** What planning reads of the shutdowns observed (controllers/shutdown-history.ts). */
export interface ShutdownReader {
  /** The longest grace period at which this Deployment's pods were killed, if any. */
  killedAt(deploymentKey: string): number | undefined;
}

/** What planning reads of the Services (the view's Service cache). */
export interface ServiceReader {
  /** The cached Services of one namespace. */
  inNamespace(namespace: string): Iterable<CachedService>;
}

/** The Service ports reaching a container port of the Deployment's pod template (protocols.ts). */
export function servicePortLookup(deployment: V1Deployment, services: ServiceReader): ServicePortLookup {
  const namespace = deployment.metadata?.namespace ?? '';
  const labels = deployment.spec?.template?.metadata?.labels;
  return (port) => servicePortsFor(services.inNamespace(namespace), namespace, labels, port);
}

/** The readiness probes the operator owns on the Deployment now, by container. */
function ownedProbes(deployment: V1Deployment, record: AppliedRecord | undefined): Record<string, V1Probe> {
  const probes: Record<string, V1Probe> = {};
  for (const container of regularContainers(deployment))
    if (record?.containers[container.name]?.readinessProbe && container.readinessProbe)
      probes[container.name] = container.readinessProbe;
  return probes;
}

export interface PlanOptions {
  /**
   * The pod template is changing for another reason (an UPDATE at admission). Omitted: whether
   * a template rollout is in progress (policy/budget.ts isTemplateRolloutInProgress).
   */
  templateChanging?: boolean;
  /** Reads the Service ports instead of deps.services (the cache records what was read). */
  servicePorts?: ServicePortLookup;
}

export function planWorkload(
  deployment: V1Deployment,
  policy: ValidPolicy,
  deps: PlanDeps,
  options: PlanOptions = {},
): PlanResult {
  const killedAt = deps.shutdowns?.killedAt(deploymentKey(deployment));
  const { observation, estimate } = latencyFor(deployment, policy, deps.estimates);
  const record = ownedFields(deployment);
  const ownProbes = ownedProbes(deployment, record);
  // Plan against the Deployment as it would be without the operator, so that IfMissing means
  // "the user set none" and the operator's own earlier values can follow a new recommendation.
  const result = desiredSettings({
    policy,
    deployment: withoutOwnedFields(deployment, record),
    observation,
    facts: deps.facts,
    canLower: estimate?.canLower ?? false,
    ...(killedAt === undefined ? {} : { shutdownKilled: { graceSeconds: killedAt } }),
    ...(deps.probes ? { probeVerdict: deps.probes.lookup(deploymentUid(deployment)) } : {}),
    ...(options.servicePorts
      ? { servicePorts: options.servicePorts }
      : deps.services
        ? { servicePorts: servicePortLookup(deployment, deps.services) }
        : {}),
    ...(Object.keys(ownProbes).length > 0 ? { ownProbes } : {}),
    templateChanging: options.templateChanging ?? isTemplateRolloutInProgress(deployment),
    ...(record?.terminationGracePeriodSeconds !== undefined
      ? { previouslyApplied: { terminationGracePeriodSeconds: record.terminationGracePeriodSeconds } }
      : {}),
  });
  if (!result.ok) return { ok: false, errors: result.errors, observation, estimate };
  // Owned fields the plan leaves out are kept at their values, then the annotations mirroring
  // the grace period and preStop for the app are added where the write changes the template.
  const plan = withMirrorAnnotations(deployment, retainOwnedFields(deployment, record, result.plan));
  return {
    ok: true,
    plan,
    observation,
    record,
    nextRecord: recordFor(policy, plan),
    diff: diffDeployment(deployment, plan),
    estimate,
  };
}

export interface PlanDeps {
  estimates: EstimateReader;
  facts: ClusterFacts;
  probes?: ProbeVerdictReader;
  shutdowns?: ShutdownReader;
  /** Services, whose ports' names and appProtocols say what a container port speaks. */
  services?: ServiceReader;
}

interface CacheEntry {
  /** The Deployment's parts planning reads (status is not one), by identity. */
  parts: readonly unknown[];
  /** The policy's name and generation: its spec, as parsed, is a function of them. */
  policy: string;
  /** The sources planning read (one set per operator: both controllers share them). */
  deps: PlanDeps;
  estimate: Estimate | undefined;
  killedAt: number | undefined;
  /** The probe verdicts planning read, and what they were. */
  verdicts: { container: string; path: string; port: number | string; verdict: unknown }[];
  /** The Service ports planning read (per container port asked), and what they were. */
  servicePorts: { port: { containerPort: number; name?: string }; found: string }[];
  /** A template rollout was in progress (the probe upgrade waits for one); undefined: not read. */
  templateChanging: boolean | undefined;
  result: PlanResult;
}

function sameSources(a: PlanDeps, b: PlanDeps): boolean {
  return (
    a.estimates === b.estimates &&
    a.facts === b.facts &&
    a.probes === b.probes &&
    a.shutdowns === b.shutdowns &&
    a.services === b.services
  );
}

/** A container has a tcpSocket readiness probe (the operator's fallback, possibly). */
function hasTcpProbe(deployment: V1Deployment): boolean {
  return regularContainers(deployment).some((c) => c.readinessProbe?.tcpSocket !== undefined);
}

/** What planning reads of a Deployment: its identity, spec, labels, annotations and managedFields. */
function plannedParts(deployment: V1Deployment): unknown[] {
  const m = deployment.metadata;
  return [m?.uid, m?.namespace, m?.name, deployment.spec, m?.labels, m?.annotations, m?.managedFields];
}

/**
 * Plans once per change: the deployment controller and the status pass ask for the same plan
 * (the same Deployment spec and metadata, policy generation, latency estimate, kill and probe
 * verdicts), and the second gets the first's answer; a status pass re-plans only the
 * Deployments that changed. Kept per spec object (a WeakMap): the Deployment cache gives a
 * status update the previous version's spec and metadata objects (kube/informer.ts
 * shareUnchangedParts), so a rollout's status events are not planned again; a changed spec is
 * a new object, and the entry goes with the old one.
 */
export class PlanCache {
  readonly #entries = new WeakMap<object, CacheEntry>();
  readonly #services: ServiceReader | undefined;

  /** `services`: read by every plan whose deps name none (the controllers share one cache). */
  constructor(options: { services?: ServiceReader } = {}) {
    this.#services = options.services;
  }

  plan(deployment: V1Deployment, policy: ValidPolicy, given: PlanDeps): PlanResult {
    const deps: PlanDeps =
      given.services === undefined && this.#services !== undefined
        ? { ...given, services: this.#services }
        : given;
    const key = deploymentKey(deployment);
    const policyId = `${policy.name}@${policy.generation}`;
    const estimate = deps.estimates.get(key);
    const killedAt = deps.shutdowns?.killedAt(key);
    const parts = plannedParts(deployment);
    // Read only where a tcpSocket probe may be the operator's fallback (decideProbe): a
    // rollout's status events do not plan the other Deployments again.
    const templateChanging = hasTcpProbe(deployment) ? isTemplateRolloutInProgress(deployment) : undefined;
    const memoKey = deployment.spec ?? deployment;
    const entry = this.#entries.get(memoKey);
    if (
      entry?.policy === policyId &&
      entry.parts.every((part, i) => part === parts[i]) &&
      sameSources(entry.deps, deps) &&
      entry.estimate === estimate &&
      entry.killedAt === killedAt &&
      entry.templateChanging === templateChanging &&
      this.#sameVerdicts(deployment, deps, entry.verdicts) &&
      this.#sameServicePorts(deployment, deps, entry.servicePorts)
    )
      return entry.result;
    const verdicts: CacheEntry['verdicts'] = [];
    const servicePorts: CacheEntry['servicePorts'] = [];
    const { probes, services } = deps;
    const recording: PlanDeps = probes
      ? {
          ...deps,
          probes: {
            lookup: (uid) => {
              const lookup = probes.lookup(uid);
              return (container, path, port) => {
                const verdict = lookup(container, path, port);
                verdicts.push({ container, path, port, verdict });
                return verdict;
              };
            },
          },
        }
      : deps;
    const servicePortsRead: ServicePortLookup | undefined = services
      ? (port) => {
          const found = servicePortLookup(deployment, services)(port);
          servicePorts.push({ port, found: canonicalJson(found) });
          return found;
        }
      : undefined;
    const result = planWorkload(deployment, policy, recording, {
      ...(servicePortsRead ? { servicePorts: servicePortsRead } : {}),
    });
    this.#entries.set(memoKey, {
      parts,
      policy: policyId,
      deps,
      estimate,
      killedAt,
      verdicts,
      servicePorts,
      templateChanging,
      result,
    });
    return result;
  }

  /** Services come and go and change: the ports the plan read must read the same now. */
  #sameServicePorts(deployment: V1Deployment, deps: PlanDeps, read: CacheEntry['servicePorts']): boolean {
    if (read.length === 0) return true;
    if (!deps.services) return false;
    const lookup = servicePortLookup(deployment, deps.services);
    return read.every((r) => canonicalJson(lookup(r.port)) === r.found);
  }

  /** Probe verdicts expire and arrive: the ones the plan read must read the same now. */
  #sameVerdicts(deployment: V1Deployment, deps: PlanDeps, verdicts: CacheEntry['verdicts']): boolean {
    if (verdicts.length === 0) return true;
    const lookup = deps.probes?.lookup(deploymentUid(deployment));
    return verdicts.every((v) => lookup?.(v.container, v.path, v.port) === v.verdict);
  }
}

/**
 * The record a write that is not a new rollout of the operator's carries: the plan's, keeping
 * what the current record of the same policy says about the last rollout, a failure and a
 * recent conflict with another field manager (policy/conflicts.ts carriedConflict).
 */
export function recordToWrite(
  record: AppliedRecord | undefined,
  policy: ValidPolicy,
  nextRecord: AppliedRecord,
  now: number,
): AppliedRecord {
  const same = record?.policy === policy.name;
  const conflict = carriedConflict(record, policy, now);
  return {
    ...nextRecord,
    ...(same && record.rollout ? { rollout: record.rollout } : {}),
    ...(same && record.failure ? { failure: record.failure } : {}),
    ...(conflict ? { conflict } : {}),
  };
}

/** Same policy and same owned fields: rewriting the record would change nothing that matters. */
export function sameOwnership(a: AppliedRecord | undefined, b: AppliedRecord): boolean {
  if (!a) return ownsNothing(b);
  return (
    a.policy === b.policy &&
    a.terminationGracePeriodSeconds === b.terminationGracePeriodSeconds &&
    JSON.stringify(sortedContainers(a)) === JSON.stringify(sortedContainers(b)) &&
    JSON.stringify(sortedAnnotations(a)) === JSON.stringify(sortedAnnotations(b))
  );
}

function sortedAnnotations(record: AppliedRecord): string[] {
  return [...new Set(record.templateAnnotations ?? [])].sort();
}

function sortedContainers(record: AppliedRecord): [string, boolean, boolean][] {
  return Object.entries(record.containers)
    .map(([name, owned]): [string, boolean, boolean] => [name, !!owned.readinessProbe, !!owned.preStop])
    .sort((x, y) => x[0].localeCompare(y[0]));
}

/**
 * The httpGet readiness probes the plan writes where the container has no probe that already
 * satisfies it: what Verify checks on a running pod before the write.
 */
export function newProbes(
  deployment: V1Deployment,
  plan: ShutdownPlan,
): { container: string; path: string; port: number | string; timeoutMs: number }[] {
  const current = new Map(regularContainers(deployment).map((c) => [c.name, c]));
  return plan.containers.flatMap((c) => {
    const get = c.readinessProbe?.httpGet;
    if (!c.readinessProbe || !get || probeSatisfies(current.get(c.name)?.readinessProbe, c.readinessProbe))
      return [];
    return [
      {
        container: c.name,
        path: get.path ?? '/',
        port: get.port,
        timeoutMs: (c.readinessProbe.timeoutSeconds ?? 1) * 1000,
      },
    ];
  });
}
