// The rollout budget as both the Deployment controller's decision and the policy status read it:
// where a Deployment stands (its record, and what this replica remembers of its own writes), and
// a policy's rollouts in progress and failures. One computation, so that the waits the status
// reports are the ones the controller decides.
import type { V1Deployment } from '@kubernetes/client-node';
import { type PolicyRollouts, policyRollouts, type RolloutState, rolloutState } from '../policy/budget.ts';
import { matchDeployment } from '../policy/match.ts';
import { type AppliedRecord, readAppliedRecord } from '../policy/ownership.ts';
import type { RecordSeal } from '../policy/record-seal.ts';
import type { ValidPolicy } from '../policy/types.ts';
import type { RolloutTracker } from './rollout-tracker.ts';
import type { ClusterView } from './view.ts';

export class RolloutBudget {
  readonly #view: ClusterView;
  readonly #tracker: RolloutTracker;
  readonly #seal: RecordSeal;

  constructor(view: ClusterView, tracker: RolloutTracker, seal: RecordSeal) {
    this.#view = view;
    this.#tracker = tracker;
    this.#seal = seal;
  }

  /** Where the Deployment stands, with this replica's memory of the rollouts it started. */
  state(
    key: string,
    deployment: V1Deployment,
    record: AppliedRecord | undefined,
    policy: ValidPolicy,
    now: number,
  ): RolloutState {
    this.#tracker.observe(key, deployment);
    return rolloutState(deployment, record, policy, now, {
      startedHere: this.#tracker.startedHere(key, deployment),
      templateChanged: this.#tracker.templateChanged(key, deployment),
    });
  }

  /**
   * The policy's rollouts: the Deployments it wins whose record names a rollout or a failure of
   * it (the view's index, kept from events: no scan of its other Deployments), and this
   * replica's writes the cache has not shown complete.
   */
  rollouts(policy: ValidPolicy, valid: readonly ValidPolicy[], now: number): PolicyRollouts {
    const states = new Map<string, RolloutState>();
    for (const key of this.#view.rolloutsOf(policy.name)) {
      const deployment = this.#view.deployments.get(key);
      if (!deployment) continue;
      const labels = this.#view.namespaceLabels(deployment.metadata?.namespace);
      const match = matchDeployment(valid, deployment, labels);
      if (match.kind === 'Matched' && match.policy.name === policy.name)
        states.set(key, this.state(key, deployment, readAppliedRecord(deployment, this.#seal), policy, now));
    }
    return policyRollouts(
      states,
      policy.spec.rollout.breakerNamespaces,
      this.#tracker.active(policy.name, this.#view.deployments),
    );
  }

  /** Slots of the policy's budget no rollout holds (maxConcurrent less those in progress). */
  freeSlots(policy: ValidPolicy, valid: readonly ValidPolicy[], now: number): number {
    return Math.max(0, policy.spec.rollout.maxConcurrent - this.rollouts(policy, valid, now).active.size);
  }
}
