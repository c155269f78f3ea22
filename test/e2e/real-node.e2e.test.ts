// Kubernetes termination semantics as users see them, on the real node: a preStop sleep delays
// SIGTERM by its seconds, a container that ignores SIGTERM is SIGKILLed at the grace deadline
// (exit code 137), and a pod whose readiness fails at SIGTERM leaves the Service's endpoints
// the way the EndpointSlice conditions say. The host's guard is in place while the node runs.
import { CoreV1Api, DiscoveryV1Api, type V1EndpointConditions } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { hostNetwork, listGuard } from '../cluster/node/host.ts';
import { REAL_NODE_NAME } from '../cluster/node/node.ts';
import { guardDrops, waitFor } from '../operator/harness.ts';
import { createReadyPod, realNodePod, signalProbeContainer, watchTermination } from './real-pods.ts';
import { adminKubeConfig, useNamespace } from './support.ts';

const ns = useNamespace('termination');
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);

async function sigtermAt(ip: string): Promise<number | null> {
  const body = (await (
    await fetch(`http://${ip}:8080/sigterm`, { signal: AbortSignal.timeout(1000) })
  ).json()) as {
    sigterm: number | null;
  };
  return body.sigterm;
}

describe('the real node', () => {
  test('runs behind the nft guard: a packet to a cluster address that no rule routes locally is dropped', async () => {
    const guard = await listGuard();
    expect(guard).toContain(`iifname "${hostNetwork.bridge}" oifname != "${hostNetwork.bridge}"`);
    expect(guard).toContain(hostNetwork.serviceCidr);
    const node = await core().readNode({ name: REAL_NODE_NAME });
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    // A kwok pod's IP is fake: without the guard this SYN would take the default route off the
    // machine. With it, the connection times out and the drop counter moves.
    const before = await guardDrops();
    const attempt = await fetch('http://10.244.0.7:8080/', { signal: AbortSignal.timeout(1500) }).then(
      () => 'answered',
      (err: Error) => err.name,
    );
    expect(attempt).toBe('TimeoutError');
    expect(await guardDrops()).toBeGreaterThan(before);
  });

  test('an image that is not imported is never pulled: the pull goes to 127.0.0.1, not to a registry', async () => {
    await core().createNamespacedPod({
      namespace: ns.name,
      body: realNodePod('unpullable', {
        containers: [
          { name: 'app', image: 'registry.example/not-imported:1', imagePullPolicy: 'IfNotPresent' },
        ],
      }),
    });
    const message = await waitFor('the pull to fail', async () => {
      const pod = await core().readNamespacedPod({ namespace: ns.name, name: 'unpullable' });
      const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
      return waiting?.reason === 'ErrImagePull' || waiting?.reason === 'ImagePullBackOff'
        ? waiting.message
        : undefined;
    });
    expect(message).toContain('127.0.0.1:9');
    expect(message).not.toMatch(/lookup registry\.example/);
  });
});

describe('termination semantics', () => {
  test('a preStop sleep of 3 s delays SIGTERM by 3 s', async () => {
    const container = {
      ...signalProbeContainer({ exitAfterMs: 5_000 }),
      lifecycle: { preStop: { sleep: { seconds: 3 } } },
    };
    const pod = await createReadyPod(
      ns.name,
      realNodePod('prestop', { containers: [container], terminationGracePeriodSeconds: 20 }),
    );
    const ip = pod.status?.podIP as string;
    expect(await sigtermAt(ip)).toBeNull();
    const deletedAt = Date.now();
    await core().deleteNamespacedPod({ namespace: ns.name, name: 'prestop' });
    const sigterm = await waitFor('SIGTERM in the pod', () => sigtermAt(ip).then((t) => t ?? undefined), {
      intervalMs: 100,
      timeoutMs: 15_000,
    });
    const delayMs = sigterm - deletedAt;
    expect(delayMs).toBeGreaterThanOrEqual(3_000);
    expect(delayMs).toBeLessThan(5_000);
  });

  test('a container that ignores SIGTERM is SIGKILLed at the grace deadline: exit code 137', async () => {
    const pod = await createReadyPod(
      ns.name,
      realNodePod('stubborn', {
        containers: [signalProbeContainer({ ignoreSigterm: true })],
        terminationGracePeriodSeconds: 3,
      }),
    );
    const ip = pod.status?.podIP as string;
    const watch = await watchTermination(ns.name, 'stubborn');
    try {
      const deletedAt = Date.now();
      await core().deleteNamespacedPod({ namespace: ns.name, name: 'stubborn' });
      // SIGTERM arrives at once (no preStop) and is ignored: the process lives on until SIGKILL.
      expect(
        await waitFor('SIGTERM received', () => sigtermAt(ip).then((t) => t ?? undefined), {
          intervalMs: 100,
        }),
      ).toBeGreaterThanOrEqual(deletedAt);
      const killed = await watch.terminated;
      expect(killed.exitCode).toBe(137);
      expect(killed.at - deletedAt).toBeGreaterThanOrEqual(3_000);
    } finally {
      watch.stop();
    }
  });

  test('readiness 503 at SIGTERM: the endpoint goes ready:false serving:true terminating:true, then serving:false', async () => {
    const container = {
      ...signalProbeContainer({ exitAfterMs: 4_000 }),
      lifecycle: { preStop: { sleep: { seconds: 2 } } },
    };
    await core().createNamespacedService({
      namespace: ns.name,
      body: {
        metadata: { name: 'slices' },
        spec: { selector: { app: 'slices' }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    });
    await createReadyPod(
      ns.name,
      realNodePod('slices', { containers: [container], terminationGracePeriodSeconds: 20 }),
    );
    const discovery = adminKubeConfig().makeApiClient(DiscoveryV1Api);
    const conditions = async (): Promise<V1EndpointConditions | undefined> => {
      const slices = await discovery.listNamespacedEndpointSlice({
        namespace: ns.name,
        labelSelector: 'kubernetes.io/service-name=slices',
      });
      return slices.items.flatMap((s) => s.endpoints ?? [])[0]?.conditions;
    };
    const key = (c: V1EndpointConditions | undefined) =>
      c ? `ready=${c.ready} serving=${c.serving} terminating=${c.terminating}` : 'none';
    await waitFor('a ready endpoint', async () => (await conditions())?.ready === true);
    const seen: string[] = [];
    await core().deleteNamespacedPod({ namespace: ns.name, name: 'slices' });
    await waitFor(
      'the endpoint to stop serving',
      async () => {
        const k = key(await conditions());
        if (seen.at(-1) !== k) seen.push(k);
        return k === 'ready=false serving=false terminating=true' || k === 'none';
      },
      { intervalMs: 100, timeoutMs: 20_000 },
    );
    expect(seen).toContain('ready=false serving=true terminating=true');
    expect(seen.indexOf('ready=false serving=true terminating=true')).toBeLessThan(
      Math.max(seen.indexOf('ready=false serving=false terminating=true'), seen.indexOf('none')),
    );
  });
});
