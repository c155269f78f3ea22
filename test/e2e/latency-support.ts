import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { type OperatorProcess, readPolicyStatus, waitFor } from '../operator/harness.ts';
import { type DemoOptions, demoServiceDeployment } from './real-pods.ts';
import { adminKubeConfig, startOperatorProcess } from './support.ts';

export const PRESTOP = 2;
export const OVERHEAD = 2;
export const FACTOR = 1.5;
/** The operator refreshes latency this often in these tests. */
export const REFRESH_MS = 2_000;

/** What the policies of these tests compute: preStop + ceil(p99 x factor) + overhead. */
export const expectedGrace = (p99: number): number => PRESTOP + Math.ceil(p99 * FACTOR - 1e-9) + OVERHEAD;

/** A policy in Enforce for one namespace that owns the grace period (Override), with this latency source. */
export function latencyPolicySpec(namespace: string, observedLatency: Record<string, unknown>): object {
  return {
    mode: 'Enforce',
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
    preStop: { seconds: PRESTOP },
    terminationGracePeriod: { minSeconds: 1, maxSeconds: 60, overheadSeconds: OVERHEAD, inject: 'Override' },
    rollout: { maxConcurrent: 5 },
    observedLatency: {
      percentile: 0.99,
      window: '1m',
      minSamples: 20,
      safetyFactor: FACTOR,
      ...observedLatency,
    },
  };
}

/** The operator as a process under its ServiceAccount, refreshing latency every 2 s. */
export function startLatencyOperator(logName: string, args: string[] = []): Promise<OperatorProcess> {
  return startOperatorProcess(logName, [
    ...args,
    '--latency-refresh-ms',
    String(REFRESH_MS),
    '--latency-timeout-ms',
    '1000',
    '--resync-ms',
    '2000',
    '--rollout-check-ms',
    '500',
  ]);
}

/** demo-service Deployments and a Service for the first; resolves with that Service's URL once it answers. */
export async function deployDemo(
  namespace: string,
  names: string[],
  options: DemoOptions = {},
): Promise<string> {
  const apps = adminKubeConfig().makeApiClient(AppsV1Api);
  const core = adminKubeConfig().makeApiClient(CoreV1Api);
  for (const name of names)
    await apps.createNamespacedDeployment({
      namespace,
      body: demoServiceDeployment(namespace, name, options),
    });
  const [first] = names;
  await core.createNamespacedService({
    namespace,
    body: {
      metadata: { name: first },
      spec: { selector: { app: first as string }, ports: [{ port: 80, targetPort: 8080 }] },
    },
  });
  const svc = await core.readNamespacedService({ name: first as string, namespace });
  const url = `http://${svc.spec?.clusterIP}`;
  await waitFor('the Service to answer', () => fetch(`${url}/work?ms=1`).then((r) => r.ok), {
    timeoutMs: 120_000,
  });
  return url;
}

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
