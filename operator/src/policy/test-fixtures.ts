// Builders for the policy unit tests: a defaulted policy, a Deployment, observations.
import type { V1Container, V1ContainerPort, V1Deployment, V1DeploymentStatus } from '@kubernetes/client-node';
import { APPLIED_ANNOTATION } from '../api/annotations.ts';
import { type GracefulShutdownPolicySpecInput, parsePolicySpec } from '../api/policy.ts';
import { readAppliedRecord, recordAnnotation } from './ownership.ts';
import { RecordSeal } from './record-seal.ts';
import type { ClusterFacts, LatencyObservation, ValidPolicy } from './types.ts';

/** The key the tests seal records with (policy/record-seal.ts). */
export const TEST_SEAL = new RecordSeal(Buffer.alloc(32, 7));

/**
 * The Deployment with its record sealed by TEST_SEAL for its UID, as the operator writes it (the
 * same object when it has no record): what a test means by "the operator's record".
 */
export function sealed(deployment: V1Deployment): V1Deployment {
  const raw = deployment.metadata?.annotations?.[APPLIED_ANNOTATION];
  if (raw === undefined) return deployment;
  const parsed = JSON.parse(raw) as Record<string, unknown>;
  if (typeof parsed !== 'object' || parsed === null) return deployment;
  const { seal: _old, ...record } = parsed;
  const annotations = {
    ...deployment.metadata?.annotations,
    [APPLIED_ANNOTATION]: recordAnnotation(deployment, record as never, TEST_SEAL),
  };
  // Unreadable records stay as they are: the test is about them.
  if (readAppliedRecord({ ...deployment, metadata: { ...deployment.metadata, annotations } }) === undefined)
    return deployment;
  return { ...deployment, metadata: { ...deployment.metadata, annotations } };
}

export function policy(
  name: string,
  spec: GracefulShutdownPolicySpecInput = {},
  generation = 1,
): ValidPolicy {
  const parsed = parsePolicySpec(spec);
  if (!parsed.ok) throw new Error(`invalid test policy: ${JSON.stringify(parsed.errors)}`);
  return { name, generation, spec: parsed.value };
}

/** A container; a port is a number, or [name, number]. */
export function container(
  name: string,
  ports: (number | [string, number])[] = [],
  extra: Partial<V1Container> = {},
): V1Container {
  const declared: V1ContainerPort[] = ports.map((p) =>
    typeof p === 'number' ? { containerPort: p } : { name: p[0], containerPort: p[1] },
  );
  return { name, image: `example/${name}`, ...(declared.length > 0 ? { ports: declared } : {}), ...extra };
}

export interface DeploymentOptions {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** On the pod template (where the downward API reads them), not the Deployment. */
  templateAnnotations?: Record<string, string>;
  containers?: V1Container[];
  initContainers?: V1Container[];
  grace?: number;
  replicas?: number;
  paused?: boolean;
  generation?: number;
  status?: V1DeploymentStatus;
}

/** The status of a Deployment of 3 replicas whose generation 2 is rolling out (1 updated, 2 available). */
export const ROLLING_STATUS: V1DeploymentStatus = {
  observedGeneration: 2,
  replicas: 3,
  updatedReplicas: 1,
  readyReplicas: 2,
  availableReplicas: 2,
};

/** A Deployment, by default steady (all replicas updated and available, generation observed). */
export function deployment(options: DeploymentOptions = {}): V1Deployment {
  const replicas = options.replicas ?? 2;
  const generation = options.generation ?? 1;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: options.name ?? 'web',
      namespace: options.namespace ?? 'shop',
      uid: options.uid ?? `uid-${options.namespace ?? 'shop'}-${options.name ?? 'web'}`,
      generation,
      ...(options.labels ? { labels: options.labels } : {}),
      ...(options.annotations ? { annotations: options.annotations } : {}),
    },
    spec: {
      replicas,
      ...(options.paused === undefined ? {} : { paused: options.paused }),
      selector: { matchLabels: { app: options.name ?? 'web' } },
      template: {
        metadata: {
          labels: { app: options.name ?? 'web' },
          ...(options.templateAnnotations ? { annotations: options.templateAnnotations } : {}),
        },
        spec: {
          containers: options.containers ?? [container('web', [['http', 8080]])],
          ...(options.initContainers ? { initContainers: options.initContainers } : {}),
          ...(options.grace === undefined ? {} : { terminationGracePeriodSeconds: options.grace }),
        },
      },
    },
    status: options.status ?? {
      observedGeneration: generation,
      replicas,
      updatedReplicas: replicas,
      readyReplicas: replicas,
      availableReplicas: replicas,
    },
  };
}

export const NO_SOURCE: LatencyObservation = {
  known: false,
  source: 'None',
  reason: 'observedLatency.source is None',
};

export function observed(seconds: number, samples = 1000): LatencyObservation {
  return { known: true, seconds, samples, percentile: 0.99, window: '1h', source: 'Prometheus' };
}

export const NEW_CLUSTER: ClusterFacts = { nativeSleep: true, nativeSleepZero: true };
export const OLD_CLUSTER: ClusterFacts = { nativeSleep: false, nativeSleepZero: false };

/** The record on the Deployment as the operator reads one it wrote itself (sealed, then checked). */
export function operatorRecord(deployment: V1Deployment) {
  return readAppliedRecord(sealed(deployment), TEST_SEAL);
}
