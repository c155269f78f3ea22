// What the operator owns on a Deployment, and the apply configurations that write it.
// The operator's record lives in the gracefulshutdown.dev/applied annotation on the Deployment's
// own metadata (never the pod template: changing it must not restart pods). Under server-side
// apply every apply must name all the fields the operator still wants to own — a field left out
// is removed — so the record says which fields are the operator's.
import type { V1Container, V1Deployment } from '@kubernetes/client-node';
import { APPLIED_ANNOTATION } from '../api/annotations.ts';
import { sameHandlerKinds } from './podspec.ts';
import type { ShutdownPlan } from './types.ts';

export interface AppliedRecord {
  policy: string;
  policyGeneration: number;
  /** Set when the operator owns the pod's terminationGracePeriodSeconds. */
  terminationGracePeriodSeconds?: number;
  /** Per container name, the fields the operator owns. */
  containers: Record<string, { readinessProbe?: boolean; preStop?: boolean }>;
  /** Why these values, for humans (drain time and its source). */
  reason: string;
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The operator's record on a Deployment; undefined when absent or unreadable (then nothing is owned). */
export function readAppliedRecord(deployment: V1Deployment): AppliedRecord | undefined {
  const raw = deployment.metadata?.annotations?.[APPLIED_ANNOTATION];
  if (!raw) return undefined;
  try {
    const record = JSON.parse(raw) as Partial<AppliedRecord>;
    if (
      typeof record.policy !== 'string' ||
      !isObject(record.containers) ||
      // Every entry is read as an object: one null entry would throw in every reconcile.
      !Object.values(record.containers).every(isObject)
    ) {
      return undefined;
    }
    return {
      policy: record.policy,
      policyGeneration: Number(record.policyGeneration) || 0,
      containers: record.containers,
      reason: String(record.reason ?? ''),
      ...(typeof record.terminationGracePeriodSeconds === 'number'
        ? { terminationGracePeriodSeconds: record.terminationGracePeriodSeconds }
        : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * A copy of the Deployment with the operator's own probes and hooks removed: what the Deployment
 * would be without the operator. Planning on it keeps "IfMissing" about the user's settings, not
 * ours. The grace period stays (the apiserver always defaults one): desiredSettings tells the
 * operator's from the user's by the record's value.
 */
export function withoutOwnedFields(
  deployment: V1Deployment,
  record: AppliedRecord | undefined,
): V1Deployment {
  if (!record) return deployment;
  const copy = structuredClone(deployment);
  const podSpec = copy.spec?.template?.spec;
  if (!podSpec) return copy;
  for (const container of podSpec.containers ?? []) {
    const owned = record.containers[container.name];
    if (owned?.readinessProbe) container.readinessProbe = undefined;
    if (owned?.preStop && container.lifecycle) container.lifecycle.preStop = undefined;
  }
  return copy;
}

function identity(deployment: V1Deployment): { name: string; namespace: string } {
  return { name: deployment.metadata?.name ?? '', namespace: deployment.metadata?.namespace ?? '' };
}

/**
 * The plan plus the fields the operator owns that the plan no longer writes (the policy says
 * Never now, or a user's value takes over), at their current values. Left out of an apply,
 * server-side apply would delete them: a pod template change, a restart outside the rollout
 * budget. Kept, they change nothing; releaseConfiguration follows the same rule.
 */
export function retainOwnedFields(
  deployment: V1Deployment,
  record: AppliedRecord | undefined,
  plan: ShutdownPlan,
): ShutdownPlan {
  if (!record) return plan;
  const podSpec = deployment.spec?.template?.spec;
  const containers = plan.containers.map((c) => ({ ...c }));
  for (const current of podSpec?.containers ?? []) {
    const owned = record.containers[current.name];
    if (!owned) continue;
    let entry = containers.find((c) => c.name === current.name);
    const keepProbe = owned.readinessProbe && current.readinessProbe && !entry?.readinessProbe;
    const keepHook = owned.preStop && current.lifecycle?.preStop && !entry?.preStop;
    if (!keepProbe && !keepHook) continue;
    if (!entry) {
      entry = { name: current.name };
      containers.push(entry);
    }
    if (keepProbe) entry.readinessProbe = current.readinessProbe;
    if (keepHook) entry.preStop = current.lifecycle?.preStop;
  }
  const order = new Map((podSpec?.containers ?? []).map((c, i) => [c.name, i]));
  containers.sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0));
  const grace =
    plan.terminationGracePeriodSeconds ??
    (record.terminationGracePeriodSeconds !== undefined
      ? (podSpec?.terminationGracePeriodSeconds ?? undefined)
      : undefined);
  return { ...plan, containers, ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}) };
}

/** The record for a plan: exactly the fields the plan writes. */
export function recordFor(policy: { name: string; generation: number }, plan: ShutdownPlan): AppliedRecord {
  const containers: AppliedRecord['containers'] = {};
  for (const c of plan.containers) {
    if (c.readinessProbe || c.preStop) {
      containers[c.name] = {
        ...(c.readinessProbe ? { readinessProbe: true } : {}),
        ...(c.preStop ? { preStop: true } : {}),
      };
    }
  }
  return {
    policy: policy.name,
    policyGeneration: policy.generation,
    ...(plan.terminationGracePeriodSeconds !== undefined
      ? { terminationGracePeriodSeconds: plan.terminationGracePeriodSeconds }
      : {}),
    containers,
    reason: plan.drain.message,
  };
}

export interface ApplyConfiguration {
  apiVersion: 'apps/v1';
  kind: 'Deployment';
  metadata: { name: string; namespace: string; annotations?: Record<string, string> };
  spec?: { template: { spec: Record<string, unknown> } };
}

function podSpecFields(
  grace: number | undefined,
  containers: { name: string; readinessProbe?: unknown; preStop?: unknown }[],
): ApplyConfiguration['spec'] {
  const written = containers.filter((c) => c.readinessProbe !== undefined || c.preStop !== undefined);
  if (grace === undefined && written.length === 0) return undefined;
  return {
    template: {
      spec: {
        ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}),
        ...(written.length > 0
          ? {
              containers: written.map((c) => ({
                name: c.name,
                ...(c.readinessProbe !== undefined ? { readinessProbe: c.readinessProbe } : {}),
                ...(c.preStop !== undefined ? { lifecycle: { preStop: c.preStop } } : {}),
              })),
            }
          : {}),
      },
    },
  };
}

/** The apply configuration that writes a plan and records it. */
export function applyConfiguration(
  deployment: V1Deployment,
  record: AppliedRecord,
  plan: ShutdownPlan,
): ApplyConfiguration {
  const spec = podSpecFields(plan.terminationGracePeriodSeconds, plan.containers);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { ...identity(deployment), annotations: { [APPLIED_ANNOTATION]: JSON.stringify(record) } },
    ...(spec ? { spec } : {}),
  };
}

/**
 * The apply configuration that releases a Deployment the operator no longer manages: the
 * values it owns stay exactly as they are (removing them would restart the pods and could bring
 * back dropped requests); the record annotation goes, so the operator no longer follows the
 * Deployment (managedFields still name it as the owner of the values it left in place).
 */
export function releaseConfiguration(deployment: V1Deployment, record: AppliedRecord): ApplyConfiguration {
  const podSpec = deployment.spec?.template?.spec;
  const byName = new Map<string, V1Container>((podSpec?.containers ?? []).map((c) => [c.name, c]));
  const containers = Object.entries(record.containers).flatMap(([name, owned]) => {
    const current = byName.get(name);
    if (!current) return [];
    return [
      {
        name,
        ...(owned.readinessProbe && current.readinessProbe ? { readinessProbe: current.readinessProbe } : {}),
        ...(owned.preStop && current.lifecycle?.preStop ? { preStop: current.lifecycle.preStop } : {}),
      },
    ];
  });
  const grace =
    record.terminationGracePeriodSeconds !== undefined ? podSpec?.terminationGracePeriodSeconds : undefined;
  const spec = podSpecFields(grace ?? undefined, containers);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: identity(deployment),
    ...(spec ? { spec } : {}),
  };
}

/** One JSON Patch operation (RFC 6902), as the handler replacement uses them. */
export type JsonPatchOperation =
  | { op: 'test'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown };

/**
 * JSON Patch replacing whole probes and preStop hooks where the plan brings a different handler
 * kind (an httpGet probe over a user's tcpSocket one). Server-side apply cannot do that: it
 * would merge both handlers, and the apiserver refuses a probe with two. An ordinary patch
 * removes the old handler for every manager; the apply that follows then owns the new one.
 * Empty when there is nothing to replace. Each replaced container is guarded by a test of its
 * name, so a concurrent change to the container list fails the patch instead of hitting
 * another container.
 */
export function handlerReplacements(deployment: V1Deployment, plan: ShutdownPlan): JsonPatchOperation[] {
  const containers = deployment.spec?.template?.spec?.containers ?? [];
  const operations: JsonPatchOperation[] = [];
  containers.forEach((container, index) => {
    const planned = plan.containers.find((c) => c.name === container.name);
    if (!planned) return;
    const base = `/spec/template/spec/containers/${index}`;
    const replace: JsonPatchOperation[] = [];
    const probe = container.readinessProbe;
    if (planned.readinessProbe && probe && !sameHandlerKinds(probe, planned.readinessProbe)) {
      replace.push({ op: 'replace', path: `${base}/readinessProbe`, value: planned.readinessProbe });
    }
    const hook = container.lifecycle?.preStop;
    if (planned.preStop && hook && !sameHandlerKinds(hook, planned.preStop)) {
      replace.push({ op: 'replace', path: `${base}/lifecycle/preStop`, value: planned.preStop });
    }
    if (replace.length > 0)
      operations.push({ op: 'test', path: `${base}/name`, value: container.name }, ...replace);
  });
  return operations;
}
