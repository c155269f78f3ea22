// Deployments for e2e tests, the demo and benchmarks: one builder (sampleDeployment) whose pod
// template is labelled app=<name> and whose containers default to a single web container
// serving port 8080, with options for what the tests vary.
import type { V1Container, V1Deployment, V1PodSpec } from '@kubernetes/client-node';
import { realNodePlacement } from '../cluster/node/node.ts';

/** The image of sample containers: never pulled (kwok runs no container; the real node refuses). */
export const SAMPLE_IMAGE = 'registry.example/web:1';

/**
 * A container `web` running SAMPLE_IMAGE with port 8080 (named when portName is given, e.g.
 * 'http', which the operator's probes can then refer to); any field can be overridden.
 */
export function sampleContainer(opts: Partial<V1Container> & { portName?: string } = {}): V1Container {
  const { portName, ...fields } = opts;
  return {
    name: 'web',
    image: SAMPLE_IMAGE,
    ports: [{ ...(portName ? { name: portName } : {}), containerPort: 8080 }],
    ...fields,
  };
}

/** What puts a pod on the real node, self-contained: no ServiceAccount token, no Service variables. */
export function realNodePodSpec(): Omit<V1PodSpec, 'containers'> {
  return {
    ...structuredClone(realNodePlacement),
    automountServiceAccountToken: false,
    enableServiceLinks: false,
  };
}

export function sampleDeployment(
  name: string,
  opts: {
    namespace?: string;
    /** The Deployment's own labels (policies can select on them); none by default. */
    labels?: Record<string, string>;
    replicas?: number;
    /** [sampleContainer()] by default. */
    containers?: V1Container[];
    annotations?: Record<string, string>;
    /** The pod template's annotations. */
    podAnnotations?: Record<string, string>;
    /** The pod template's labels besides app=<name>. */
    podLabels?: Record<string, string>;
    /** More of the pod spec: terminationGracePeriodSeconds, nodeSelector, realNodePodSpec()... */
    podSpec?: Omit<V1PodSpec, 'containers'>;
  } = {},
): V1Deployment {
  return {
    metadata: {
      name,
      ...(opts.namespace ? { namespace: opts.namespace } : {}),
      ...(opts.labels ? { labels: opts.labels } : {}),
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    spec: {
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: {
          labels: { ...opts.podLabels, app: name },
          ...(opts.podAnnotations ? { annotations: opts.podAnnotations } : {}),
        },
        spec: { ...opts.podSpec, containers: opts.containers ?? [sampleContainer()] },
      },
    },
  };
}

/** A Deployment as a manifest for `kubectl -f -` (JSON, with apiVersion and kind). */
export function manifest(deployment: V1Deployment): string {
  return JSON.stringify({ apiVersion: 'apps/v1', kind: 'Deployment', ...deployment });
}

/**
 * The manifest most kubectl tests apply: replicas 2 by default, one container `web` serving a
 * port named http (8080), labels app=<name>.
 */
export function webManifest(
  namespace: string,
  name: string,
  options: { replicas?: number; image?: string; grace?: number } = {},
): string {
  return manifest(
    sampleDeployment(name, {
      namespace,
      replicas: options.replicas ?? 2,
      containers: [sampleContainer({ portName: 'http', ...(options.image ? { image: options.image } : {}) })],
      ...(options.grace === undefined ? {} : { podSpec: { terminationGracePeriodSeconds: options.grace } }),
    }),
  );
}
