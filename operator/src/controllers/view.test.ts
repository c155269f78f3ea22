import type { V1Deployment, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION } from '../api/annotations.ts';
import { deployment, ROLLING_STATUS, sealed, TEST_SEAL } from '../policy/test-fixtures.ts';
import { clusterScoped, FakeInformer, namespace, namespaced, policyObject } from './test-support.ts';
import { ClusterView, type PolicyObject, type ViewInformer } from './view.ts';

function harness(deployments: V1Deployment[], policies: PolicyObject[]) {
  const d = new FakeInformer<V1Deployment>(namespaced, deployments);
  const p = new FakeInformer<PolicyObject>(clusterScoped, policies);
  const ns = new FakeInformer<V1Namespace>(clusterScoped, [namespace('shop'), namespace('lab')]);
  const view = new ClusterView(
    {
      deployments: d as ViewInformer<V1Deployment>,
      namespaces: ns as ViewInformer<V1Namespace>,
      policies: p as ViewInformer<PolicyObject>,
    },
    { seal: TEST_SEAL },
  );
  const notified: string[] = [];
  view.onSelectionChange((key, names) => notified.push(`${key}:${[...names].sort().join('+')}`));
  const selected = (policy: string) => [...view.selectedBy(policy)].map((x) => x.metadata?.name).sort();
  return { view, deployments: d, policies: p, namespaces: ns, notified, selected };
}

const teamRed = policyObject('red', { deploymentSelector: { matchLabels: { team: 'red' } } });
const shopOnly = policyObject('shop', {
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop' } },
});
const red = (name: string, ns = 'shop') => deployment({ name, namespace: ns, labels: { team: 'red' } });
const blue = (name: string, ns = 'shop') => deployment({ name, namespace: ns, labels: { team: 'blue' } });

describe('ClusterView selection index', () => {
  test('answers which policies select a Deployment and which Deployments a policy selects', () => {
    const h = harness([red('a'), blue('b'), red('c', 'lab')], [teamRed, shopOnly]);
    expect(h.selected('red')).toEqual(['a', 'c']);
    expect(h.selected('shop')).toEqual(['a', 'b']);
    expect([...h.view.policiesSelecting('shop/a')].sort()).toEqual(['red', 'shop']);
    expect(h.view.policiesSelecting('lab/c')).toEqual(['red']);
    expect(h.view.selectedCount('red')).toBe(2);
  });

  test('a Deployment event updates the index and names the policies before and after', () => {
    const h = harness([red('a'), blue('b')], [teamRed, shopOnly]);
    h.deployments.put(blue('a'));
    expect(h.selected('red')).toEqual([]);
    h.deployments.put(red('b'));
    h.deployments.delete('shop/b');
    h.deployments.put(blue('z', 'lab'));
    expect(h.notified).toEqual(['shop/a:red+shop', 'shop/b:red+shop', 'shop/b:red+shop']);
    expect(h.selected('shop')).toEqual(['a']);
  });

  test("a namespace's new labels select its Deployments again; other namespaces are not looked at", () => {
    const policy = policyObject('labelled', { namespaceSelector: { matchLabels: { tier: 'web' } } });
    const h = harness([red('a'), red('c', 'lab')], [policy]);
    expect(h.selected('labelled')).toEqual([]);
    h.namespaces.put({ metadata: { name: 'lab', labels: { tier: 'web' } } });
    expect(h.selected('labelled')).toEqual(['c']);
    expect(h.notified).toEqual(['lab/c:labelled']);
  });

  test("a policy's new generation selects again; a status write (same generation) does not", () => {
    const h = harness([red('a'), blue('b')], [teamRed]);
    h.policies.put({ ...teamRed, metadata: { ...teamRed.metadata, resourceVersion: '2' }, status: {} });
    expect(h.notified).toEqual([]);
    const everyone = policyObject('red', {}, 2);
    h.policies.put({ ...everyone, metadata: { ...everyone.metadata, resourceVersion: '3' } });
    expect(h.selected('red')).toEqual(['a', 'b']);
    expect(h.notified).toEqual(['shop/b:red']);
    h.policies.delete('red');
    expect(h.selected('red')).toEqual([]);
    expect(h.notified.slice(1).sort()).toEqual(['shop/a:red', 'shop/b:red']);
  });

  test("a pass over a policy's Deployments that pauses meets each once, whatever the index does meanwhile (a status listed one twice: the CRD refused it)", () => {
    const h = harness([red('a'), red('b'), red('c')], [teamRed]);
    const seen: string[] = [];
    for (const d of h.view.selectedBy('red')) {
      seen.push(d.metadata?.name ?? '');
      if (seen.length === 1) {
        // Meanwhile: a leaves the policy and comes back (the index removes and adds it again),
        // and b is updated without a change of who selects it.
        h.deployments.put(blue('a'));
        h.deployments.put(red('a'));
        h.deployments.put(deployment({ name: 'b', labels: { team: 'red' }, replicas: 9 }));
      }
    }
    expect(seen.sort()).toEqual(['a', 'b', 'c']);
  });

  test('an invalid policy selects nothing', () => {
    const h = harness([red('a')], [policyObject('bad', { mode: 'Sometimes' })]);
    expect(h.selected('bad')).toEqual([]);
    expect(h.view.policiesSelecting('shop/a')).toEqual([]);
  });
});

describe('ClusterView rollout index', () => {
  const record = (extra: object) =>
    JSON.stringify({ policy: 'red', policyGeneration: 1, containers: {}, reason: '', ...extra });
  const withRecord = (name: string, extra: object, status: V1Deployment['status']) => {
    const d = deployment({ name, labels: { team: 'red' }, generation: 2, ...(status ? { status } : {}) });
    d.metadata = { ...d.metadata, annotations: { [APPLIED_ANNOTATION]: record(extra) } };
    return sealed(d);
  };
  const rolling = ROLLING_STATUS;
  const rollout = { rollout: { generation: 2, startedAt: '2026-11-30T00:00:00Z', previous: {} } };

  test('holds the Deployments whose record names an unfinished rollout or a failure, by policy', () => {
    const failed = {
      failure: { policyGeneration: 1, reason: 'RolloutTimedOut', message: 'm', at: '2026-11-30T00:00:00Z' },
    };
    const h = harness(
      [
        withRecord('rolling', rollout, rolling),
        withRecord('done', rollout, undefined),
        withRecord('failed', failed, undefined),
        red('plain'),
        // A tenant's own records: unsealed, or sealed for another Deployment.
        {
          ...withRecord('forged', failed, undefined),
          metadata: { ...red('forged').metadata, annotations: { [APPLIED_ANNOTATION]: record(failed) } },
        },
        {
          ...withRecord('copied', rollout, rolling),
          metadata: {
            ...red('copied').metadata,
            annotations: withRecord('rolling', rollout, rolling).metadata?.annotations ?? {},
          },
        },
      ],
      [teamRed],
    );
    expect([...h.view.rolloutsOf('red')].sort()).toEqual(['shop/failed', 'shop/rolling']);
    // The rollout completes: out of the index, with the event that says so.
    h.deployments.put(withRecord('rolling', rollout, undefined));
    expect([...h.view.rolloutsOf('red')]).toEqual(['shop/failed']);
    h.deployments.delete('shop/failed');
    expect([...h.view.rolloutsOf('red')]).toEqual([]);
    expect([...h.view.rolloutsOf('other')]).toEqual([]);
  });
});

describe('ClusterView Services', () => {
  const service = (name: string, selector: Record<string, string>, appProtocol?: string): V1Service => ({
    metadata: { name, namespace: 'shop' },
    spec: { selector, ports: [{ port: 80, targetPort: 8080, ...(appProtocol ? { appProtocol } : {}) }] },
  });

  function withServices(services: V1Service[]) {
    const d = new FakeInformer<V1Deployment>(namespaced, [red('a'), blue('b'), red('c', 'lab')]);
    const s = new FakeInformer<V1Service>(namespaced, services);
    const view = new ClusterView({
      deployments: d as ViewInformer<V1Deployment>,
      namespaces: new FakeInformer<V1Namespace>(clusterScoped, []) as ViewInformer<V1Namespace>,
      policies: new FakeInformer<PolicyObject>(clusterScoped, []) as ViewInformer<PolicyObject>,
      services: s as ViewInformer<V1Service>,
    });
    const changed: string[][] = [];
    view.onServicesChanged((keys) => changed.push(keys));
    return { view, services: s, changed };
  }

  test("servicesIn gives the namespace's Services as planning reads them", () => {
    const h = withServices([service('api', { team: 'red' }, 'grpc')]);
    expect(h.view.servicesIn('shop')).toEqual([
      {
        namespace: 'shop',
        name: 'api',
        selector: { team: 'red' },
        ports: [{ port: 80, targetPort: 8080, appProtocol: 'grpc' }],
      },
    ]);
    expect(h.view.servicesIn('lab')).toEqual([]);
  });

  test('a Service change names the Deployments of its namespace it selects, before or after; an equal update none', () => {
    const h = withServices([]);
    // The template's labels count (red() and blue() label the template app: <name>).
    h.services.put(service('api', { app: 'a' }));
    expect(h.changed).toEqual([['shop/a']]);
    h.services.put(service('api', { app: 'b' }));
    expect(h.changed.at(-1)?.sort()).toEqual(['shop/a', 'shop/b']);
    const count = h.changed.length;
    h.services.put({ ...service('api', { app: 'b' }), status: { loadBalancer: {} } });
    expect(h.changed.length).toBe(count);
    h.services.delete('shop/api');
    expect(h.changed.at(-1)).toEqual(['shop/b']);
  });

  test('without a Services informer: none', () => {
    const h = harness([red('a')], []);
    expect(h.view.servicesIn('shop')).toEqual([]);
  });
});

describe('ClusterView pods', () => {
  const pod = (
    name: string,
    labels: Record<string, string>,
    replicaSet: string,
    namespace = 'shop',
  ): V1Pod => ({
    metadata: {
      name,
      namespace,
      labels,
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: replicaSet, uid: replicaSet, controller: true },
      ],
    },
  });
  const view = (pods: V1Pod[]) =>
    new ClusterView({
      deployments: new FakeInformer<V1Deployment>(namespaced, []) as ViewInformer<V1Deployment>,
      namespaces: new FakeInformer<V1Namespace>(clusterScoped, []) as ViewInformer<V1Namespace>,
      policies: new FakeInformer<PolicyObject>(clusterScoped, []) as ViewInformer<PolicyObject>,
      pods: new FakeInformer<V1Pod>(namespaced, pods) as ViewInformer<V1Pod>,
    });

  test("a Deployment's pods: its ReplicaSets' that its selector matches; not another workload's, nor another namespace's", () => {
    const web = deployment({ name: 'web' });
    const v = view([
      pod('web-1', { app: 'web', 'pod-template-hash': 'abc' }, 'web-abc'),
      pod('web-2', { app: 'web', 'pod-template-hash': 'def' }, 'web-def'),
      // Negative controls: a Deployment whose name extends this one's, selector-matching labels.
      pod('web-api-1', { app: 'web', 'pod-template-hash': 'xyz' }, 'web-api-xyz'),
      pod('web-3', { app: 'other', 'pod-template-hash': 'abc' }, 'web-abc'),
      pod('web-4', { app: 'web', 'pod-template-hash': 'abc' }, 'web-abc', 'lab'),
    ]);
    expect(v.podsOf(web).map((p) => p.metadata?.name)).toEqual(['web-1', 'web-2']);
    expect(v.podsIn('lab').map((p) => p.metadata?.name)).toEqual(['web-4']);
    // Without a pod cache: none.
    const none = new ClusterView({
      deployments: new FakeInformer<V1Deployment>(namespaced, []) as ViewInformer<V1Deployment>,
      namespaces: new FakeInformer<V1Namespace>(clusterScoped, []) as ViewInformer<V1Namespace>,
      policies: new FakeInformer<PolicyObject>(clusterScoped, []) as ViewInformer<PolicyObject>,
    });
    expect(none.podsOf(web)).toEqual([]);
  });
});
