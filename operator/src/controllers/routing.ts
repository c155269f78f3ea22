// Event routing: which keys each controller looks at after a cache event. The controllers are
// level-triggered, so an event only says where to look, and the view's indexes say where: never
// every Deployment for one Deployment's change (controller-runtime's handlers and predicates).
import { enqueueObject } from '../kube/informer.ts';
import { isRolling } from '../policy/budget.ts';
import { deploymentKey } from '../policy/match.ts';
import { readAppliedRecord } from '../policy/ownership.ts';
import type { RolloutTracker } from './rollout-tracker.ts';
import type { ClusterView } from './view.ts';

interface Queue {
  enqueue(key: string): void;
  enqueueAfter(key: string, delayMs: number): void;
}

export interface RoutingDeps {
  view: ClusterView;
  tracker: RolloutTracker;
  /** The deployment controller's queue (keys `namespace/name`). */
  deployments: Pick<Queue, 'enqueue'>;
  /** The policy status controller's queue (policy names). */
  statuses: Queue;
  /** How long a policy's status waits after a change (the debounce, longer for large policies). */
  statusDelay(policy: string): number;
}

export function routeEvents({ view, tracker, deployments, statuses, statusDelay }: RoutingDeps): void {
  const status = (policy: string) => statuses.enqueueAfter(policy, statusDelay(policy));

  view.deployments.addHandlers(enqueueObject(deployments.enqueue));
  // A Deployment changed, or who selects it (a policy's or a namespace's change): the Deployment
  // and the statuses of the policies selecting it, before or now.
  view.onSelectionChange((key, policies) => {
    deployments.enqueue(key);
    for (const policy of policies) status(policy);
  });
  // A rollout of the operator's that finished (or whose Deployment went) frees budget: wake the
  // Deployments waiting for that policy's budget. The record names the policy.
  const wakeWaiting = (policy: string | undefined) => {
    if (policy !== undefined) for (const key of tracker.takeWaiting(policy)) deployments.enqueue(key);
  };
  view.deployments.addHandlers({
    onUpdate: (deployment, old) => {
      if (isRolling(old) && !isRolling(deployment)) wakeWaiting(readAppliedRecord(deployment)?.policy);
    },
    onDelete: (deployment) => {
      if (isRolling(deployment)) wakeWaiting(readAppliedRecord(deployment)?.policy);
    },
  });

  view.policies.addHandlers(enqueueObject(statuses.enqueue));
  // A policy's spec (a new generation), its creation or deletion: the Deployments it selects now
  // (those it stopped selecting come through onSelectionChange), and every status, since which
  // policy wins may have changed. A status write changes nothing here.
  const policyChanged = (name: string) => {
    for (const deployment of view.selectedBy(name)) deployments.enqueue(deploymentKey(deployment));
    for (const policy of view.policies.keys()) status(policy);
  };
  view.policies.addHandlers({
    onAdd: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onDelete: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onUpdate: (policy, old) => {
      if (policy.metadata?.generation !== old.metadata?.generation)
        policyChanged(policy.metadata?.name ?? '');
    },
  });
}
