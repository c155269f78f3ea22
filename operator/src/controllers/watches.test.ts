import { readFileSync } from 'node:fs';
import type { V1Deployment, V1Namespace, V1Service } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION, FIELD_MANAGER, PRESTOP_SECONDS_ANNOTATION } from '../api/annotations.ts';
import { deploymentCacheTransform, shareUnchangedParts } from '../kube/informer.ts';
import { deployment, ROLLING_STATUS, sealed, TEST_SEAL } from '../policy/test-fixtures.ts';
import { Trigger } from '../runtime/trigger.ts';
import { DeploymentMemory, deploymentChangeMatters, watchDeployments } from './deployment-controller.ts';
import { watchPolicyStatuses } from './policy-status-controller.ts';
import { RolloutTracker } from './rollout-tracker.ts';
import { clusterScoped, FakeInformer, namespace, namespaced, policyObject } from './test-support.ts';
import { ClusterView, type PolicyObject, type ViewInformer } from './view.ts';

function harness(deployments: V1Deployment[], policies: PolicyObject[]) {
  const d = new FakeInformer<V1Deployment>(namespaced, deployments);
  const p = new FakeInformer<PolicyObject>(clusterScoped, policies);
  const s = new FakeInformer<V1Service>(namespaced, []);
  const view = new ClusterView(
    {
      services: s as ViewInformer<V1Service>,
      deployments: d as ViewInformer<V1Deployment>,
      namespaces: new FakeInformer<V1Namespace>(clusterScoped, [
        namespace('shop'),
        namespace('lab'),
      ]) as ViewInformer<V1Namespace>,
      policies: p as ViewInformer<PolicyObject>,
    },
    { seal: TEST_SEAL },
  );
  const tracker = new RolloutTracker();
  const memory = new DeploymentMemory();
  const triggers = {
    estimateChanged: new Trigger<[string, string]>(),
    killed: new Trigger<[string, string]>(),
    probeChecksDone: new Trigger<[string, boolean]>(),
    verdictFound: new Trigger<[string, string]>(),
  };
  const queued = { deployments: [] as string[], statuses: [] as string[] };
  watchDeployments(
    {
      enqueue: (key) => queued.deployments.push(key),
      enqueueAfter: (key, ms) => queued.deployments.push(`${key} after ${ms}`),
    },
    { view, tracker, seal: TEST_SEAL, rolloutCheckMs: 500 },
    memory,
    triggers,
  );
  watchPolicyStatuses(
    {
      enqueue: (name) => queued.statuses.push(name),
      enqueueAfter: (name, ms) => queued.statuses.push(`${name} after ${ms}`),
    },
    view,
    { delay: () => 1000 },
    triggers,
  );
  const take = () => {
    const taken = {
      deployments: [...new Set(queued.deployments)].sort(),
      statuses: [...new Set(queued.statuses)].sort(),
    };
    queued.deployments.length = 0;
    queued.statuses.length = 0;
    return taken;
  };
  return { deployments: d, policies: p, services: s, tracker, memory, triggers, take };
}

const shopOnly = policyObject('shop', {
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop' } },
});
/** shopOnly with one slot in its rollout budget. */
const shopOneSlot = policyObject('shop', {
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop' } },
  rollout: { maxConcurrent: 1 },
});
const labOnly = policyObject('lab', {
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'lab' } },
});

describe('what wakes the Deployment and policy status controllers', () => {
  test("a Deployment's change enqueues it and, debounced, the status of the policies selecting it only", () => {
    const h = harness(
      [deployment({ name: 'a' }), deployment({ name: 'b', namespace: 'lab' })],
      [shopOnly, labOnly],
    );
    h.take();
    h.deployments.put({
      ...deployment({ name: 'a' }),
      spec: { ...deployment({ name: 'a' }).spec, replicas: 5 },
    } as V1Deployment);
    expect(h.take()).toEqual({ deployments: ['shop/a'], statuses: ['shop after 1000'] });
    // Selected by no policy: the Deployment only (a release may be due), no status.
    h.deployments.put(deployment({ name: 'c', namespace: 'other' }));
    expect(h.take()).toEqual({ deployments: ['other/c'], statuses: [] });
  });

  test("a policy's new generation enqueues its Deployments and every status; a status write only its own status, debounced", () => {
    const h = harness(
      [deployment({ name: 'a' }), deployment({ name: 'b', namespace: 'lab' })],
      [shopOnly, labOnly],
    );
    h.take();
    // Not at once: each status write would queue the next pass while Deployments change.
    h.policies.put({ ...shopOnly, metadata: { ...shopOnly.metadata, resourceVersion: '2' }, status: {} });
    expect(h.take()).toEqual({ deployments: [], statuses: ['shop after 1000'] });
    const everywhere = policyObject('shop', {}, 2);
    h.policies.put({ ...everywhere, metadata: { ...everywhere.metadata, resourceVersion: '3' } });
    expect(h.take()).toEqual({
      deployments: ['lab/b', 'shop/a'],
      statuses: ['lab after 1000', 'shop', 'shop after 1000'],
    });
  });

  test('a policy deleted: the Deployments it selected are enqueued (to be released)', () => {
    const h = harness([deployment({ name: 'a' })], [shopOnly]);
    h.take();
    h.policies.delete('shop');
    expect(h.take()).toEqual({ deployments: ['shop/a'], statuses: ['shop', 'shop after 1000'] });
  });

  describe("the deployment controller's change filter: status updates that decide nothing", () => {
    /** The next version of `d` as the cache keeps it: spec and metadata objects shared, a new status. */
    const statusUpdate = (d: V1Deployment, status: V1Deployment['status']): V1Deployment => ({
      ...d,
      metadata: { ...d.metadata, resourceVersion: `${Number(d.metadata?.resourceVersion ?? 0) + 1}` },
      status,
    });
    const rolling = deployment({
      name: 'a',
      replicas: 3,
      generation: 2,
      status: { ...ROLLING_STATUS, replicas: 4, updatedReplicas: 1 },
    });
    const done = statusUpdate(rolling, {
      observedGeneration: 2,
      replicas: 3,
      updatedReplicas: 3,
      readyReplicas: 3,
      availableReplicas: 3,
    });
    const unavailable = statusUpdate(done, { ...done.status, availableReplicas: 2 });
    const stalled = statusUpdate(rolling, {
      ...rolling.status,
      conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }],
    });

    test("a rollout's counts moving: the Deployment is not enqueued, its status still is", () => {
      const h = harness([rolling], [shopOnly]);
      h.take();
      const next = statusUpdate(rolling, { ...ROLLING_STATUS, replicas: 4, updatedReplicas: 2 });
      h.deployments.put(next);
      expect(h.take()).toEqual({ deployments: [], statuses: ['shop after 1000'] });
      h.memory.waitsOnStatus.add('shop/a');
      expect(deploymentChangeMatters('shop/a', rolling, next, h.memory)).toBe(false);
    });

    test('the rollout done or unhealthy: enqueued only where the reconcile waits for it', () => {
      const memory = new DeploymentMemory();
      // Negative control: no reconcile waits for this Deployment's rollout.
      expect(deploymentChangeMatters('shop/a', rolling, done, memory)).toBe(false);
      expect(deploymentChangeMatters('shop/a', done, unavailable, memory)).toBe(false);
      memory.waitsOnStatus.add('shop/a');
      expect(deploymentChangeMatters('shop/a', rolling, done, memory)).toBe(true);
      expect(deploymentChangeMatters('shop/a', done, unavailable, memory)).toBe(true);
      const h = harness([rolling], [shopOnly]);
      h.take();
      h.memory.waitsOnStatus.add('shop/a');
      h.deployments.put(done);
      expect(h.take().deployments).toEqual(['shop/a']);
    });

    test("past the Deployment controller's progress deadline: enqueued (a failure of the operator's rollout)", () => {
      expect(deploymentChangeMatters('shop/a', rolling, stalled, new DeploymentMemory())).toBe(true);
      // Once: a later count change of the stalled rollout decides nothing new.
      const later = statusUpdate(stalled, { ...stalled.status, readyReplicas: 2 });
      expect(deploymentChangeMatters('shop/a', stalled, later, new DeploymentMemory())).toBe(false);
    });

    test('a new spec, labels, annotations or generation: enqueued, whatever the status', () => {
      const memory = new DeploymentMemory();
      const spec = { ...rolling, spec: structuredClone(rolling.spec) };
      const labels = { ...rolling, metadata: { ...rolling.metadata, labels: { app: 'a' } } };
      const annotations = {
        ...rolling,
        metadata: { ...rolling.metadata, annotations: { [PRESTOP_SECONDS_ANNOTATION]: '9' } },
      };
      const generation = { ...rolling, metadata: { ...rolling.metadata, generation: 3 } };
      for (const next of [spec, labels, annotations, generation])
        expect(deploymentChangeMatters('shop/a', rolling, next as V1Deployment, memory)).toBe(true);
      // Negative controls: the same objects, a new resourceVersion; an annotation of another's.
      expect(deploymentChangeMatters('shop/a', rolling, statusUpdate(rolling, rolling.status), memory)).toBe(
        false,
      );
      const revision = {
        ...rolling,
        metadata: { ...rolling.metadata, annotations: { 'deployment.kubernetes.io/revision': '2' } },
      };
      expect(deploymentChangeMatters('shop/a', rolling, revision, memory)).toBe(false);
    });

    test("the echo of the operator's own write (the generation it produced): not enqueued; a later write is", () => {
      const memory = new DeploymentMemory();
      const written = {
        ...rolling,
        metadata: { ...rolling.metadata, generation: 3, annotations: { x: 'y' } },
      };
      memory.expectations.wrote('shop/a', written);
      expect(deploymentChangeMatters('shop/a', rolling, written, memory)).toBe(false);
      const after = {
        ...written,
        metadata: { ...written.metadata, generation: 4, annotations: { [APPLIED_ANNOTATION]: '{"a":1}' } },
      };
      expect(deploymentChangeMatters('shop/a', written, after, memory)).toBe(true);
      // Another object under the same name (recreated) is no echo.
      const recreated = { ...written, metadata: { ...written.metadata, uid: 'other' } };
      expect(deploymentChangeMatters('shop/a', rolling, recreated, memory)).toBe(true);
    });
  });

  test("an operator rollout that finishes wakes the Deployments waiting for its policy's budget, not another's", () => {
    const record = JSON.stringify({ policy: 'shop', policyGeneration: 1, containers: {}, reason: '' });
    const rolling = deployment({
      name: 'a',
      generation: 2,
      status: ROLLING_STATUS,
    });
    rolling.metadata = { ...rolling.metadata, annotations: { [APPLIED_ANNOTATION]: record } };
    const h = harness([rolling], [shopOnly, labOnly]);
    h.tracker.wait('shop', 'shop/w1');
    h.tracker.wait('lab', 'lab/w2');
    h.take();
    const done = deployment({ name: 'a', generation: 2 });
    done.metadata = { ...done.metadata, annotations: { [APPLIED_ANNOTATION]: record } };
    h.deployments.put(done);
    expect(h.take().deployments).toEqual(['shop/a', 'shop/w1']);
    expect(h.tracker.takeWaiting('lab')).toEqual(['lab/w2']);
    expect(h.tracker.wokenCount('shop')).toBe(1);
  });

  describe('the budget of a policy frees a slot: its waiting Deployments are woken', () => {
    const record = (extra: object = {}) =>
      JSON.stringify({ policy: 'shop', policyGeneration: 1, containers: {}, reason: '', ...extra });
    const rollout = { rollout: { generation: 2, startedAt: new Date().toISOString(), previous: {} } };
    /** Deployment a, rolling out (generation 2 observed, 1 of 2 updated). */
    const rolling = (text: string, options: { labels?: Record<string, string>; updated?: number } = {}) =>
      sealed(
        deployment({
          name: 'a',
          generation: 2,
          status: { ...ROLLING_STATUS, replicas: 2, updatedReplicas: options.updated ?? 0 },
          annotations: { [APPLIED_ANNOTATION]: text },
          ...(options.labels ? { labels: options.labels } : {}),
        }),
      );

    test('the record names no unfinished rollout any more (rewritten while still rolling)', () => {
      const h = harness([rolling(record(rollout))], [shopOneSlot]);
      h.tracker.wait('shop', 'shop/w1');
      h.take();
      h.deployments.put(rolling(record()));
      expect(h.take().deployments).toEqual(['shop/a', 'shop/w1']);
    });

    test('a Deployment in rollout is no longer selected by the policy (its labels changed)', () => {
      const h = harness(
        [rolling(record(rollout), { labels: { app: 'x' } })],
        [policyObject('shop', { deploymentSelector: { matchLabels: { app: 'x' } } })],
      );
      h.tracker.wait('shop', 'shop/w1');
      h.take();
      h.deployments.put(rolling(record(rollout), { labels: { app: 'y' } }));
      expect(h.take().deployments).toEqual(['shop/a', 'shop/w1']);
    });

    test('a reservation released (its write failed)', () => {
      const h = harness([], [shopOneSlot]);
      h.tracker.reserve('shop/a', 'shop', 'uid-a');
      h.tracker.wait('shop', 'shop/w1');
      h.take();
      h.tracker.release('shop/a');
      expect(h.take().deployments).toEqual(['shop/w1']);
    });

    test('one slot, one key: the one that waited longest; one that does not take it passes it on', () => {
      const h = harness([rolling(record(rollout))], [shopOneSlot]);
      h.tracker.wait('shop', 'shop/w1');
      h.tracker.wait('shop', 'shop/w2');
      h.take();
      h.deployments.put(rolling(record()));
      expect(h.take().deployments).toEqual(['shop/a', 'shop/w1']);
      // A second event for the same slot wakes nobody more: w1 is woken and not yet reconciled.
      h.tracker.reserve('shop/x', 'shop', 'uid-x');
      h.tracker.release('shop/x');
      expect(h.take().deployments).toEqual([]);
      // w1's reconcile finds nothing to write any more: the slot goes to w2.
      h.tracker.settleWoken('shop/w1');
      expect(h.take().deployments).toEqual(['shop/w2']);
    });

    test('negative control: progress of a rollout still under way wakes nobody', () => {
      const h = harness([rolling(record(rollout))], [shopOneSlot]);
      h.tracker.wait('shop', 'shop/w1');
      h.take();
      h.deployments.put(rolling(record(rollout), { updated: 1 }));
      expect(h.take().deployments).toEqual(['shop/a']);
      // Releasing a key that holds no reservation frees nothing either.
      h.tracker.release('shop/other');
      expect(h.take().deployments).toEqual([]);
      expect(h.tracker.takeWaiting('shop')).toEqual(['shop/w1']);
    });
  });
});

describe('Services', () => {
  test("a Service's change enqueues the Deployments whose template it selects and their policies' status", () => {
    const h = harness(
      [deployment({ name: 'a' }), deployment({ name: 'b' }), deployment({ name: 'c', namespace: 'lab' })],
      [shopOnly, labOnly],
    );
    h.take();
    h.services.put({
      metadata: { name: 'api', namespace: 'shop' },
      spec: { selector: { app: 'a' }, ports: [{ port: 80, targetPort: 8080, appProtocol: 'grpc' }] },
    });
    expect(h.take()).toEqual({ deployments: ['shop/a'], statuses: ['shop after 1000'] });
  });
});

describe('the change filter against a real rollout (testdata/rollout-events.json, test/cluster/record-rollout.ts)', () => {
  /**
   * One template change of a 2-replica Deployment by a server-side apply under the operator's
   * field manager: the apply's answer, and the 9 watch events that followed (kube-controller-
   * manager's Deployment controller), managedFields included.
   */
  const recording = JSON.parse(
    readFileSync(new URL('./testdata/rollout-events.json', import.meta.url), 'utf8'),
  ) as { written: V1Deployment & { type: string }; events: (V1Deployment & { type: string })[] };
  const untyped = ({ type: _type, ...object }: V1Deployment & { type: string }) => object as V1Deployment;
  const recorded = recording.events.map(untyped);
  const written = untyped(recording.written);
  /** What the operator's Deployment cache keeps of an object (main.ts). */
  const transform = deploymentCacheTransform<V1Deployment>(FIELD_MANAGER);
  /** The Deployment before the write: the first generation, settled, without the write's changes. */
  const before: V1Deployment = transform({
    ...structuredClone(written),
    metadata: { ...written.metadata, generation: 1, annotations: {}, managedFields: [] },
    spec: {
      ...written.spec,
      template: { ...written.spec?.template, spec: { containers: [{ name: 'web' }] } },
    },
  } as V1Deployment);
  /** Replays the recorded events through the cache as the informer keeps it; the keys enqueued per event. */
  function replay(setup: (h: ReturnType<typeof harness>) => void): string[][] {
    const h = harness([before], [policyObject('all', {})]);
    setup(h);
    h.take();
    let cached = before;
    return recorded.map((event) => {
      cached = shareUnchangedParts(transform(structuredClone(event)), cached);
      h.deployments.put(cached);
      return h.take().deployments;
    });
  }

  test("the operator's write and its rollout: nothing wakes the reconcile that wrote (the echo and 8 status updates)", () => {
    const woken = replay((h) => h.memory.expectations.wrote('recorded/web', written));
    expect(woken).toEqual(recorded.map(() => []));
  });

  test('the same when the echo and the first status updates arrive before the write is answered', () => {
    const h = harness([before], [policyObject('all', {})]);
    h.take();
    let cached = before;
    const put = (event: V1Deployment) => {
      cached = shareUnchangedParts(transform(structuredClone(event)), cached);
      h.deployments.put(cached);
    };
    h.memory.expectations.begin('recorded/web');
    for (const event of recorded.slice(0, 3)) put(event);
    h.memory.expectations.wrote('recorded/web', written);
    h.memory.expectations.end('recorded/web');
    for (const event of recorded.slice(3)) put(event);
    expect(h.take().deployments).toEqual([]);
  });

  test('negative control: the same events after a write of someone else wake it once, for the write', () => {
    const woken = replay(() => {});
    expect(woken[0]).toEqual(['recorded/web']);
    expect(woken.slice(1).flat()).toEqual([]);
  });

  test("a reconcile waiting for the Deployment's own rollout is woken by its status, the end included", () => {
    const woken = replay((h) => {
      h.memory.expectations.wrote('recorded/web', written);
      h.memory.waitsOnStatus.add('recorded/web');
    });
    expect(woken.at(-1)).toEqual(['recorded/web']);
    // Only where what the decision reads changed (rolloutSignature): not at every event.
    expect(woken.flat().length).toBeLessThan(recorded.length);
  });
});

describe('an update that arrives while the write is in flight (its watch event before its answer)', () => {
  const before = deployment({ name: 'a', generation: 1 });
  const echo = {
    ...before,
    metadata: { ...before.metadata, generation: 2, annotations: { [APPLIED_ANNOTATION]: '{}' } },
  };

  test('held until the answer: the echo wakes nothing', () => {
    const h = harness([before], [shopOnly]);
    h.take();
    h.memory.expectations.begin('shop/a');
    h.deployments.put(echo);
    expect(h.take().deployments).toEqual([]);
    h.memory.expectations.wrote('shop/a', echo);
    h.memory.expectations.end('shop/a');
    expect(h.take().deployments).toEqual([]);
  });

  test("negative control: someone else's change held meanwhile wakes it once the write ended, answered or failed", () => {
    const h = harness([before], [shopOnly]);
    h.take();
    h.memory.expectations.begin('shop/a');
    h.deployments.put(echo);
    expect(h.take().deployments).toEqual([]);
    // The write failed: no expectation, the update is a change of someone else's.
    h.memory.expectations.end('shop/a');
    expect(h.take().deployments).toEqual(['shop/a']);
  });
});
