// Watches pods of Deployments a policy governs as they terminate, and tells how each container
// ended (policy/shutdowns.ts): clean, or killed at the end of its grace period. Counted in
// gracefulshutdown_shutdowns_total (the leader counts, so replicas do not add up twice); a
// killed one is a Warning Event on its Deployment and is remembered (ShutdownHistory), so that
// planning raises the grace period above the one the pods were killed at. An event handler on the pod cache, not a
// reconciler: a termination is seen once, as it happens; nothing is written but the Event.
import type { V1Pod } from '@kubernetes/client-node';
import type { EventRecorder } from '../kube/events.ts';
import type { EventHandlers } from '../kube/informer.ts';
import type { Logger } from '../log.ts';
import { matchDeployment } from '../policy/match.ts';
import { type ContainerShutdown, containerShutdowns, owningDeployment } from '../policy/shutdowns.ts';
import type { Trigger } from '../runtime/trigger.ts';
import type { OperatorMetrics } from './metrics.ts';
import type { ShutdownHistory } from './shutdown-history.ts';
import type { ClusterView } from './view.ts';

export const SHUTDOWN_OBSERVER = 'shutdown-observer';

/** Containers already counted, by pod uid; bounded: a pod's entries go with its delete event. */
const MAX_TRACKED_PODS = 10_000;

export interface ShutdownObserverDeps {
  view: ClusterView;
  events: EventRecorder;
  metrics: Pick<OperatorMetrics, 'shutdowns' | 'shutdownSeconds'>;
  /** Only the leader counts (every replica sees the same pods). */
  isLeader(): boolean;
  /** Every replica remembers kills: planning raises the grace period above them. */
  history: ShutdownHistory;
  /** Emitted when a kill is recorded: the Deployment's plan changed (its controllers watch it). */
  killed?: Trigger<[deploymentKey: string, policy: string]>;
  logger: Logger;
}

export function shutdownObserver(deps: ShutdownObserverDeps): EventHandlers<V1Pod> {
  const log = deps.logger.child({ observer: SHUTDOWN_OBSERVER });
  const counted = new Map<string, Set<string>>();

  const observe = (pod: V1Pod, deleted: boolean) => {
    const uid = pod.metadata?.uid ?? '';
    const shutdowns = containerShutdowns(pod);
    const seen = counted.get(uid) ?? new Set<string>();
    const fresh = (shutdowns ?? []).filter((s) => !seen.has(s.container));
    if (deleted) counted.delete(uid);
    else if (fresh.length > 0) {
      for (const s of fresh) seen.add(s.container);
      if (counted.size >= MAX_TRACKED_PODS) counted.clear();
      counted.set(uid, seen);
    }
    if (fresh.length === 0) return;
    const namespace = pod.metadata?.namespace ?? '';
    const name = owningDeployment(pod);
    const deployment = name === undefined ? undefined : deps.view.deployments.get(`${namespace}/${name}`);
    if (!deployment) return;
    const match = matchDeployment(
      deps.view.parsedPolicies().valid,
      deployment,
      deps.view.namespaceLabels(namespace),
    );
    if (match.kind !== 'Matched') return;
    const policy = match.policy.name;
    const killedAt = Math.max(0, ...fresh.filter((s) => s.outcome === 'Killed').map((s) => s.graceSeconds));
    if (killedAt > 0) {
      deps.history.killed(`${namespace}/${name}`, killedAt);
      deps.killed?.emit(`${namespace}/${name}`, policy);
    }
    if (!deps.isLeader()) return;
    for (const s of fresh) {
      deps.metrics.shutdowns.inc({ policy, outcome: s.outcome });
      deps.metrics.shutdownSeconds.observe({ policy, outcome: s.outcome }, s.seconds);
    }
    const killed = fresh.filter((s) => s.outcome === 'Killed');
    if (killed.length === 0) return;
    const message = killedMessage(pod.metadata?.name ?? '', killed);
    log.warn({ policy, namespace, deployment: name, pod: pod.metadata?.name, killed }, message);
    deps.events.record(
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        namespace,
        name,
        uid: deployment.metadata?.uid,
      },
      'Warning',
      'ShutdownKilled',
      `policy ${policy}: ${message}`,
    );
  };

  return {
    onUpdate: (pod) => observe(pod, false),
    onDelete: (pod) => observe(pod, true),
  };
}

function killedMessage(pod: string, killed: ContainerShutdown[]): string {
  const [first] = killed;
  const containers = killed.map((k) => k.container).join(', ');
  return `pod ${pod}: container${killed.length > 1 ? 's' : ''} ${containers} killed at the end of the ${first?.graceSeconds} s grace period (exit code 137): requests still in flight were cut; the app needs longer to drain than terminationGracePeriodSeconds allows, and the policy's recommendation is raised above it`;
}
