// What one admission decision reads of the operator's caches, copied out on the main thread
// (where the caches live) for the admission worker thread, which decides with it. Everything
// here is a structured-clone-able value, taken for the one Deployment and namespace a review
// names: a few kB, copied in well under a millisecond.

import type { ParsedPolicies } from '../controllers/view.ts';
import type { Estimate } from '../latency/estimates.ts';
import type { EstimateReader, ServiceReader, ShutdownReader } from '../policy/plan.ts';
import type { CachedService } from '../policy/protocols.ts';
import type { RecordSeal } from '../policy/record-seal.ts';
import type { ClusterFacts, ProbeVerdict } from '../policy/types.ts';
import type { AdmissionContext } from './admission.ts';

export interface AdmissionSnapshot {
  policies: ParsedPolicies;
  namespaceLabels: Record<string, string> | undefined;
  estimate: Estimate | undefined;
  facts: ClusterFacts;
  /** The Deployment's probe verdicts: [container, path, port, verdict]. */
  verdicts: [string, string, number | string, ProbeVerdict][];
  killedAt: number | undefined;
  services: CachedService[];
  /** Policies holding rollouts in the namespace (breakerOpenIn). */
  breakerOpen: string[];
  /** Epoch ms. */
  now: number;
  operatorUser?: string;
}

/** The main thread's caches, as the admission decision reads them. */
export interface AdmissionSources {
  /** False until the caches the decision reads have synced: requests are then allowed unchanged. */
  ready(): boolean;
  policies(): ParsedPolicies;
  namespaceLabels(namespace: string | undefined): Record<string, string> | undefined;
  estimates: EstimateReader;
  facts: ClusterFacts;
  probes?: { verdictsFor(deploymentUid: string): [string, string, number | string, ProbeVerdict][] };
  shutdowns?: ShutdownReader;
  services?: ServiceReader;
  breakerOpen(policy: string, namespace: string): boolean;
  operatorUser?: string;
}

/** The snapshot for a review of the Deployment `namespace/name` (uid: empty at CREATE); undefined while not ready. */
export function takeSnapshot(
  sources: AdmissionSources,
  identity: { namespace: string; name: string; uid: string },
): AdmissionSnapshot | undefined {
  if (!sources.ready()) return undefined;
  const key = `${identity.namespace}/${identity.name}`;
  const policies = sources.policies();
  const killedAt = sources.shutdowns?.killedAt(key);
  return {
    policies,
    namespaceLabels: sources.namespaceLabels(identity.namespace),
    estimate: sources.estimates.get(key),
    facts: sources.facts,
    verdicts: sources.probes?.verdictsFor(identity.uid || key) ?? [],
    killedAt,
    services: sources.services ? [...sources.services.inNamespace(identity.namespace)] : [],
    breakerOpen: policies.valid
      .map((p) => p.name)
      .filter((name) => sources.breakerOpen(name, identity.namespace)),
    now: Date.now(),
    ...(sources.operatorUser === undefined ? {} : { operatorUser: sources.operatorUser }),
  };
}

/** The AdmissionContext a snapshot stands for (in the worker thread). */
export function contextOf(snapshot: AdmissionSnapshot, seal?: RecordSeal): AdmissionContext {
  const verdicts = new Map(
    snapshot.verdicts.map(([container, path, port, verdict]) => [
      JSON.stringify([container, path, port]),
      verdict,
    ]),
  );
  const held = new Set(snapshot.breakerOpen);
  return {
    policies: snapshot.policies,
    namespaceLabels: () => snapshot.namespaceLabels,
    estimates: { get: () => snapshot.estimate },
    facts: snapshot.facts,
    probes: {
      lookup: () => (container, path, port) => verdicts.get(JSON.stringify([container, path, port])),
    },
    shutdowns: { killedAt: () => snapshot.killedAt },
    services: { inNamespace: () => snapshot.services },
    breakerOpen: (policy) => held.has(policy),
    ...(seal ? { seal } : {}),
    now: new Date(snapshot.now),
    ...(snapshot.operatorUser === undefined ? {} : { operatorUser: snapshot.operatorUser }),
  };
}
