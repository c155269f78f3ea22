import type { V1ContainerStatus, V1Deployment, V1Namespace, V1Pod } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { EstimateCache } from '../latency/estimates.ts';
import { silentLogger } from '../log.ts';
import { applyConfiguration } from '../policy/ownership.ts';
import { PlanCache, planWorkload } from '../policy/plan.ts';
import { container, deployment, NEW_CLUSTER } from '../policy/test-fixtures.ts';
import { type ProbeAnswer, type ProbeTarget, ProbeVerifier } from '../probes/verifier.ts';
import { owedChecks, ProbeRecheck } from './probe-recheck.ts';
import {
  afterApply,
  clusterScoped,
  FakeInformer,
  namespace,
  namespaced,
  policyObject,
} from './test-support.ts';
import { ClusterView, type PolicyObject, type ViewInformer } from './view.ts';

const pod: V1Pod = {
  metadata: {
    name: 'web-5d8f7-abcde',
    namespace: 'shop',
    labels: { app: 'web' },
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d8f7', uid: 'rs' }],
  },
  spec: { containers: [{ name: 'web', ports: [{ name: 'api', containerPort: 8080 }] }] },
  status: {
    phase: 'Running',
    podIP: '10.88.0.5',
    conditions: [{ type: 'Ready', status: 'True' }],
    containerStatuses: [
      {
        name: 'web',
        state: { running: { startedAt: new Date('2020-01-01T00:00:00Z') } },
      } as V1ContainerStatus,
    ],
  },
};

function harness(spec: Record<string, unknown>) {
  const policy = policyObject('p', { mode: 'Enforce', observedLatency: { source: 'None' }, ...spec });
  const estimates = new EstimateCache();
  const asked: ProbeTarget[] = [];
  let answer: ProbeAnswer = { ok: true, url: 'http://10.88.0.5:8080/readyz', outcome: 'answered 200' };
  const verifier = new ProbeVerifier({
    check: async (target) => {
      asked.push(target);
      return answer;
    },
  });
  // Created with no pod to ask: the operator's tcpSocket fallback, as the webhook writes it.
  const fresh = deployment({ containers: [container('web', [['api', 8080]])] });
  const noPods = { lookup: () => () => ({ state: 'NoPods' as const, message: 'no pod' }) };
  const view = new ClusterView({
    deployments: new FakeInformer<V1Deployment>(namespaced, []) as ViewInformer<V1Deployment>,
    namespaces: new FakeInformer<V1Namespace>(clusterScoped, [
      namespace('shop'),
    ]) as ViewInformer<V1Namespace>,
    policies: new FakeInformer<PolicyObject>(clusterScoped, [policy]) as ViewInformer<PolicyObject>,
  });
  const valid = view.parsedPolicies().valid[0];
  if (!valid) throw new Error('policy invalid');
  const first = planWorkload(fresh, valid, { estimates, facts: NEW_CLUSTER, probes: noPods });
  if (!first.ok) throw new Error('plan failed');
  const written = afterApply(fresh, applyConfiguration(fresh, first.nextRecord, first.plan));
  written.metadata = { ...written.metadata, uid: 'd1' };
  (view.deployments as unknown as FakeInformer<V1Deployment>).put(written);
  const verdicts: string[] = [];
  const deps = {
    view,
    plans: new PlanCache(),
    planDeps: { estimates, facts: NEW_CLUSTER, probes: verifier },
    verifier,
    podsOf: () => [pod],
    intervalMs: 1000,
    logger: silentLogger(),
  };
  /** A pass of a recheck whose verdicts are collected in `verdicts`. */
  const recheck = (overrides: Partial<typeof deps> = {}) => {
    const r = new ProbeRecheck({ ...deps, ...overrides });
    r.verdictFound.on((key, name) => verdicts.push(`${key}@${name}`));
    return r;
  };
  return {
    deps,
    recheck,
    asked,
    verdicts,
    setAnswer: (a: ProbeAnswer) => {
      answer = a;
    },
  };
}

describe('ProbeRecheck: the tcpSocket fallback is owed an httpGet check once pods run', () => {
  test('owed once pods could answer, checked in a pass; a Verified verdict settles it', async () => {
    const h = harness({});
    const written = [...h.deps.view.selectedBy('p')][0];
    expect(written?.spec?.template?.spec?.containers[0]?.readinessProbe?.tcpSocket).toEqual({ port: 8080 });
    const owed = owedChecks(h.deps);
    expect(owed.map((o) => [o.container, o.path, o.port, o.timeoutMs])).toEqual([
      ['web', '/readyz', 8080, 1000],
    ]);
    await h.recheck().pass(new AbortController().signal);
    expect(h.asked.map((t) => `${t.podIP}:${t.port}${t.path}`)).toEqual(['10.88.0.5:8080/readyz']);
    expect(h.verdicts).toEqual(['shop/web@p']);
    // Verified: the plan names the upgrade for the next template change, nothing more is owed.
    expect(owedChecks(h.deps)).toEqual([]);
    const planned = h.deps.plans.plan(
      [...h.deps.view.selectedBy('p')][0] as V1Deployment,
      h.deps.view.parsedPolicies().valid[0] as never,
      h.deps.planDeps,
    );
    expect(planned.ok && planned.plan.notes.map((n) => n.message).join()).toContain(
      'succeeded) replaces it then',
    );
  });

  test('an Unverified answer is kept too: nothing owed until it expires', async () => {
    const h = harness({});
    h.setAnswer({ ok: false, url: 'http://10.88.0.5:8080/readyz', outcome: 'answered 404' });
    await h.recheck().pass(new AbortController().signal);
    expect(h.verdicts).toEqual(['shop/web@p']);
    expect(owedChecks(h.deps)).toEqual([]);
  });

  test('no running pod: nothing owed yet (asking would only keep NoPods); a NoPods verdict from before pods ran is owed again', async () => {
    const h = harness({});
    expect(owedChecks({ ...h.deps, podsOf: () => [] })).toEqual([]);
    // The check ran while no pod ran: NoPods is kept for five minutes, yet the pods run now.
    const empty = h.recheck({ podsOf: () => [] });
    await empty.pass(new AbortController().signal);
    expect(h.asked).toEqual([]);
    const deployment = [...h.deps.view.selectedBy('p')][0] as V1Deployment;
    await h.deps.verifier.verify({ deployment, pods: [], container: 'web', path: '/readyz', port: 8080 });
    expect(owedChecks(h.deps).map((o) => o.container)).toEqual(['web']);
  });

  test('Trust: nothing is owed (nothing is checked)', () => {
    expect(owedChecks(harness({ readinessProbe: { verification: 'Trust' } }).deps)).toEqual([]);
  });
});
