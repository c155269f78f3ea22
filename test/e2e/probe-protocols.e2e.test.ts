// Readiness probes that match the port's protocol, on the real node: a real gRPC server and a
// real Redis-protocol server (demo-service with DEMO_PROTOCOL), and an HTTP server that does not
// serve the readiness path, each created new under an Enforce policy through the admission
// webhook — no pod to ask, so no blind httpGet probe — become Ready and roll out
// (docs/policy.md, "Which probe").
import { AppsV1Api, type V1Container, type V1Deployment } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { READINESS_PATH_ANNOTATION } from '../../operator/src/api/annotations.ts';
import { type OperatorProcess, readPolicyStatus, waitFor } from '../operator/harness.ts';
import { demoServiceDeployment } from './real-pods.ts';
import {
  adminKubeConfig,
  deleteWebhookConfiguration,
  installWebhookConfiguration,
  kubectl,
  readDeployment,
  replicaSets,
  rolledOut,
  startOperatorProcess,
  useNamespace,
  usePolicies,
} from './support.ts';

const ns = useNamespace('probe-protocols');
const policies = usePolicies();
const apps = () => adminKubeConfig().makeApiClient(AppsV1Api);
let operator: OperatorProcess | undefined;

/** demo-service on the real node speaking `protocol` on one port (8080) named `portName`. */
function server(
  name: string,
  protocol: 'http' | 'grpc' | 'redis',
  portName: string,
  annotations: Record<string, string> = {},
): V1Deployment {
  const deployment = demoServiceDeployment(ns.name, name);
  const container = deployment.spec?.template?.spec?.containers[0];
  if (container === undefined) throw new Error('demoServiceDeployment has no container');
  container.ports = [{ name: portName, containerPort: 8080 }];
  container.env = [...(container.env ?? []), { name: 'DEMO_PROTOCOL', value: protocol }];
  return { ...deployment, metadata: { ...deployment.metadata, annotations } };
}

const app = (d: V1Deployment): V1Container | undefined =>
  d.spec?.template?.spec?.containers.find((c) => c.name === 'app');

/** Created through the webhook; then its pods must become Ready and the rollout finish. */
async function createAndRollOut(deployment: V1Deployment): Promise<V1Deployment> {
  const created = await apps().createNamespacedDeployment({ namespace: ns.name, body: deployment });
  const name = created.metadata?.name ?? '';
  await waitFor(
    `${name} rolled out with Ready pods`,
    async () => {
      const d = await rolledOut(ns.name, name);
      return d !== undefined && (d.status?.readyReplicas ?? 0) >= 1 ? d : undefined;
    },
    { timeoutMs: 120_000 },
  );
  return readDeployment(ns.name, name);
}

beforeAll(async () => {
  operator = await startOperatorProcess('operator-probe-protocols.log', [
    '--log-level',
    'debug',
    // The fallback's owed httpGet check runs soon after the pods start.
    '--probe-recheck-ms',
    '1000',
  ]);
  await policies.apply('probe-protocols', ns.name, {
    mode: 'Enforce',
    observedLatency: { source: 'None' },
    readinessProbe: { grpcHealthService: true },
  });
  await installWebhookConfiguration([operator], [ns.name]);
});

afterAll(async () => {
  await deleteWebhookConfiguration();
  await operator?.stop();
});

describe('a new Deployment gets the probe its protocol can pass', () => {
  test("a gRPC server (port named grpc): the kubelet's grpc probe on its health service; Ready", async () => {
    const created = await createAndRollOut(server('grpc', 'grpc', 'grpc'));
    // The apiserver defaults service to '' (the server as a whole).
    expect(app(created)?.readinessProbe?.grpc).toMatchObject({ port: 8080 });
    expect(app(created)?.readinessProbe?.httpGet).toBeUndefined();
  });

  test('a Redis-protocol server (port named redis): a tcpSocket probe; Ready', async () => {
    const created = await createAndRollOut(server('redis', 'redis', 'redis'));
    expect(app(created)?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
    expect(app(created)?.readinessProbe?.httpGet).toBeUndefined();
  });

  test('an HTTP server that does not serve the readiness path, on a port whose name says nothing: tcpSocket, Ready', async () => {
    const created = await createAndRollOut(
      server('http-no-readyz', 'http', 'api', { [READINESS_PATH_ANNOTATION]: '/not-served' }),
    );
    expect(app(created)?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
    expect(app(created)?.readinessProbe?.httpGet).toBeUndefined();
    // Its pods now run and refuse GET /not-served: the controller leaves the fallback, no
    // rollout of its own (one ReplicaSet).
    expect(await replicaSets(ns.name, 'http-no-readyz')).toHaveLength(1);
  });

  test("a served readiness path on a port whose name says nothing: tcpSocket at creation, the verified httpGet with the user's next template change (one rollout)", async () => {
    const created = await createAndRollOut(server('http-readyz', 'http', 'api'));
    expect(app(created)?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
    // The pods run: the owed GET /readyz is answered, and the status says it waits for a change.
    await waitFor(
      'the fallback reported verified',
      async () => {
        const status = await readPolicyStatus(adminKubeConfig(), 'probe-protocols');
        const message = status.workloads?.find((w) => w.name === 'http-readyz')?.message ?? '';
        return message.includes('succeeded) replaces it then') ? message : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(await replicaSets(ns.name, 'http-readyz')).toHaveLength(1);
    // The user's template change: the webhook puts the httpGet probe into the same write.
    const patched = await kubectl([
      '-n',
      ns.name,
      'set',
      'env',
      'deployment/http-readyz',
      '--containers=app',
      'RELEASE=2',
    ]);
    expect(patched.code, patched.stderr).toBe(0);
    const changed = await readDeployment(ns.name, 'http-readyz');
    expect(app(changed)?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 8080 });
    expect(app(changed)?.readinessProbe?.tcpSocket).toBeUndefined();
    await waitFor(
      'rolled out with the httpGet probe',
      async () => {
        const d = await rolledOut(ns.name, 'http-readyz');
        return d !== undefined && (d.status?.readyReplicas ?? 0) >= 1 ? d : undefined;
      },
      { timeoutMs: 120_000 },
    );
    expect(await replicaSets(ns.name, 'http-readyz')).toHaveLength(2);
  });
});
