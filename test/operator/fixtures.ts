// Sample Deployments for e2e tests, the demo and benchmarks: one labelled pod template whose
// containers default to a single web container serving port 8080.
import type { V1Container, V1Deployment } from '@kubernetes/client-node';

export function sampleDeployment(
  name: string,
  opts: {
    replicas?: number;
    containers?: V1Container[];
    annotations?: Record<string, string>;
    /** The pod template's annotations. */
    podAnnotations?: Record<string, string>;
  } = {},
): V1Deployment {
  return {
    metadata: { name, ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: {
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: {
          labels: { app: name },
          ...(opts.podAnnotations ? { annotations: opts.podAnnotations } : {}),
        },
        spec: {
          containers: opts.containers ?? [
            { name: 'web', image: 'registry.example/web:1', ports: [{ containerPort: 8080 }] },
          ],
        },
      },
    },
  };
}
