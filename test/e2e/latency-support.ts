// Shared by the observed-latency e2e tests: a demo-service Deployment on the real node whose
// request latency the test sets through a closed-loop load, and readers of what the operator did.
import { AppsV1Api, type V1Deployment } from '@kubernetes/client-node';
import { readPolicyStatus } from '../operator/install.ts';
import { adminKubeConfig, clusterInfo } from './support.ts';

/** Closed-loop load: `workers` loops of GET /work?ms=<latencyMs>; change latencyMs any time. */
export class LatencyLoad {
  latencyMs: number;
  sent = 0;
  failed = 0;
  #running = true;
  readonly #loops: Promise<void>[];
  constructor(url: string, workers: number, latencyMs: number) {
    this.latencyMs = latencyMs;
    const deadline = Date.now() + 8 * 60_000; // bounded whatever happens
    this.#loops = Array.from({ length: workers }, async () => {
      while (this.#running && Date.now() < deadline) {
        this.sent++;
        await fetch(`${url}/work?ms=${this.latencyMs}`, { signal: AbortSignal.timeout(30_000) })
          .then((r) => r.arrayBuffer())
          .catch(async () => {
            this.failed++;
            await new Promise((r) => setTimeout(r, 200));
          });
      }
    });
  }
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }
}

export interface WorkloadStatusView {
  name: string;
  message?: string;
  observedLatency?: { seconds?: number; samples: number; message?: string };
}

/** The policy's status as the apiserver has it, with the workload fields these tests read. */
export async function policyStatus(policy: string): Promise<{
  conditions?: { type: string; status: string; reason: string }[];
  workloads?: WorkloadStatusView[];
}> {
  return (await readPolicyStatus(adminKubeConfig(), policy)) as {
    conditions?: { type: string; status: string; reason: string }[];
    workloads?: WorkloadStatusView[];
  };
}

export async function graceOf(namespace: string, name: string): Promise<number | undefined> {
  const d = await adminKubeConfig().makeApiClient(AppsV1Api).readNamespacedDeployment({ name, namespace });
  return d.spec?.template.spec?.terminationGracePeriodSeconds;
}

/** demo-service on the real node, scraped by Prometheus (annotations) and scrapable on `http`. */
export function demoDeployment(namespace: string, name: string): V1Deployment {
  const { realNode } = clusterInfo();
  return {
    metadata: { name, namespace },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: {
          labels: { app: name },
          annotations: {
            'prometheus.io/scrape': 'true',
            'prometheus.io/port': '8080',
            'prometheus.io/path': '/metrics',
          },
        },
        spec: {
          ...realNode.placement,
          automountServiceAccountToken: false,
          containers: [
            {
              name: 'app',
              image: realNode.demoServiceImage,
              imagePullPolicy: 'Never',
              ports: [{ name: 'http', containerPort: 8080 }],
              env: [{ name: 'LOG_LEVEL', value: 'warn' }],
            },
          ],
        },
      },
    },
  };
}
