// What the admission webhook answers for one Deployment CREATE or UPDATE (pure: caches in,
// JSON patch and warnings out, no I/O). In Enforce it adds the winning policy's settings with the
// same planning the deployment controller uses (controllers/plan.ts), the same record and the
// operator's managedFields entry, so the controller then finds the Deployment compliant and
// owned and writes nothing: one rollout for one `kubectl apply`. In Audit it changes nothing and
// says what the policy recommends as admission warnings (kubectl prints them). The choices —
// failurePolicy, reinvocation, what an UPDATE may change — are in docs/design/admission.md.
import type { V1Deployment } from '@kubernetes/client-node';
import jsonPatch, { type Operation } from 'fast-json-patch';
import { FIELD_MANAGER } from '../api/annotations.ts';
import { GROUP, PolicyConditionTypes } from '../api/policy.ts';
import type { ParsedPolicies, PolicyObject } from '../controllers/view.ts';
import type { FieldChange } from '../policy/diff.ts';
import { evaluate } from '../policy/evaluate.ts';
import { mergeApplyConfiguration, withOperatorApplyEntry } from '../policy/managed-fields.ts';
import {
  type ApplyConfiguration,
  applyConfiguration,
  handlerReplacements,
  type JsonPatchOperation,
  readAppliedRecord,
} from '../policy/ownership.ts';
import {
  type EstimateReader,
  type ProbeVerdictReader,
  planWorkload,
  recordToWrite,
  type ServiceReader,
  type ShutdownReader,
  sameOwnership,
} from '../policy/plan.ts';
import { isStringMap, malformedPodSpecField, optional } from '../policy/pod-shape.ts';
import type { RecordSeal } from '../policy/record-seal.ts';
import type { ClusterFacts, ProbeVerdictLookup, ValidPolicy } from '../policy/types.ts';
import { isRecord } from '../util/is-record.ts';

// A CommonJS package: Node gives its functions on the default export only.
const { applyPatch, compare } = jsonPatch;

/** The parts of an admission.k8s.io/v1 AdmissionRequest the webhook reads. */
export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  subResource?: string;
  operation?: string;
  namespace?: string;
  name?: string;
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
  /** CreateOptions, UpdateOptions or PatchOptions of the request. */
  options?: { fieldManager?: string } | null;
  /** Who sent the write, as the apiserver authenticated them. */
  userInfo?: { username?: string };
}

/** What one admission did, for the metric's `outcome` label (bounded). */
export type AdmissionOutcome =
  /** Settings added (Enforce). */
  | 'Mutated'
  /** Matched and already compliant and owned: nothing to add. */
  | 'Compliant'
  /** Audit: not compliant, said so in warnings. */
  | 'Warned'
  /** Enforce, but nothing added: the breaker is open or an annotation is invalid. */
  | 'Held'
  /** Not the webhook's business: no policy, opted out, the template unchanged, the operator's own write. */
  | 'Skipped'
  /** Too large to plan at admission (MAX_ADMISSION_CONTAINERS): admitted unchanged, with a warning. */
  | 'TooLarge';

export interface AdmissionDecision {
  outcome: AdmissionOutcome;
  /** The winning policy, when one matched. */
  policy?: string;
  /** JSON Patch (RFC 6902) against the request's object; empty when nothing changes. */
  patch: Operation[];
  /** Shown by kubectl as `Warning: ...`; each at most MAX_WARNING_LENGTH characters. */
  warnings: string[];
  /** Why, in one line, for the log. */
  message: string;
}

export interface AdmissionContext {
  policies: ParsedPolicies;
  namespaceLabels(namespace: string | undefined): Record<string, string> | undefined;
  /** The replica's cached latency estimates (the leader's refresher fills them). */
  estimates: EstimateReader;
  facts: ClusterFacts;
  /** Cached probe verdicts; a new probe is never checked at admission (no network I/O). */
  probes?: ProbeVerdictReader;
  /** Kills observed at a grace period (every replica watches pods). */
  shutdowns?: ShutdownReader;
  /** Cached Services: their ports' names and appProtocols say what a container port speaks. */
  services?: ServiceReader;
  /**
   * True while the policy starts no rollouts in the namespace: its RolloutBreakerOpen condition
   * is True, or its status.heldNamespaces names the namespace (breakerOpenIn).
   */
  breakerOpen(policy: string, namespace: string): boolean;
  /** Checks the record's seal and seals the one written (an UPDATE; a CREATE has no UID yet). */
  seal?: RecordSeal;
  now: Date;
  /**
   * The operator's own username (kube/identity.ts): its writes are what it decided and are never
   * mutated again. Unknown (the cluster could not say): writes under the operator's field
   * manager count as its own, which any client can claim for its own writes.
   */
  operatorUser?: string;
}

/**
 * Deployments with more containers than this are admitted unchanged, with a warning: planning
 * cost grows with the containers (16,000 took 2.76 s of the thread that also runs the
 * controllers), and no real pod comes near. The controller plans them in its own time.
 */
export const MAX_ADMISSION_CONTAINERS = 64;

/** The apiserver truncates longer warnings when many come together; keep each short. */
export const MAX_WARNING_LENGTH = 256;
const MAX_WARNINGS = 8;

function skipped(message: string, policy?: string): AdmissionDecision {
  return { outcome: 'Skipped', patch: [], warnings: [], message, ...(policy ? { policy } : {}) };
}

function compliant(policy: ValidPolicy, notes: string[]): AdmissionDecision {
  return {
    outcome: 'Compliant',
    policy: policy.name,
    patch: [],
    warnings: bounded(notes),
    message: 'compliant',
  };
}

function bounded(warnings: string[]): string[] {
  const kept = warnings
    .slice(0, MAX_WARNINGS)
    .map((w) => (w.length <= MAX_WARNING_LENGTH ? w : `${w.slice(0, MAX_WARNING_LENGTH - 3)}...`));
  if (warnings.length > MAX_WARNINGS)
    kept[MAX_WARNINGS - 1] = `... and ${warnings.length - MAX_WARNINGS + 1} more`;
  return kept;
}

function isDeployment(value: unknown): value is V1Deployment {
  return isRecord(value);
}

/**
 * What the apiserver's decoding guarantees of a Deployment it sends, checked again: the webhook
 * port is reachable by any pod, and a request that did not come from the apiserver must not
 * reach the planner with a mapping where a list belongs.
 */
function wellFormed(deployment: V1Deployment): boolean {
  const metadata = deployment.metadata as unknown;
  const template = deployment.spec?.template as unknown;
  if (!optional(metadata, isRecord) || !isRecord(template)) return false;
  const meta = (metadata ?? {}) as Record<string, unknown>;
  if (!optional(meta.name, (v) => typeof v === 'string')) return false;
  if (!optional(meta.annotations, isStringMap) || !optional(meta.labels, isStringMap)) return false;
  const templateMeta = template.metadata;
  if (
    !optional(
      templateMeta,
      (v) => isRecord(v) && optional(v.annotations, isStringMap) && optional(v.labels, isStringMap),
    )
  )
    return false;
  return malformedPodSpecField(template.spec, 'spec.template.spec') === undefined;
}

/**
 * True when the policy holds rollouts in the namespace: its RolloutBreakerOpen condition is True
 * (every namespace), or a rollout it started failed there (status.heldNamespaces). Read from
 * the cached object, which only the operator's status writes change.
 */
export function breakerOpenIn(policy: PolicyObject | undefined, namespace: string): boolean {
  const status = policy?.status;
  if (status?.heldNamespaces?.includes(namespace)) return true;
  return (status?.conditions ?? []).some(
    (c) => c.type === PolicyConditionTypes.RolloutBreakerOpen && c.status === 'True',
  );
}

/**
 * Probe verdicts at admission: the cached one, else — the Deployment already runs pods, so
 * Verify could check the probe on them — Unverified: the probe is left to the controller, which
 * checks it on a running pod first. A new Deployment (or one scaled to zero) has no pod to ask:
 * NoPods, so an httpGet probe is written only where the port is known to speak HTTP, a tcpSocket
 * one otherwise (policy/desired.ts decideProbe), as the controller writes it then.
 */
function admissionVerdicts(
  old: V1Deployment | undefined,
  probes: ProbeVerdictReader | undefined,
): ProbeVerdictReader {
  const running = (old?.status?.replicas ?? 0) > 0;
  return {
    lookup: (uid): ProbeVerdictLookup => {
      const cached = probes?.lookup(uid);
      return (container, path, port) =>
        cached?.(container, path, port) ??
        (running
          ? {
              state: 'Unverified',
              tried: '',
              message: `${container}: GET ${path} on port ${port} is not checked at admission (the operator checks it on a running pod first)`,
            }
          : {
              state: 'NoPods',
              message: `${old === undefined ? 'a new Deployment' : 'the Deployment'} has no pod yet: GET ${path} on port ${port} of ${container} cannot be checked at admission`,
            });
    },
  };
}

const prefix = (policy: ValidPolicy) => `${GROUP}/${policy.name}`;

/**
 * One warning per field (short enough for kubectl's line), then the grace arithmetic:
 * `gracefulshutdown.dev/web-tier (Audit): containers[web].preStop: missing -> sleep 5s`.
 */
function changeWarnings(policy: ValidPolicy, fields: FieldChange[], graceExplanation: string): string[] {
  const mode = `${prefix(policy)} (${policy.spec.mode})`;
  const where = (f: FieldChange) =>
    f.container === undefined ? f.field : `containers[${f.container}].${f.field}`;
  return [...fields.map((f) => `${mode}: ${where(f)}: ${f.from} -> ${f.to}`), `${mode}: ${graceExplanation}`];
}

/** The request's Deployment with the plan merged in as server-side apply merges it, and owned. */
function mutated(
  deployment: V1Deployment,
  config: ApplyConfiguration,
  replacements: JsonPatchOperation[],
  now: Date,
): V1Deployment {
  const copy = structuredClone(deployment);
  // Handler kinds the plan replaces (tcpSocket -> httpGet): a merge would keep both.
  if (replacements.length > 0) applyPatch(copy, replacements as Operation[], true, true);
  const merged = mergeApplyConfiguration(copy, config) as V1Deployment;
  const managedFields = withOperatorApplyEntry(merged.metadata?.managedFields, config, now);
  return { ...merged, metadata: { ...merged.metadata, managedFields } };
}

/** The webhook's answer for one request; never throws on a malformed object (skipped instead). */
export function admit(request: AdmissionRequest, context: AdmissionContext): AdmissionDecision {
  if (request.kind?.group !== 'apps' || request.kind.kind !== 'Deployment' || request.subResource)
    return skipped(`not a Deployment: ${request.kind?.group ?? ''}/${request.kind?.kind ?? ''}`);
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE')
    return skipped(`operation ${request.operation}`);
  // The operator's own writes (its applies, a revert) are what it decided: never mutated again.
  if (
    context.operatorUser === undefined
      ? request.options?.fieldManager === FIELD_MANAGER
      : request.userInfo?.username === context.operatorUser
  )
    return skipped("the operator's own write");
  if (!isDeployment(request.object)) return skipped('no object in the request');
  if (!wellFormed(request.object)) return skipped('not a well-formed Deployment');
  // The apiserver always sends the namespace of the object itself; a request that names another
  // (not from the apiserver) must not be planned under that namespace's policies.
  const named = request.object.metadata?.namespace;
  if (named !== undefined && request.namespace !== undefined && named !== request.namespace)
    return skipped('the object names another namespace than the request');
  const containers = request.object.spec?.template?.spec?.containers;
  const initContainers = request.object.spec?.template?.spec?.initContainers;
  const count =
    (Array.isArray(containers) ? containers.length : 0) +
    (Array.isArray(initContainers) ? initContainers.length : 0);
  if (count > MAX_ADMISSION_CONTAINERS)
    return {
      ...skipped(`${count} containers, more than the ${MAX_ADMISSION_CONTAINERS} planned at admission`),
      outcome: 'TooLarge',
      warnings: [
        `gracefulshutdown.dev: admitted unchanged: ${count} containers are more than the ${MAX_ADMISSION_CONTAINERS} the admission webhook plans; the operator's controller evaluates this Deployment later`,
      ],
    };
  const deployment: V1Deployment = {
    ...request.object,
    metadata: {
      ...request.object.metadata,
      namespace: request.object.metadata?.namespace ?? request.namespace,
    },
  };
  if (deployment.metadata?.deletionTimestamp) return skipped('being deleted');
  const old =
    request.operation === 'UPDATE' && isDeployment(request.oldObject) && wellFormed(request.oldObject)
      ? request.oldObject
      : undefined;
  // An UPDATE joins only a rollout that happens anyway: a scale or a label edit stays one.
  if (old && JSON.stringify(old.spec?.template) === JSON.stringify(deployment.spec?.template))
    return skipped('the pod template is unchanged');

  const record = readAppliedRecord(deployment, context.seal);
  if (record && context.policies.invalid.has(record.policy))
    return skipped(`policy ${record.policy}, which manages it, is invalid`, record.policy);
  // The same evaluation as the controllers' (policy/evaluate.ts). An UPDATE here changes the pod
  // template (an unchanged one was skipped above): the operator's tcpSocket fallback may become
  // the verified httpGet probe in the same rollout.
  const sources = {
    estimates: context.estimates,
    facts: context.facts,
    probes: admissionVerdicts(old, context.probes),
    ...(context.shutdowns ? { shutdowns: context.shutdowns } : {}),
    ...(context.services ? { services: context.services } : {}),
  };
  const evaluation = evaluate(
    deployment,
    context.policies.valid,
    context.namespaceLabels(deployment.metadata?.namespace),
    (d, policy) => planWorkload(d, policy, sources, { templateChanging: old !== undefined }),
  );
  if (evaluation.kind === 'Unmatched' || evaluation.kind === 'OptedOut')
    return skipped(evaluation.kind === 'OptedOut' ? 'opted out' : 'no policy selects it');
  const { policy } = evaluation;
  const enforce = policy.spec.mode === 'Enforce';
  if (enforce && context.breakerOpen(policy.name, deployment.metadata?.namespace ?? '')) {
    return {
      outcome: 'Held',
      policy: policy.name,
      patch: [],
      warnings: [
        `${prefix(policy)}: no shutdown settings added: a rollout the policy started failed in this namespace, or in rollout.breakerNamespaces namespaces (kubectl describe gsp ${policy.name})`,
      ],
      message: 'the rollout breaker is open',
    };
  }
  if (evaluation.kind === 'InvalidAnnotations') {
    const errors = evaluation.errors.map(
      (e) => `${prefix(policy)}: annotation ${e.annotation}: ${e.message}`,
    );
    return {
      outcome: enforce ? 'Held' : 'Warned',
      policy: policy.name,
      patch: [],
      warnings: bounded(errors),
      message: `invalid annotations: ${errors.join('; ')}`,
    };
  }
  const { planned } = evaluation;
  const { plan, diff } = planned;
  const notes = plan.notes
    .filter((n) => n.reason !== 'GraceKept')
    .map((n) => `${prefix(policy)}: ${n.reason}: ${n.message}`);

  if (!enforce) {
    if (diff.compliant) return compliant(policy, notes);
    return {
      outcome: 'Warned',
      policy: policy.name,
      patch: [],
      warnings: bounded([...changeWarnings(policy, diff.fields, plan.graceExplanation), ...notes]),
      message: `would change ${diff.changes.join('; ')}`,
    };
  }

  const ownedBefore = planned.record;
  if (diff.compliant && ownedBefore?.policy === policy.name && sameOwnership(ownedBefore, planned.nextRecord))
    return compliant(policy, notes);
  const written = recordToWrite(record, policy, planned.nextRecord, context.now.getTime());
  const config = applyConfiguration(deployment, written, plan, context.seal);
  const after = mutated(deployment, config, handlerReplacements(deployment, plan), context.now);
  const patch = compare(deployment, after);
  return {
    outcome: 'Mutated',
    policy: policy.name,
    patch,
    warnings: diff.compliant
      ? bounded(notes)
      : bounded([...changeWarnings(policy, diff.fields, plan.graceExplanation), ...notes]),
    message: diff.compliant ? 'recorded ownership' : `set ${diff.changes.join('; ')}`,
  };
}
