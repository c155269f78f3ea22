// Were shutdowns clean? From a deleted pod's status alone (no I/O): each container either ended
// on its own before the grace period ran out, or was killed at its end (SIGKILL: exit code 137,
// finished at or past the pod's deletionTimestamp, which the apiserver sets to deletion time +
// grace period). Nobody reports the latter (kubernetes#67126, kube-state-metrics#407): it means
// requests in flight were cut, whatever the preStop and the readiness probe did.
import type { V1Pod } from '@kubernetes/client-node';

export type ShutdownOutcome = 'Clean' | 'Killed';

export interface ContainerShutdown {
  container: string;
  outcome: ShutdownOutcome;
  exitCode: number;
  /** From the start of the deletion (the preStop, then SIGTERM) to the container's end. */
  seconds: number;
  /** The grace period the pod was deleted with. */
  graceSeconds: number;
}

/** Container end times have whole seconds: an end this close to the deadline counts as at it. */
const DEADLINE_TOLERANCE_MS = 1_000;
/** 128 + SIGKILL. */
const KILLED = 137;

/** The Deployment a pod belongs to: its ReplicaSet's name without the pod-template-hash suffix. */
export function owningDeployment(pod: V1Pod): string | undefined {
  const owner = pod.metadata?.ownerReferences?.find((o) => o.kind === 'ReplicaSet' && o.controller);
  const hash = pod.metadata?.labels?.['pod-template-hash'];
  if (!owner || !hash || !owner.name.endsWith(`-${hash}`)) return undefined;
  return owner.name.slice(0, -(hash.length + 1));
}

/**
 * How the pod's regular containers ended, for those that have, when the pod was deleted (a
 * rollout, a scale-down, a drain, kubectl delete); undefined for a pod not being deleted.
 */
export function containerShutdowns(pod: V1Pod): ContainerShutdown[] | undefined {
  const deadline = pod.metadata?.deletionTimestamp;
  const graceSeconds = pod.metadata?.deletionGracePeriodSeconds;
  if (deadline === undefined || graceSeconds === undefined) return undefined;
  const deadlineMs = new Date(deadline).getTime();
  const startMs = deadlineMs - graceSeconds * 1000;
  const shutdowns: ContainerShutdown[] = [];
  for (const status of pod.status?.containerStatuses ?? []) {
    const terminated = status.state?.terminated;
    if (!terminated?.finishedAt) continue;
    const finishedMs = new Date(terminated.finishedAt).getTime();
    // Ended before the deletion began: not this shutdown (a crash, a completed run).
    if (finishedMs < startMs - DEADLINE_TOLERANCE_MS) continue;
    const killed = terminated.exitCode === KILLED && finishedMs >= deadlineMs - DEADLINE_TOLERANCE_MS;
    shutdowns.push({
      container: status.name,
      outcome: killed ? 'Killed' : 'Clean',
      exitCode: terminated.exitCode,
      seconds: Math.max(0, (finishedMs - startMs) / 1000),
      graceSeconds,
    });
  }
  return shutdowns;
}
