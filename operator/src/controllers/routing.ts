// Event routing: which keys each controller looks at after a cache event. The controllers are
// level-triggered, so an event only says where to look, and the view's indexes say where: never
// every Deployment for one Deployment's change (controller-runtime's handlers and predicates).

import type { V1Deployment } from '@kubernetes/client-node';
import { enqueueObject } from '../kube/informer.ts';
import { isRolling, rolloutSignature } from '../policy/budget.ts';
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

/**
 * Whether an update of a Deployment can change a decision of the deployment controller (its
 * predicate, as controller-runtime's): a new spec or metadata, or a change in what the rollout
 * budget reads of its status (rolloutSignature). The cache keeps the spec, labels, annotations
 * and managedFields objects of a version that left them unchanged (kube/informer.ts
 * shareUnchangedParts), so a status update is told by identity; one that only moves a rollout's
 * counts decides nothing: about 4 of a rollout's 11 reconciles.
 */
export function deploymentChangeMatters(old: V1Deployment, current: V1Deployment): boolean {
  const [a, b] = [old.metadata, current.metadata];
  const sameObject =
    old.spec === current.spec &&
    a?.labels === b?.labels &&
    a?.annotations === b?.annotations &&
    a?.managedFields === b?.managedFields &&
    a?.generation === b?.generation &&
    a?.uid === b?.uid &&
    String(a?.deletionTimestamp) === String(b?.deletionTimestamp);
  return !sameObject || rolloutSignature(old) !== rolloutSignature(current);
}

export function routeEvents({ view, tracker, deployments, statuses, statusDelay }: RoutingDeps): void {
  const status = (policy: string) => statuses.enqueueAfter(policy, statusDelay(policy));

  view.deployments.addHandlers({
    ...enqueueObject(deployments.enqueue),
    onUpdate: (deployment, old) => {
      if (deploymentChangeMatters(old, deployment)) deployments.enqueue(deploymentKey(deployment));
    },
  });
  // A Deployment changed, or who selects it (a policy's or a namespace's change): the statuses
  // of the policies selecting it, before or now, and the Deployment when who selects it changed
  // (its own changes come through the handler above).
  view.onSelectionChange((key, policies, selectionChanged) => {
    if (selectionChanged) deployments.enqueue(key);
    for (const policy of policies) status(policy);
  });
  // A Service's selector or ports changed: the probe kind planned for the Deployments it selects
  // may change (a port's appProtocol, policy/protocols.ts).
  view.onServicesChanged((keys) => {
    for (const key of keys) {
      deployments.enqueue(key);
      for (const policy of view.policiesSelecting(key)) status(policy);
    }
  });
  // A rollout of the operator's that finished (or whose Deployment went, or left the policy), a
  // failure gone, a write that failed, a woken key that did not take the slot: one slot of the
  // policy's budget may be free, and the Deployment that waited longest for it is woken. Waits
  // end by these events alone (their requeue is the resync, a safety net). Two events for one
  // slot wake two keys; the second waits again.
  const wakeWaiting = (policy: string | undefined) => {
    if (policy !== undefined) for (const key of tracker.takeWaiting(policy, 1)) deployments.enqueue(key);
  };
  view.onRolloutEnded(wakeWaiting);
  tracker.onSlotFreed(wakeWaiting);
  // The tracker's reservations outlive the record's rollout when the generation moved on (scaled
  // meanwhile): such a rollout ends when the Deployment stops rolling.
  view.deployments.addHandlers({
    onUpdate: (deployment, old) => {
      if (isRolling(old) && !isRolling(deployment)) wakeWaiting(readAppliedRecord(deployment)?.policy);
    },
    onDelete: (deployment) => {
      if (isRolling(deployment)) wakeWaiting(readAppliedRecord(deployment)?.policy);
    },
  });

  // A policy's spec (a new generation), its creation or deletion: its own status now, the
  // Deployments it selects now (those it stopped selecting come through onSelectionChange), and
  // every status, since which policy wins may have changed.
  const policyChanged = (name: string) => {
    statuses.enqueue(name);
    for (const deployment of view.selectedBy(name)) deployments.enqueue(deploymentKey(deployment));
    for (const policy of view.policies.keys()) status(policy);
  };
  // Any other update is a status or metadata write, mostly the operator's own status write: its
  // status is looked at again after the debounce, as after a Deployment's change. Looked at at
  // once, each status write queued the next one while Deployments changed, two a second of a
  // status of 100 workloads (60 ms of the apiserver's CPU each).
  view.policies.addHandlers({
    onAdd: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onDelete: (policy) => policyChanged(policy.metadata?.name ?? ''),
    onUpdate: (policy, old) => {
      const name = policy.metadata?.name ?? '';
      if (policy.metadata?.generation !== old.metadata?.generation) policyChanged(name);
      else status(name);
    },
  });
}
