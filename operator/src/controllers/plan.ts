// What a policy wants for one Deployment, computed the same way by the controller that writes
// Deployments and by the one that reports status: cache in, plan out, no I/O. The latency is
// the estimate the leader's refresher published (latency/), read synchronously.
import type { V1Deployment } from '@kubernetes/client-node';
import type { Estimate } from '../latency/estimates.ts';
import { carriedConflict } from '../policy/conflicts.ts';
import { desiredSettings } from '../policy/desired.ts';
import { type DiffResult, diffDeployment } from '../policy/diff.ts';
import { deploymentKey } from '../policy/match.ts';
import {
  type AppliedRecord,
  ownedFields,
  ownsNothing,
  recordFor,
  retainOwnedFields,
  withMirrorAnnotations,
  withoutOwnedFields,
} from '../policy/ownership.ts';
import { probeSatisfies, regularContainers } from '../policy/podspec.ts';
import type {
  AnnotationError,
  ClusterFacts,
  LatencyObservation,
  ProbeVerdictLookup,
  ShutdownPlan,
  ValidPolicy,
} from '../policy/types.ts';
import { deploymentUid } from '../probes/verifier.ts';

export type WorkloadPlan =
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

export function planWorkload(deployment: V1Deployment, policy: ValidPolicy, deps: PlanDeps): WorkloadPlan {
  const killedAt = deps.shutdowns?.killedAt(deploymentKey(deployment));
  const { observation, estimate } = latencyFor(deployment, policy, deps.estimates);
  const record = ownedFields(deployment);
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
}

interface MemoEntry {
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
  result: WorkloadPlan;
}

function sameSources(a: PlanDeps, b: PlanDeps): boolean {
  return (
    a.estimates === b.estimates && a.facts === b.facts && a.probes === b.probes && a.shutdowns === b.shutdowns
  );
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
export class PlanMemo {
  readonly #entries = new WeakMap<object, MemoEntry>();

  plan(deployment: V1Deployment, policy: ValidPolicy, deps: PlanDeps): WorkloadPlan {
    const key = deploymentKey(deployment);
    const policyId = `${policy.name}@${policy.generation}`;
    const estimate = deps.estimates.get(key);
    const killedAt = deps.shutdowns?.killedAt(key);
    const parts = plannedParts(deployment);
    const memoKey = deployment.spec ?? deployment;
    const entry = this.#entries.get(memoKey);
    if (
      entry?.policy === policyId &&
      entry.parts.every((part, i) => part === parts[i]) &&
      sameSources(entry.deps, deps) &&
      entry.estimate === estimate &&
      entry.killedAt === killedAt &&
      this.#sameVerdicts(deployment, deps, entry.verdicts)
    )
      return entry.result;
    const verdicts: MemoEntry['verdicts'] = [];
    const probes = deps.probes;
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
    const result = planWorkload(deployment, policy, recording);
    this.#entries.set(memoKey, { parts, policy: policyId, deps, estimate, killedAt, verdicts, result });
    return result;
  }

  /** Probe verdicts expire and arrive: the ones the plan read must read the same now. */
  #sameVerdicts(deployment: V1Deployment, deps: PlanDeps, verdicts: MemoEntry['verdicts']): boolean {
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
