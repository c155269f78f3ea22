// Verdicts per Deployment and the policy's status: what `kubectl get gsp` and the status show.
import type { V1Deployment } from '@kubernetes/client-node';
import {
  type Condition,
  type FieldError,
  type GracefulShutdownPolicyStatus,
  MAX_WORKLOADS_IN_STATUS,
  type ObservedLatency,
  PolicyConditionTypes,
  type PolicyMode,
  type Verdict,
  type WorkloadStatus,
} from '../api/policy.ts';
import { type PolicyRollouts, ROLLOUT_WAIT_REASONS, type RolloutDecision } from './budget.ts';
import { currentSettings, type DiffResult, type FieldChange } from './diff.ts';
import { deploymentNamespace } from './match.ts';
import type { AnnotationError, LatencyObservation, ShutdownPlan, ValidPolicy } from './types.ts';

/** Bound of WorkloadStatus.message in the schema. */
const MAX_MESSAGE = 1024;

/** What is known about one Deployment a policy selects, from that policy's point of view. */
export type VerdictInput =
  /** The Deployment carries gracefulshutdown.dev/exclude: "true". */
  | { kind: 'OptedOut'; deployment: V1Deployment }
  /** Another policy selecting it takes precedence. */
  | { kind: 'OtherPolicyWins'; deployment: V1Deployment; winner: ValidPolicy }
  /** Its per-Deployment annotations cannot be used: nothing can be computed. */
  | { kind: 'InvalidAnnotations'; deployment: V1Deployment; errors: AnnotationError[] }
  /** The policy governs it: the plan, how far the Deployment is from it, and (Enforce) why not yet applied. */
  | {
      kind: 'Planned';
      deployment: V1Deployment;
      policy: ValidPolicy;
      plan: ShutdownPlan;
      diff: DiffResult;
      observation: LatencyObservation;
      mode: PolicyMode;
      /** The rollout decision when the operator holds the write back (Enforce, non-compliant). */
      decision?: RolloutDecision;
      /** How fresh the observation is (undefined: source None, or nothing observed yet). */
      freshness?: LatencyFreshness;
      /** The operator wrote this policy's settings there (its record names the policy). */
      managed?: boolean;
      /** Why the record's sealed parts were ignored (ownership.ts readAppliedRecord). */
      recordRefused?: string;
    };

/** What status tells about a workload's latency beyond the observation planning used. */
export interface LatencyFreshness {
  /** The source's latest answer; differs from the observation when that one is kept. */
  latest: LatencyObservation;
  /** The observation is kept while the latest answers are not a trusted latency. */
  stale: boolean;
  /** When the observation planning uses was made. */
  observedTime: Date;
}

function truncate(message: string): string {
  return truncateTo(message, MAX_MESSAGE);
}

function truncateTo(message: string, max: number): string {
  return message.length <= max ? message : `${message.slice(0, max - 3)}...`;
}

function identity(deployment: V1Deployment): { namespace: string; name: string } {
  return { namespace: deploymentNamespace(deployment), name: deployment.metadata?.name ?? '' };
}

/** metav1.Time: RFC 3339 in whole seconds, as the apiserver stores it (so re-reads compare equal). */
export function formatTime(time: Date): string {
  return time.toISOString().replace(/\.[0-9]+Z$/, 'Z');
}

/** The CamelCase reason for the most important change: grace first (SIGKILL mid-drain), then preStop, then probe. */
/** The grace period changes because pods were killed at the current one (a ShutdownKilled note). */
function killedRaise(plan: ShutdownPlan, fields: FieldChange[]): boolean {
  return (
    plan.notes.some((n) => n.reason === 'ShutdownKilled') &&
    fields.some((f) => f.field === 'terminationGracePeriodSeconds')
  );
}

function changeReason(fields: FieldChange[]): string {
  const grace = fields.find((f) => f.field === 'terminationGracePeriodSeconds');
  if (grace !== undefined)
    return Number(grace.from) < Number(grace.to) ? 'GracePeriodTooShort' : 'GracePeriodMismatch';
  const preStop = fields.find((f) => f.field === 'preStop');
  if (preStop !== undefined) return preStop.missing ? 'PreStopMissing' : 'PreStopMismatch';
  const probe = fields.find((f) => f.field === 'readinessProbe');
  if (probe !== undefined) return probe.missing ? 'ReadinessProbeMissing' : 'ReadinessProbeMismatch';
  return 'NonCompliant';
}

function observedLatency(
  policy: ValidPolicy,
  observation: LatencyObservation,
  freshness: LatencyFreshness | undefined,
): ObservedLatency | undefined {
  // Nothing was observed on purpose: no entry rather than an empty one.
  if (observation.source === 'None') return undefined;
  const time = freshness === undefined ? {} : { observedTime: formatTime(freshness.observedTime) };
  const notes: string[] = [];
  if (freshness?.stale && !freshness.latest.known)
    notes.push(`kept while ${freshness.latest.source} fails: ${freshness.latest.reason}`);
  else if (freshness?.stale && freshness.latest.known)
    notes.push(`kept: the latest answer has ${freshness.latest.samples} requests, fewer than minSamples`);
  if (observation.known) {
    if (observation.atLeast)
      notes.push(
        `the p${Math.round(observation.percentile * 1000) / 10} lies above the largest finite bucket: at least ${observation.seconds} s; the histogram's buckets are too small`,
      );
    if (observation.caveat) notes.push(observation.caveat);
    return {
      source: observation.source,
      ...(observation.preset ? { preset: observation.preset } : {}),
      percentile: observation.percentile,
      seconds: observation.seconds,
      samples: observation.samples,
      window: observation.window,
      ...time,
      ...(notes.length > 0 ? { message: truncateTo(notes.join('; '), 512) } : {}),
    };
  }
  const { percentile, window } = policy.spec.observedLatency;
  return {
    source: observation.source,
    percentile,
    samples: observation.samples ?? 0,
    window,
    ...time,
    message: truncateTo([observation.reason, ...notes].join('; '), 512),
  };
}

/** Why a governed workload's latency is not (freshly) observed, most severe first. */
export const LatencyProblems = ['SourceUnavailable', 'NoData', 'TooFewSamples', 'Pending'] as const;
export type LatencyProblem = (typeof LatencyProblems)[number];

/** The problem with a workload's latest answer, if any (undefined latest: not asked yet). */
export function latencyProblem(
  latest: LatencyObservation | undefined,
  minSamples: number,
): { problem: LatencyProblem; detail: string } | undefined {
  if (latest === undefined) return { problem: 'Pending', detail: 'not observed yet' };
  if (latest.known) {
    return latest.samples >= minSamples
      ? undefined
      : {
          problem: 'TooFewSamples',
          detail: `${latest.samples} requests, fewer than minSamples ${minSamples}`,
        };
  }
  if (latest.unavailable) return { problem: 'SourceUnavailable', detail: latest.reason };
  if (latest.samples !== undefined && latest.samples < minSamples)
    return { problem: 'TooFewSamples', detail: latest.reason };
  return { problem: 'NoData', detail: latest.reason };
}

/**
 * The LatencyObserved condition from the problems of each governed workload (undefined: fine).
 * True when every one is observed; Unknown when the only problem is that some are not observed
 * yet; False otherwise, with the most severe reason and how many are affected.
 */
export function latencyObservedCondition(
  source: LatencyObservation['source'],
  problems: readonly ({ problem: LatencyProblem; detail: string } | undefined)[],
): Omit<Condition, 'lastTransitionTime' | 'type' | 'observedGeneration'> | undefined {
  if (source === 'None' || problems.length === 0) return undefined;
  const total = problems.length;
  const byProblem = new Map<LatencyProblem, string[]>();
  for (const p of problems) if (p) byProblem.set(p.problem, [...(byProblem.get(p.problem) ?? []), p.detail]);
  if (byProblem.size === 0)
    return {
      status: 'True',
      reason: 'Observed',
      message: `${source} observes the latency of ${plural(total, 'Deployment', 'Deployments')}`,
    };
  const worst = LatencyProblems.find((p) => byProblem.has(p)) as LatencyProblem;
  const describe: Record<LatencyProblem, string> = {
    SourceUnavailable: `${source} could not be asked`,
    NoData: 'no latency data',
    TooFewSamples: 'too few requests in the window',
    Pending: 'not observed yet',
  };
  const parts = LatencyProblems.filter((p) => byProblem.has(p)).map((p) => {
    const details = byProblem.get(p) ?? [];
    return `${details.length} of ${total}: ${describe[p]} (${details[0]})`;
  });
  return {
    status: worst === 'Pending' ? 'Unknown' : 'False',
    reason: worst,
    message: truncateTo(
      `${parts.join('; ')}; a grace period the operator applied is never lowered on that account`,
      1024,
    ),
  };
}

/**
 * The status entry of one Deployment. Compliant: every field the policy would write already
 * has its value. NonCompliant: some differ; the reason names the most important (or, in
 * Enforce mode, why the write waits). Exempt: opted out or won by another policy. Unknown:
 * its annotations make the settings impossible to compute.
 */
export function workloadVerdict(input: VerdictInput): WorkloadStatus {
  const id = identity(input.deployment);
  switch (input.kind) {
    case 'OptedOut':
      return {
        ...id,
        verdict: 'Exempt',
        reason: 'OptedOut',
        message: 'annotated gracefulshutdown.dev/exclude: "true"',
      };
    case 'OtherPolicyWins':
      return {
        ...id,
        verdict: 'Exempt',
        reason: 'OtherPolicyWins',
        message: `policy ${input.winner.name} (priority ${input.winner.spec.priority}) takes precedence`,
      };
    case 'InvalidAnnotations':
      return {
        ...id,
        verdict: 'Unknown',
        reason: 'InvalidAnnotation',
        message: truncate(input.errors.map((e) => `${e.annotation}: ${e.message}`).join('; ')),
      };
    case 'Planned':
      return plannedVerdict(input);
  }
}

function plannedVerdict(input: Extract<VerdictInput, { kind: 'Planned' }>): WorkloadStatus {
  const { plan, diff, policy } = input;
  const latency = observedLatency(policy, input.observation, input.freshness);
  const common = {
    ...identity(input.deployment),
    recommended: plan.recommended,
    applied: currentSettings(input.deployment, plan.servingContainer),
    ...(latency === undefined ? {} : { observedLatency: latency }),
  };
  const notes = [
    ...(input.recordRefused === undefined
      ? []
      : [
          `the gracefulshutdown.dev/applied record was refused (${input.recordRefused}); its rollout, failure and conflict are ignored`,
        ]),
    ...plan.notes.map((n) => n.message),
  ];
  // The probe the policy wants is kept out because the app does not answer it: a gap to fix
  // (serve the path, or name another with gracefulshutdown.dev/readiness-path), not compliance.
  // A rollout of the operator's that failed (onFailure Pause keeps its values): the settings
  // are written, yet no pod runs with them.
  const failed =
    input.mode === 'Enforce' && input.decision?.kind === 'Wait' && input.decision.reason === 'RolloutFailed';
  if (diff.compliant && failed && input.decision?.kind === 'Wait')
    return {
      ...common,
      verdict: 'NonCompliant',
      reason: 'RolloutFailed',
      message: truncate([input.decision.message, plan.graceExplanation, plan.drain.message].join('; ')),
    };
  const unverified = plan.notes.find((n) => n.reason === 'ProbeUnverified');
  if (diff.compliant && unverified)
    return {
      ...common,
      verdict: 'NonCompliant',
      reason: 'ProbeUnverified',
      message: truncate([unverified.message, plan.graceExplanation, plan.drain.message].join('; ')),
    };
  if (diff.compliant) {
    return {
      ...common,
      verdict: 'Compliant',
      reason: input.managed ? 'SettingsApplied' : 'SettingsMatch',
      message: truncate([plan.graceExplanation, plan.drain.message, ...notes].join('; ')),
    };
  }
  const waiting = input.mode === 'Enforce' && input.decision?.kind === 'Wait' ? input.decision : undefined;
  const parts = waiting === undefined ? diff.changes : [waiting.message, ...diff.changes];
  return {
    ...common,
    verdict: 'NonCompliant',
    reason:
      waiting?.reason ?? (killedRaise(plan, diff.fields) ? 'ShutdownKilled' : changeReason(diff.fields)),
    message: truncate([...parts, plan.graceExplanation, plan.drain.message, ...notes].join('; ')),
  };
}

const VERDICT_ORDER: Record<Verdict, number> = { NonCompliant: 0, Unknown: 1, Compliant: 2, Exempt: 3 };

/** Non-compliant first, then unknown, compliant, exempt; within each, by namespace then name. */
export function compareWorkloads(a: WorkloadStatus, b: WorkloadStatus): number {
  const byVerdict = VERDICT_ORDER[a.verdict] - VERDICT_ORDER[b.verdict];
  if (byVerdict !== 0) return byVerdict;
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * A condition whose lastTransitionTime moves only when its status changes, as metav1 wants: a
 * new reason or message alone keeps the previous time.
 */
function condition(
  previous: GracefulShutdownPolicyStatus | undefined,
  fields: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
): Condition {
  const before = previous?.conditions?.find((c) => c.type === fields.type);
  const lastTransitionTime =
    before !== undefined && before.status === fields.status ? before.lastTransitionTime : formatTime(now);
  return { ...fields, lastTransitionTime };
}

function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

export interface PolicyStatusInput {
  policy: ValidPolicy;
  /** Every Deployment the policy selects (its own, and exempt ones), in any order. */
  workloads: WorkloadStatus[];
  now: Date;
  previous?: GracefulShutdownPolicyStatus;
  /** The LatencyObserved condition's fields (latencyObservedCondition); absent with source None. */
  latency?: Omit<Condition, 'lastTransitionTime' | 'type' | 'observedGeneration'>;
  /** Enforce: the failed rollouts holding namespaces, and the policy's breaker (budget.ts policyRollouts). */
  rollouts?: Pick<PolicyRollouts, 'held' | 'breaker'>;
  /** Matched Deployments whose pods were seen killed at their deadline (shown when any). */
  killed?: number;
}

const WAIT_REASONS: ReadonlySet<string> = new Set(ROLLOUT_WAIT_REASONS);

/** Applied, waiting (by reason) and blocked-by-breaker counts, Enforce only. */
function enforcementCounts(workloads: readonly WorkloadStatus[]) {
  const waitingReasons: Record<string, number> = {};
  let waiting = 0;
  let applied = 0;
  for (const w of workloads) {
    if (w.verdict === 'Compliant' && w.reason === 'SettingsApplied') applied++;
    if (w.verdict !== 'NonCompliant' || !WAIT_REASONS.has(w.reason)) continue;
    waiting++;
    waitingReasons[w.reason] = (waitingReasons[w.reason] ?? 0) + 1;
  }
  const blockedByBreaker = (waitingReasons.BreakerOpen ?? 0) + (waitingReasons.RolloutFailed ?? 0);
  return {
    applied,
    waiting,
    waitingReasons: Object.entries(waitingReasons)
      .map(([reason, count]) => ({ reason, count }))
      .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)),
    blockedByBreaker,
  };
}

/**
 * The status of a valid policy: counts over all workloads (matched = compliant + nonCompliant +
 * unknown; exempt apart), at most MAX_WORKLOADS_IN_STATUS entries non-compliant first, and the
 * Accepted and Compliant conditions.
 */
export function summarizePolicyStatus(input: PolicyStatusInput): GracefulShutdownPolicyStatus {
  const { policy, now, previous } = input;
  const count = (verdict: Verdict) => input.workloads.filter((w) => w.verdict === verdict).length;
  const compliant = count('Compliant');
  const nonCompliant = count('NonCompliant');
  const unknown = count('Unknown');
  const exempt = count('Exempt');
  const matched = compliant + nonCompliant + unknown;
  const generation = policy.generation;
  const enforce = policy.spec.mode === 'Enforce';

  let compliance: Omit<Condition, 'lastTransitionTime' | 'type'>;
  if (matched === 0) {
    compliance = { status: 'True', reason: 'NoWorkloads', message: 'the policy matches no Deployment' };
  } else if (nonCompliant > 0) {
    compliance = {
      status: 'False',
      reason: 'NonCompliantWorkloads',
      message: `${nonCompliant} of ${plural(matched, 'matched Deployment', 'matched Deployments')} ${nonCompliant === 1 ? 'is' : 'are'} not compliant`,
    };
  } else if (unknown > 0) {
    compliance = {
      status: 'Unknown',
      reason: 'UnknownWorkloads',
      message: `${unknown} of ${plural(matched, 'matched Deployment', 'matched Deployments')} could not be evaluated`,
    };
  } else {
    compliance = {
      status: 'True',
      reason: 'AllCompliant',
      message: `${plural(matched, 'matched Deployment is', 'matched Deployments are')} compliant`,
    };
  }

  const workloads = [...input.workloads].sort(compareWorkloads).slice(0, MAX_WORKLOADS_IN_STATUS);
  return {
    observedGeneration: generation,
    conditions: [
      condition(
        previous,
        {
          type: PolicyConditionTypes.Accepted,
          status: 'True',
          reason: 'Valid',
          message: 'the spec is valid',
          observedGeneration: generation,
        },
        now,
      ),
      condition(
        previous,
        { type: PolicyConditionTypes.Compliant, ...compliance, observedGeneration: generation },
        now,
      ),
      ...(input.latency === undefined
        ? []
        : [
            condition(
              previous,
              {
                type: PolicyConditionTypes.LatencyObserved,
                ...input.latency,
                observedGeneration: generation,
              },
              now,
            ),
          ]),
      ...(enforce ? [condition(previous, breakerCondition(input.rollouts, generation), now)] : []),
    ],
    counts: {
      matched,
      compliant,
      nonCompliant,
      exempt,
      ...(enforce ? enforcementCounts(input.workloads) : {}),
      ...(input.killed ? { killed: input.killed } : {}),
    },
    ...(enforce && input.rollouts && input.rollouts.held.size > 0
      ? { heldNamespaces: [...input.rollouts.held.keys()].sort().slice(0, 100) }
      : {}),
    workloads,
  };
}

function breakerCondition(
  rollouts: PolicyStatusInput['rollouts'],
  generation: number,
): Omit<Condition, 'lastTransitionTime'> {
  const type = PolicyConditionTypes.RolloutBreakerOpen;
  const breaker = rollouts?.breaker;
  if (breaker !== undefined)
    return {
      type,
      status: 'True',
      reason: 'RolloutFailed',
      message: truncateTo(
        `${breaker.message}; no new rollouts in any namespace until the policy changes or those Deployments' pod templates do`,
        1024,
      ),
      observedGeneration: generation,
    };
  const held = [...(rollouts?.held ?? new Map()).entries()];
  if (held.length > 0)
    return {
      type,
      status: 'False',
      reason: 'NamespacesHeld',
      message: truncateTo(
        `no new rollouts in ${plural(held.length, 'namespace', 'namespaces')} where one the operator started failed (${held
          .map(([namespace, hold]) => `${namespace}: ${hold.key}: ${hold.message}`)
          .join('; ')}); the others go on`,
        1024,
      ),
      observedGeneration: generation,
    };
  return {
    type,
    status: 'False',
    reason: 'NoFailedRollouts',
    message: 'no rollout the operator started has failed',
    observedGeneration: generation,
  };
}

/**
 * The status of a policy whose spec is invalid: Accepted=False naming every field, Compliant
 * Unknown (the policy is not evaluated), no counts or workloads.
 */
export function invalidPolicyStatus(
  generation: number,
  errors: FieldError[],
  now: Date,
  previous?: GracefulShutdownPolicyStatus,
): GracefulShutdownPolicyStatus {
  const message = errors.map((e) => `${e.path}: ${e.message}`).join('; ');
  return {
    observedGeneration: generation,
    conditions: [
      condition(
        previous,
        {
          type: PolicyConditionTypes.Accepted,
          status: 'False',
          reason: 'InvalidSpec',
          message: message === '' ? 'the spec is invalid' : message.slice(0, 32768),
          observedGeneration: generation,
        },
        now,
      ),
      condition(
        previous,
        {
          type: PolicyConditionTypes.Compliant,
          status: 'Unknown',
          reason: 'InvalidSpec',
          message: 'the policy is not evaluated while its spec is invalid',
          observedGeneration: generation,
        },
        now,
      ),
    ],
    counts: { matched: 0, compliant: 0, nonCompliant: 0, exempt: 0 },
  };
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      // An undefined member stays undefined, which JSON.stringify drops like an absent one.
      out[key] = sortedKeys((value as Record<string, unknown>)[key]);
    }
    return out;
  }
  return value;
}

/** Equal as JSON regardless of key order: the controller writes status only when this is false. */
export function statusEquals(
  a: GracefulShutdownPolicyStatus | undefined,
  b: GracefulShutdownPolicyStatus | undefined,
): boolean {
  return JSON.stringify(sortedKeys(a ?? null)) === JSON.stringify(sortedKeys(b ?? null));
}
