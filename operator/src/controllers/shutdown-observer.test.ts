import type { V1Deployment, V1Namespace, V1ObjectReference, V1Pod } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import type { Informer } from '../kube/informer.ts';
import { silentLogger } from '../log.ts';
import { deployment } from '../policy/test-fixtures.ts';
import { createOperatorMetrics } from './metrics.ts';
import { ShutdownHistory } from './shutdown-history.ts';
import { shutdownObserver } from './shutdown-observer.ts';
import { clusterScoped, FakeInformer, namespace, namespaced, policyObject } from './test-support.ts';
import { ClusterView, type PolicyObject } from './view.ts';

function pod(uid: string, exitCode: number, finishedAt: string, owner = 'web'): V1Pod {
  return {
    metadata: {
      uid,
      name: `${owner}-5d8f7-${uid}`,
      namespace: 'shop',
      labels: { 'pod-template-hash': '5d8f7' },
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${owner}-5d8f7`, uid: 'rs', controller: true },
      ],
      deletionTimestamp: new Date('2026-11-30T12:00:30Z'),
      deletionGracePeriodSeconds: 30,
    },
    status: {
      containerStatuses: [
        {
          name: 'web',
          image: 'x',
          imageID: '',
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode, finishedAt: new Date(finishedAt) } },
        },
      ],
    },
  };
}

function harness(leader = true) {
  const registry = new Registry();
  const metrics = createOperatorMetrics(registry);
  const view = new ClusterView({
    deployments: new FakeInformer<V1Deployment>(namespaced, [
      deployment({ name: 'web' }),
      deployment({ name: 'other', namespace: 'elsewhere' }),
    ]) as unknown as Informer<V1Deployment>,
    namespaces: new FakeInformer<V1Namespace>(clusterScoped, [
      namespace('shop'),
    ]) as unknown as Informer<V1Namespace>,
    policies: new FakeInformer<PolicyObject>(clusterScoped, [
      policyObject('web-tier', {
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop' } },
      }),
    ]) as unknown as Informer<PolicyObject>,
  });
  const events: { object: V1ObjectReference; type: string; reason: string; message: string }[] = [];
  const history = new ShutdownHistory();
  const handlers = shutdownObserver({
    history,
    view,
    events: { record: (object, type, reason, message) => events.push({ object, type, reason, message }) },
    metrics,
    isLeader: () => leader,
    logger: silentLogger(),
  });
  return { handlers, events, history, text: () => registry.metrics() };
}

describe('shutdownObserver', () => {
  test('a container killed at the deadline: counted once, and a Warning Event on its Deployment', async () => {
    const h = harness();
    const killed = pod('a', 137, '2026-11-30T12:00:30Z');
    h.handlers.onUpdate?.(killed, killed);
    h.handlers.onUpdate?.(killed, killed); // the same status again
    h.handlers.onDelete?.(killed);
    expect(await h.text()).toContain(
      'gracefulshutdown_shutdowns_total{policy="web-tier",outcome="Killed"} 1',
    );
    expect(h.events).toHaveLength(1);
    expect(h.events[0]).toMatchObject({
      type: 'Warning',
      reason: 'ShutdownKilled',
      object: { kind: 'Deployment', name: 'web' },
    });
    expect(h.events[0]?.message).toContain('killed at the end of the 30 s grace period (exit code 137)');
    expect(h.history.killedAt('shop/web')).toBe(30);
  });

  test('a clean exit is counted with its duration, with no Event', async () => {
    const h = harness();
    h.handlers.onDelete?.(pod('b', 0, '2026-11-30T12:00:08Z'));
    const text = await h.text();
    expect(text).toContain('gracefulshutdown_shutdowns_total{policy="web-tier",outcome="Clean"} 1');
    expect(text).toContain(
      'gracefulshutdown_shutdown_duration_seconds_bucket{le="10",policy="web-tier",outcome="Clean"} 1',
    );
    expect(h.events).toHaveLength(0);
  });

  test('a follower and an ungoverned Deployment count nothing', async () => {
    const follower = harness(false);
    follower.handlers.onDelete?.(pod('c', 137, '2026-11-30T12:00:30Z'));
    expect(await follower.text()).not.toContain('gracefulshutdown_shutdowns_total{');
    expect(follower.events).toHaveLength(0);
    // It still remembers the kill: its admissions and a later leadership plan with it.
    expect(follower.history.killedAt('shop/web')).toBe(30);
    const h = harness();
    const elsewhere = pod('d', 137, '2026-11-30T12:00:30Z', 'other');
    elsewhere.metadata = { ...elsewhere.metadata, namespace: 'elsewhere' };
    h.handlers.onDelete?.(elsewhere);
    expect(await h.text()).not.toContain('gracefulshutdown_shutdowns_total{');
    expect(h.history.killedAt('elsewhere/other')).toBeUndefined();
  });
});
