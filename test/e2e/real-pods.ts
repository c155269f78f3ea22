// Pods on the shared cluster's real node: placement, a scriptable test server built into the
// demo-service image, and waits on what the kubelet reports.
import {
  CoreV1Api,
  type V1Container,
  type V1Deployment,
  type V1EnvVar,
  type V1Pod,
  type V1Probe,
  Watch,
} from '@kubernetes/client-node';
import { realNodePodSpec, sampleDeployment, waitFor } from '../operator/harness.ts';
import { adminKubeConfig, clusterInfo } from './support.ts';

const core = () => adminKubeConfig().makeApiClient(CoreV1Api);

/**
 * A tiny HTTP server on :8080 run by the demo-service image's node: /readyz turns 503 at
 * SIGTERM, /sigterm tells when SIGTERM arrived (ms, the host's clock: same kernel), and the
 * process exits exitAfterMs after SIGTERM, or never when it ignores SIGTERM.
 */
const signalProbeScript = `
const http = require('node:http');
let sigterm = null;
process.on('SIGTERM', () => {
  if (sigterm === null) sigterm = Date.now();
  if (process.env.IGNORE_SIGTERM !== '1') setTimeout(() => process.exit(0), Number(process.env.EXIT_AFTER_MS || 0));
});
http.createServer((req, res) => {
  if (req.url === '/readyz') { res.statusCode = sigterm === null ? 200 : 503; return res.end(); }
  if (req.url === '/sigterm') return res.end(JSON.stringify({ sigterm }));
  res.end('ok');
}).listen(8080);
`;

export function signalProbeContainer(
  opts: { exitAfterMs?: number; ignoreSigterm?: boolean } = {},
): V1Container {
  return {
    name: 'app',
    image: clusterInfo().realNode.demoServiceImage,
    imagePullPolicy: 'Never',
    command: ['/nodejs/bin/node', '-e', signalProbeScript],
    env: [
      { name: 'EXIT_AFTER_MS', value: String(opts.exitAfterMs ?? 0) },
      { name: 'IGNORE_SIGTERM', value: opts.ignoreSigterm ? '1' : '0' },
    ],
    ports: [{ name: 'http', containerPort: 8080 }],
    readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 1, failureThreshold: 1 },
  };
}

/** A pod on the real node (and only there). */
export function realNodePod(
  name: string,
  spec: { containers: V1Container[]; terminationGracePeriodSeconds?: number },
  labels: Record<string, string> = {},
): V1Pod {
  return {
    metadata: { name, labels: { app: name, ...labels } },
    spec: { ...realNodePodSpec(), ...spec },
  };
}

export async function createReadyPod(namespace: string, pod: V1Pod): Promise<V1Pod> {
  await core().createNamespacedPod({ namespace, body: pod });
  const name = pod.metadata?.name as string;
  return waitFor(`pod ${namespace}/${name} Ready on the real node`, async () => {
    const p = await core().readNamespacedPod({ namespace, name });
    const ready = p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    return ready && p.status?.podIP ? p : undefined;
  });
}

/**
 * Watches one pod until its first container reports terminated; resolves with the exit code
 * and when it was seen. The watch is what catches it: the kubelet writes that status just
 * before the pod object goes away.
 */
export async function watchTermination(
  namespace: string,
  name: string,
): Promise<{ terminated: Promise<{ exitCode: number; at: number }>; stop: () => void }> {
  let resolve: (value: { exitCode: number; at: number }) => void = () => {};
  const terminated = new Promise<{ exitCode: number; at: number }>((r) => {
    resolve = r;
  });
  const request = await new Watch(adminKubeConfig()).watch(
    `/api/v1/namespaces/${namespace}/pods`,
    { fieldSelector: `metadata.name=${name}` },
    (_type, pod: V1Pod) => {
      const state = pod.status?.containerStatuses?.[0]?.state?.terminated;
      if (state) resolve({ exitCode: state.exitCode, at: Date.now() });
    },
    () => {},
  );
  return { terminated, stop: () => request.abort() };
}

/** As config/demo/deployment.yaml's pod template: Prometheus scrapes pods carrying these. */
export const scrapeAnnotations = {
  'prometheus.io/scrape': 'true',
  'prometheus.io/port': '8080',
  'prometheus.io/path': '/metrics',
};

/** demo-service on the real node, scraped by Prometheus (annotations) and scrapable on `http`. */
export interface DemoOptions {
  replicas?: number;
  readinessProbe?: V1Probe;
  /** More environment (demo-service's METRIC_SHAPES, LATENCY_PROFILE...). */
  env?: V1EnvVar[];
  /** The pod template's labels besides app=<name>. */
  podLabels?: Record<string, string>;
  /** The pod template's annotations besides the scrape annotations. */
  podAnnotations?: Record<string, string>;
}

export function demoServiceDeployment(namespace: string, name: string, opts: DemoOptions = {}): V1Deployment {
  return sampleDeployment(name, {
    namespace,
    labels: { app: name },
    replicas: opts.replicas ?? 1,
    podAnnotations: { ...scrapeAnnotations, ...opts.podAnnotations },
    ...(opts.podLabels ? { podLabels: opts.podLabels } : {}),
    podSpec: realNodePodSpec(),
    containers: [
      {
        name: 'app',
        image: clusterInfo().realNode.demoServiceImage,
        imagePullPolicy: 'Never',
        ports: [{ name: 'http', containerPort: 8080 }],
        env: [{ name: 'LOG_LEVEL', value: 'warn' }, ...(opts.env ?? [])],
        ...(opts.readinessProbe ? { readinessProbe: opts.readinessProbe } : {}),
      },
    ],
  });
}
