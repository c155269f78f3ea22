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
import type { RolloutDecision } from './budget.ts';
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
      observedTime?: Date;
    };

function truncate(message: string): string {
  return message.length <= MAX_MESSAGE ? message : `${message.slice(0, MAX_MESSAGE - 3)}...`;
}

function identity(deployment: V1Deployment): { namespace: string; name: string } {
  return { namespace: deploymentNamespace(deployment), name: deployment.metadata?.name ?? '' };
}

/** metav1.Time: RFC 3339 in whole seconds, as the apiserver stores it (so re-reads compare equal). */
export function formatTime(time: Date): string {
  return time.toISOString().replace(/\.[0-9]+Z$/, 'Z');
}

/** The CamelCase reason for the most important change: grace first (SIGKILL mid-drain), then preStop, then probe. */
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
  observedTime: Date | undefined,
): ObservedLatency | undefined {
  // Nothing was observed on purpose: no entry rather than an empty one.
  if (observation.source === 'None') return undefined;
  const time = observedTime === undefined ? {} : { observedTime: formatTime(observedTime) };
  if (observation.known) {
    return {
      source: observation.source,
      percentile: observation.percentile,
      seconds: observation.seconds,
      samples: observation.samples,
      window: observation.window,
      ...time,
    };
  }
  const { percentile, window } = policy.spec.observedLatency;
  return { source: observation.source, percentile, samples: observation.samples ?? 0, window, ...time };
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
  const latency = observedLatency(policy, input.observation, input.observedTime);
  const common = {
    ...identity(input.deployment),
    recommended: plan.recommended,
    applied: currentSettings(input.deployment, plan.servingContainer),
    ...(latency === undefined ? {} : { observedLatency: latency }),
  };
  const notes = plan.notes.map((n) => n.message);
  if (diff.compliant) {
    return {
      ...common,
      verdict: 'Compliant',
      reason: 'SettingsMatch',
      message: truncate([plan.drain.message, ...notes].join('; ')),
    };
  }
  const waiting = input.mode === 'Enforce' && input.decision?.kind === 'Wait' ? input.decision : undefined;
  const parts = waiting === undefined ? diff.changes : [waiting.message, ...diff.changes];
  return {
    ...common,
    verdict: 'NonCompliant',
    reason: waiting?.reason ?? changeReason(diff.fields),
    message: truncate([...parts, plan.drain.message, ...notes].join('; ')),
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
    ],
    counts: { matched, compliant, nonCompliant, exempt },
    workloads,
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
