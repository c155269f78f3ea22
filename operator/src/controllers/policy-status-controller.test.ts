import type { V1Deployment } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION, EXCLUDE_ANNOTATION, READINESS_PATH_ANNOTATION } from '../api/annotations.ts';
import type { Condition, GracefulShutdownPolicyStatus } from '../api/policy.ts';
import type { PolicyStatusWriter } from '../kube/status.ts';
import { EstimateCache } from '../latency/estimates.ts';
import { silentLogger } from '../log.ts';
import { container, type DeploymentOptions, deployment, sealed, TEST_SEAL } from '../policy/test-fixtures.ts';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.ts';
import { policyStatusReconciler } from './policy-status-controller.ts';
import { StatusPacer } from './status-pacer.ts';
import { clusterScoped, FakeInformer, namespaced, policyObject, testView } from './test-support.ts';
import type { PolicyObject } from './view.ts';

const RESYNC_MS = 60_000;

interface Harness {
  reconcile: (name: string) => ReturnType<ReturnType<typeof policyStatusReconciler>>;
  reconcileWith: (name: string, signal: AbortSignal) => ReturnType<ReturnType<typeof policyStatusReconciler>>;
  policies: FakeInformer<PolicyObject>;
  deployments: FakeInformer<V1Deployment>;
  /** Every status write, in order (deep copies). */
  writes: { name: string; status: GracefulShutdownPolicyStatus; resourceVersion: string | undefined }[];
  /** Events recorded, in order. */
  events: { object: { kind?: string; name?: string }; type: string; reason: string; message: string }[];
  metrics: OperatorMetrics;
  registry: Registry;
}

function harness(options: {
  policies: PolicyObject[];
  deployments: V1Deployment[];
  estimates?: EstimateCache;
  pacer?: StatusPacer;
  /** How long the apiserver takes to answer a status write. */
  writeMs?: number;
  /** Deployments whose records stay as given, not sealed by the operator's key (forgeries). */
  forged?: V1Deployment[];
}): Harness {
  const deployments = new FakeInformer<V1Deployment>(namespaced, [
    ...options.deployments.map(sealed),
    ...(options.forged ?? []),
  ]);
  const policies = new FakeInformer<PolicyObject>(clusterScoped, options.policies);
  const view = testView(deployments, policies);
  const writes: Harness['writes'] = [];
  const events: Harness['events'] = [];
  const writer: PolicyStatusWriter = {
    write: async (name, status, { resourceVersion }) => {
      if (options.writeMs) await new Promise((resolve) => setTimeout(resolve, options.writeMs));
      writes.push({ name, status: structuredClone(status), resourceVersion });
    },
  };
  const estimates = options.estimates ?? new EstimateCache();
  const registry = new Registry();
  const metrics = createOperatorMetrics(registry);
  const reconciler = policyStatusReconciler({
    view,
    writer,
    events: { record: (object, type, reason, message) => events.push({ object, type, reason, message }) },
    estimates,
    facts: { nativeSleep: true },
    metrics,
    seal: TEST_SEAL,
    resyncMs: RESYNC_MS,
    ...(options.pacer ? { pacer: options.pacer } : {}),
  });
  return {
    reconcile: (name) => reconciler(name, new AbortController().signal, silentLogger()),
    reconcileWith: (name, signal) => reconciler(name, signal, silentLogger()),
    policies,
    deployments,
    writes,
    events,
    metrics,
    registry,
  };
}

/** A metric's value for exactly these label values, undefined when the series does not exist. */
async function seriesValue(
  metric: OperatorMetrics[keyof OperatorMetrics],
  labels: Record<string, string>,
): Promise<number | undefined> {
  const { values } = await metric.get();
  const match = values.find((v) =>
    Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
  );
  return match?.value;
}

/** A time long past: conditions read back with it show whether the reconciler kept them. */
const LONG_AGO = '2020-01-01T00:00:00Z';

/** The written status as the cache shows it later: a copy, its conditions dated LONG_AGO. */
function readBack(status: GracefulShutdownPolicyStatus | undefined): GracefulShutdownPolicyStatus {
  if (!status) throw new Error('nothing was written');
  const copy = structuredClone(status);
  for (const condition of copy.conditions ?? []) condition.lastTransitionTime = LONG_AGO;
  return copy;
}

function conditionOf(status: GracefulShutdownPolicyStatus | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/** Already has what the default policy wants: probe on the declared port, native sleep 5 s, grace 30 s. */
const compliantDeployment = (options: DeploymentOptions = {}) =>
  deployment({
    name: 'api',
    grace: 30,
    containers: [
      container('api', [['http', 8080]], {
        readinessProbe: {
          httpGet: { path: '/readyz', port: 8080 },
          periodSeconds: 5,
          timeoutSeconds: 1,
          failureThreshold: 3,
        },
        lifecycle: { preStop: { sleep: { seconds: 5 } } },
      }),
    ],
    ...options,
  });
/** Nothing set: no probe, no preStop, grace unset (the Kubernetes default, 30 s, is long enough). */
const bareDeployment = (options: DeploymentOptions = {}) => deployment({ name: 'web', ...options });
const optedOutDeployment = (options: DeploymentOptions = {}) =>
  deployment({ name: 'batch', annotations: { [EXCLUDE_ANNOTATION]: 'true' }, ...options });
/** Its readiness-path annotation is unusable: the settings cannot be computed. */
const badAnnotationDeployment = (options: DeploymentOptions = {}) =>
  deployment({ name: 'odd', annotations: { [READINESS_PATH_ANNOTATION]: 'no-slash' }, ...options });

const AUDIT = policyObject('p', { mode: 'Audit' }, 3);
const shop = () => [compliantDeployment(), bareDeployment(), optedOutDeployment()];

describe('policyStatusReconciler', () => {
  test('a pass over thousands of Deployments lets the event loop run in between (admissions wait less)', async () => {
    const many = Array.from({ length: 3_000 }, (_, i) => bareDeployment({ name: `web-${i}` }));
    const h = harness({ policies: [AUDIT], deployments: many });
    let passDone = false;
    const pass = h.reconcile('p').then(() => {
      passDone = true;
    });
    // What a webhook request arriving now would see when it is served.
    const servedDuringPass = await new Promise<boolean>((resolve) => setImmediate(() => resolve(!passDone)));
    await pass;
    expect(servedDuringPass).toBe(true);
    expect(h.writes[0]?.status.counts?.nonCompliant).toBe(3_000);
  });

  test('an Audit policy over three Deployments: one write with the counts, conditions and sorted workloads', async () => {
    // A Deployment in the operator's namespace: excluded by default, so not counted anywhere.
    const h = harness({
      policies: [AUDIT],
      deployments: [...shop(), bareDeployment({ name: 'operator', namespace: 'graceful-shutdown-system' })],
    });
    expect(await h.reconcile('p')).toEqual({ requeueAfterMs: RESYNC_MS });

    expect(h.writes).toHaveLength(1);
    const [write] = h.writes;
    expect(write?.name).toBe('p');
    expect(write?.resourceVersion).toBe('1'); // the policy's, as read: a precondition of the write
    const status = write?.status;
    expect(status?.counts).toEqual({ matched: 2, compliant: 1, nonCompliant: 1, exempt: 1 });
    expect(status?.observedGeneration).toBe(3);
    expect(conditionOf(status, 'Accepted')).toMatchObject({
      status: 'True',
      reason: 'Valid',
      observedGeneration: 3,
    });
    expect(conditionOf(status, 'Compliant')).toMatchObject({
      status: 'False',
      reason: 'NonCompliantWorkloads',
      observedGeneration: 3,
    });
    expect(conditionOf(status, 'Compliant')?.message).toContain('1 of 2 matched Deployments');
    expect(status?.workloads?.map((w) => [w.namespace, w.name, w.verdict, w.reason])).toEqual([
      ['shop', 'web', 'NonCompliant', 'PreStopMissing'],
      ['shop', 'api', 'Compliant', 'SettingsMatch'],
      ['shop', 'batch', 'Exempt', 'OptedOut'],
    ]);
    expect(await seriesValue(h.metrics.statusWrites, { policy: 'p' })).toBe(1);
    expect(await seriesValue(h.metrics.policyAccepted, { policy: 'p' })).toBe(1);
  });

  test('Enforce with a failed operator rollout, breakerNamespaces 1: breaker open (condition, Warning Event, gauge), the others waiting on it', async () => {
    const failedRecord = JSON.stringify({
      policy: 'p',
      policyGeneration: 1,
      containers: {},
      reason: '',
      failure: { policyGeneration: 1, reason: 'RolloutTimedOut', message: 'stuck', at: LONG_AGO },
    });
    const failed = deployment({ name: 'failed', annotations: { [APPLIED_ANNOTATION]: failedRecord } });
    const paused = deployment({ name: 'paused', paused: true });
    const h = harness({
      policies: [policyObject('p', { mode: 'Enforce', rollout: { breakerNamespaces: 1 } })],
      deployments: [failed, paused, deployment({ name: 'web' })],
    });
    await h.reconcile('p');
    const status = h.writes[0]?.status;
    expect(conditionOf(status, 'RolloutBreakerOpen')).toMatchObject({
      status: 'True',
      reason: 'RolloutFailed',
    });
    expect(status?.counts).toMatchObject({
      waiting: 3,
      blockedByBreaker: 2,
      waitingReasons: [
        { reason: 'Paused', count: 1 },
        { reason: 'BreakerOpen', count: 1 },
        { reason: 'RolloutFailed', count: 1 },
      ].sort((a, b) => (a.reason < b.reason ? -1 : 1)),
    });
    expect(h.events.map((e) => [e.type, e.reason])).toContainEqual(['Warning', 'RolloutBreakerOpen']);
    expect(await seriesValue(h.metrics.rolloutBreakerOpen, { policy: 'p' })).toBe(1);
    expect(await seriesValue(h.metrics.policyWaiting, { policy: 'p', reason: 'Paused' })).toBe(1);
    // Fixed (the failure no longer holds: the policy changed): closed, a Normal Event.
    const object = h.policies.get('p');
    if (!object) throw new Error('no policy');
    h.policies.put({
      ...object,
      metadata: { ...object.metadata, generation: 2, resourceVersion: '2' },
      status: readBack(status),
    });
    await h.reconcile('p');
    expect(conditionOf(h.writes[1]?.status, 'RolloutBreakerOpen')?.status).toBe('False');
    expect(h.events.map((e) => [e.type, e.reason])).toContainEqual(['Normal', 'RolloutBreakerClosed']);
    expect(await seriesValue(h.metrics.rolloutBreakerOpen, { policy: 'p' })).toBe(0);
  });

  test('a failed rollout holds its own namespace only; a forged failure holds nothing and is reported refused', async () => {
    const failure = { policyGeneration: 1, reason: 'RolloutTimedOut', message: 'stuck', at: LONG_AGO };
    const failedRecord = JSON.stringify({
      policy: 'p',
      policyGeneration: 1,
      containers: {},
      reason: '',
      failure,
    });
    const h = harness({
      policies: [policyObject('p', { mode: 'Enforce' })],
      deployments: [
        deployment({ name: 'failed', annotations: { [APPLIED_ANNOTATION]: failedRecord } }),
        deployment({ name: 'neighbour' }),
        deployment({ name: 'other', namespace: 'team-b' }),
      ],
      // A tenant's own record with a made-up failure, and one copied from shop/failed.
      forged: [
        deployment({
          name: 'evil',
          namespace: 'tenant-a',
          annotations: { [APPLIED_ANNOTATION]: failedRecord },
        }),
        deployment({
          name: 'copy',
          namespace: 'tenant-c',
          annotations: {
            [APPLIED_ANNOTATION]:
              sealed(deployment({ name: 'failed', annotations: { [APPLIED_ANNOTATION]: failedRecord } }))
                .metadata?.annotations?.[APPLIED_ANNOTATION] ?? '',
          },
        }),
      ],
    });
    await h.reconcile('p');
    const status = h.writes[0]?.status;
    expect(status?.heldNamespaces).toEqual(['shop']);
    expect(conditionOf(status, 'RolloutBreakerOpen')).toMatchObject({
      status: 'False',
      reason: 'NamespacesHeld',
    });
    const verdict = (name: string) => status?.workloads?.find((w) => w.name === name);
    expect(verdict('failed')?.reason).toBe('RolloutFailed');
    expect(verdict('neighbour')?.reason).toBe('BreakerOpen');
    expect(verdict('neighbour')?.message).toMatch(/^no new rollouts in namespace shop: shop\/failed: stuck/);
    // Other namespaces go on: not waiting, whatever their own records claim.
    for (const name of ['other', 'evil', 'copy']) expect(verdict(name)?.reason).not.toMatch(/Breaker|Failed/);
    expect(verdict('evil')?.message).toContain(
      'the gracefulshutdown.dev/applied record was refused (it carries no seal of the operator',
    );
    expect(verdict('copy')?.message).toContain('record was refused (its seal does not match this Deployment');
    expect(await seriesValue(h.metrics.heldNamespaces, { policy: 'p' })).toBe(1);
    expect(await seriesValue(h.metrics.refusedRecords, { policy: 'p' })).toBe(2);
    expect(await seriesValue(h.metrics.rolloutBreakerOpen, { policy: 'p' })).toBe(0);
  });

  test('Enforce with a Deployment held for another field manager: NonCompliant ConflictingManager, counted as waiting, the manager named', async () => {
    const held = JSON.stringify({
      policy: 'p',
      policyGeneration: 1,
      terminationGracePeriodSeconds: 45,
      containers: {},
      reason: '',
      conflict: {
        manager: 'argocd-controller',
        field: 'terminationGracePeriodSeconds',
        at: LONG_AGO,
        held: true,
      },
    });
    const fight = deployment({ name: 'web', grace: 10, annotations: { [APPLIED_ANNOTATION]: held } });
    fight.metadata = {
      ...fight.metadata,
      managedFields: [
        { manager: 'graceful-shutdown-operator', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: {} },
        {
          manager: 'argocd-controller',
          operation: 'Apply',
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:spec': { 'f:template': { 'f:spec': { 'f:terminationGracePeriodSeconds': {} } } } },
        },
      ],
    };
    const spec = {
      mode: 'Enforce',
      terminationGracePeriod: { minSeconds: 45 },
      preStop: { inject: 'Never' },
    };
    const h = harness({ policies: [policyObject('p', spec)], deployments: [fight] });
    await h.reconcile('p');
    const status = h.writes[0]?.status;
    expect(status?.workloads?.[0]).toMatchObject({
      name: 'web',
      verdict: 'NonCompliant',
      reason: 'ConflictingManager',
    });
    expect(status?.workloads?.[0]?.message).toContain('field manager argocd-controller set it to 10 again');
    expect(status?.counts).toMatchObject({
      waiting: 1,
      waitingReasons: [{ reason: 'ConflictingManager', count: 1 }],
    });
    expect(await seriesValue(h.metrics.policyWaiting, { policy: 'p', reason: 'ConflictingManager' })).toBe(1);
    // The negative control: the same Deployment whose grace period the operator still owns is
    // only short (it is written), not held.
    const ours = structuredClone(fight);
    ours.metadata = {
      ...ours.metadata,
      managedFields: [ours.metadata?.managedFields?.[1] ?? {}].map((e) => ({
        ...e,
        manager: 'graceful-shutdown-operator',
      })),
    };
    const h2 = harness({ policies: [policyObject('p', spec)], deployments: [ours] });
    await h2.reconcile('p');
    expect(h2.writes[0]?.status?.workloads?.[0]?.reason).toBe('GracePeriodTooShort');
  });

  test('steady state: the written status read back, no second write', async () => {
    const h = harness({ policies: [AUDIT], deployments: shop() });
    await h.reconcile('p');
    expect(h.writes).toHaveLength(1);
    h.policies.put({ ...AUDIT, status: readBack(h.writes[0]?.status) });

    expect(await h.reconcile('p')).toEqual({ requeueAfterMs: RESYNC_MS });
    expect(h.writes).toHaveLength(1);
    expect(await seriesValue(h.metrics.statusWrites, { policy: 'p' })).toBe(1);
  });

  test('a change after the steady state (a Deployment fixed) is written once more', async () => {
    const h = harness({ policies: [AUDIT], deployments: shop() });
    await h.reconcile('p');
    h.policies.put({ ...AUDIT, status: readBack(h.writes[0]?.status) });
    h.deployments.put(compliantDeployment({ name: 'web' }));

    await h.reconcile('p');
    expect(h.writes).toHaveLength(2);
    const status = h.writes[1]?.status;
    expect(status?.counts).toEqual({ matched: 2, compliant: 2, nonCompliant: 0, exempt: 1 });
    expect(conditionOf(status, 'Compliant')).toMatchObject({ status: 'True', reason: 'AllCompliant' });
    // Accepted kept its status, so its transition time; Compliant went False -> True.
    expect(conditionOf(status, 'Accepted')?.lastTransitionTime).toBe(LONG_AGO);
    expect(conditionOf(status, 'Compliant')?.lastTransitionTime).not.toBe(LONG_AGO);
    expect(await seriesValue(h.metrics.statusWrites, { policy: 'p' })).toBe(2);
  });

  test('an invalid spec: Accepted=False InvalidSpec naming the field, accepted gauge 0', async () => {
    const h = harness({
      policies: [policyObject('bad', { preStop: { seconds: -1 } }, 2)],
      deployments: shop(),
    });
    await h.reconcile('bad');

    expect(h.writes).toHaveLength(1);
    expect(h.writes[0]?.name).toBe('bad');
    const status = h.writes[0]?.status;
    expect(status?.observedGeneration).toBe(2);
    const accepted = conditionOf(status, 'Accepted');
    expect(accepted).toMatchObject({ status: 'False', reason: 'InvalidSpec', observedGeneration: 2 });
    expect(accepted?.message).toContain('spec.preStop.seconds');
    expect(conditionOf(status, 'Compliant')).toMatchObject({ status: 'Unknown', reason: 'InvalidSpec' });
    // Not evaluated: the Deployments it would select are not reported.
    expect(status?.counts).toEqual({ matched: 0, compliant: 0, nonCompliant: 0, exempt: 0 });
    expect(status?.workloads).toBeUndefined();
    expect(await seriesValue(h.metrics.policyAccepted, { policy: 'bad' })).toBe(0);
    expect(h.events).toEqual([
      {
        object: expect.objectContaining({ kind: 'GracefulShutdownPolicy', name: 'bad' }),
        type: 'Warning',
        reason: 'InvalidSpec',
        message: expect.stringContaining('spec.preStop.seconds'),
      },
    ]);
  });

  test('an invalid spec read back: no second write', async () => {
    const bad = policyObject('bad', { preStop: { seconds: -1 } });
    const h = harness({ policies: [bad], deployments: [] });
    await h.reconcile('bad');
    h.policies.put({ ...bad, status: readBack(h.writes[0]?.status) });
    await h.reconcile('bad');
    expect(h.writes).toHaveLength(1);
  });

  test('two policies selecting one Deployment: the loser reports it Exempt naming the winner', async () => {
    // "a" sorts first by name, but "b" has the higher priority: b wins.
    const h = harness({
      policies: [policyObject('a', { mode: 'Audit' }), policyObject('b', { mode: 'Audit', priority: 10 })],
      deployments: [bareDeployment()],
    });
    await h.reconcile('a');
    await h.reconcile('b');

    expect(h.writes.map((w) => w.name)).toEqual(['a', 'b']);
    const loser = h.writes[0]?.status;
    expect(loser?.counts).toEqual({ matched: 0, compliant: 0, nonCompliant: 0, exempt: 1 });
    expect(loser?.workloads).toHaveLength(1);
    expect(loser?.workloads?.[0]).toMatchObject({
      namespace: 'shop',
      name: 'web',
      verdict: 'Exempt',
      reason: 'OtherPolicyWins',
    });
    expect(loser?.workloads?.[0]?.message).toContain('policy b');
    expect(conditionOf(loser, 'Compliant')).toMatchObject({ status: 'True', reason: 'NoWorkloads' });

    const winner = h.writes[1]?.status;
    expect(winner?.counts).toEqual({ matched: 1, compliant: 0, nonCompliant: 1, exempt: 0 });
    expect(winner?.workloads?.[0]).toMatchObject({ name: 'web', verdict: 'NonCompliant' });
  });

  test('an invalid policy does not compete: the valid one keeps the Deployment', async () => {
    // "a" would win by name, but its spec is rejected.
    const h = harness({
      policies: [policyObject('a', { priority: 10, preStop: { seconds: -1 } }), policyObject('b', {})],
      deployments: [bareDeployment()],
    });
    await h.reconcile('b');
    expect(h.writes).toHaveLength(1);
    expect(h.writes[0]?.status.counts).toEqual({ matched: 1, compliant: 0, nonCompliant: 1, exempt: 0 });
  });

  test('a policy gone from the cache: no write, its gauges removed, other policies untouched', async () => {
    const h = harness({
      policies: [
        policyObject('gone', { mode: 'Audit' }),
        policyObject('kept', { mode: 'Audit', priority: 5 }),
      ],
      deployments: shop(),
    });
    await h.reconcile('gone');
    await h.reconcile('kept');
    expect(await seriesValue(h.metrics.policyAccepted, { policy: 'gone' })).toBe(1);
    expect(await seriesValue(h.metrics.policyWorkloads, { policy: 'gone', verdict: 'Exempt' })).toBe(3);
    h.policies.delete('gone');
    const writesBefore = h.writes.length;

    expect(await h.reconcile('gone')).toBeUndefined();
    expect(h.writes).toHaveLength(writesBefore);
    const gaugeLines = (await h.registry.metrics())
      .split('\n')
      .filter(
        (line) =>
          line.startsWith('gracefulshutdown_policy_workloads{') ||
          line.startsWith('gracefulshutdown_policy_accepted{'),
      );
    expect(gaugeLines.filter((line) => line.includes('policy="gone"'))).toEqual([]);
    // The other policy's series stay: 4 verdicts and accepted.
    expect(gaugeLines.filter((line) => line.includes('policy="kept"'))).toHaveLength(5);
    expect(await seriesValue(h.metrics.policyAccepted, { policy: 'kept' })).toBe(1);
  });

  test('the distribution of recommended grace periods across workloads, as bucket gauges; gone with the policy', async () => {
    const h = harness({ policies: [AUDIT], deployments: shop() });
    await h.reconcile(AUDIT.metadata?.name ?? '');
    const buckets = async () =>
      (await h.registry.metrics())
        .split('\n')
        .filter((l) => l.startsWith('gracefulshutdown_workloads_recommended_grace_seconds_bucket{'));
    const lines = await buckets();
    // Every governed Deployment is counted in +Inf; the buckets are cumulative.
    const inf = lines.find((l) => l.includes('le="+Inf"'));
    expect(inf).toMatch(/ [1-9]\d*$/);
    const counts = lines.map((l) => Number(l.split(' ').at(-1)));
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    h.policies.delete(AUDIT.metadata?.name ?? '');
    await h.reconcile(AUDIT.metadata?.name ?? '');
    expect(await buckets()).toEqual([]);
  });

  test('an aborted signal with a change pending: rejects, writes nothing', async () => {
    const h = harness({ policies: [AUDIT], deployments: shop() });
    const abort = new AbortController();
    abort.abort(new Error('leadership lost'));

    await expect(h.reconcileWith('p', abort.signal)).rejects.toThrow('leadership lost');
    expect(h.writes).toEqual([]);
    expect(await seriesValue(h.metrics.statusWrites, { policy: 'p' })).toBeUndefined();
  });

  test('an aborted signal with nothing to write: no write and no rejection', async () => {
    const h = harness({ policies: [AUDIT], deployments: shop() });
    await h.reconcile('p');
    h.policies.put({ ...AUDIT, status: readBack(h.writes[0]?.status) });
    const abort = new AbortController();
    abort.abort(new Error('leadership lost'));

    expect(await h.reconcileWith('p', abort.signal)).toEqual({ requeueAfterMs: RESYNC_MS });
    expect(h.writes).toHaveLength(1);
  });

  test('the workloads gauge per verdict equals the counts (Unknown = matched - compliant - nonCompliant)', async () => {
    // Distinct numbers per verdict so that a swapped label shows: 1 compliant, 2 non-compliant,
    // 3 exempt, 4 unknown.
    const h = harness({
      policies: [AUDIT],
      deployments: [
        compliantDeployment(),
        ...['web-1', 'web-2'].map((name) => bareDeployment({ name })),
        ...['batch-1', 'batch-2', 'batch-3'].map((name) => optedOutDeployment({ name })),
        ...['odd-1', 'odd-2', 'odd-3', 'odd-4'].map((name) => badAnnotationDeployment({ name })),
      ],
    });
    await h.reconcile('p');

    const status = h.writes[0]?.status;
    expect(status?.counts).toEqual({ matched: 7, compliant: 1, nonCompliant: 2, exempt: 3 });
    expect(status?.workloads?.filter((w) => w.verdict === 'Unknown')).toHaveLength(4);
    expect(conditionOf(status, 'Compliant')).toMatchObject({ status: 'False' });
    const gauge = (verdict: string) => seriesValue(h.metrics.policyWorkloads, { policy: 'p', verdict });
    expect(await gauge('Compliant')).toBe(1);
    expect(await gauge('NonCompliant')).toBe(2);
    expect(await gauge('Exempt')).toBe(3);
    expect(await gauge('Unknown')).toBe(4);
  });

  test('the workloads gauge follows the counts when they change, with or without a write', async () => {
    const h = harness({ policies: [AUDIT], deployments: shop() });
    await h.reconcile('p');
    const gauge = (verdict: string) => seriesValue(h.metrics.policyWorkloads, { policy: 'p', verdict });
    expect(await gauge('Compliant')).toBe(1);
    expect(await gauge('NonCompliant')).toBe(1);
    expect(await gauge('Exempt')).toBe(1);
    expect(await gauge('Unknown')).toBe(0);

    h.deployments.put(compliantDeployment({ name: 'web' }));
    await h.reconcile('p');
    expect(await gauge('Compliant')).toBe(2);
    expect(await gauge('NonCompliant')).toBe(0);
  });
});

describe('latency', () => {
  const spec = { observedLatency: { source: 'Prometheus', minSamples: 100, stabilizationWindow: '1m' } };
  const known = (seconds: number) =>
    ({ known: true, seconds, samples: 500, percentile: 0.99, window: '1h', source: 'Prometheus' }) as const;
  const down = {
    known: false,
    source: 'Prometheus',
    reason: 'connect ECONNREFUSED',
    unavailable: true,
  } as const;
  const opts = { stabilizationMs: 60_000, minSamples: 100 };

  test('LatencyObserved follows the estimates; one Warning when it turns False, one Normal when it recovers', async () => {
    const estimates = new EstimateCache();
    const h = harness({
      policies: [policyObject('p', spec)],
      deployments: [compliantDeployment()],
      estimates,
    });
    // Not asked yet: Unknown, no Event.
    await h.reconcile('p');
    expect(conditionOf(h.writes.at(-1)?.status, 'LatencyObserved')).toMatchObject({
      status: 'Unknown',
      reason: 'Pending',
    });
    expect(h.events).toEqual([]);
    estimates.update('shop/api', known(4), opts);
    h.policies.put({ ...policyObject('p', spec), status: readBack(h.writes.at(-1)?.status) });
    await h.reconcile('p');
    const observed = h.writes.at(-1)?.status;
    expect(conditionOf(observed, 'LatencyObserved')).toMatchObject({ status: 'True', reason: 'Observed' });
    expect(observed?.workloads?.[0]?.observedLatency).toMatchObject({ seconds: 4, samples: 500 });
    expect(observed?.workloads?.[0]?.message).toContain('grace 30 s: preStop 5 + drain 6 (p99 4 s x 1.5)');
    expect(await seriesValue(h.metrics.latencyObservedSeconds, { policy: 'p' })).toBe(4);
    // The source fails: False, the latency kept, one Warning.
    estimates.update('shop/api', down, opts);
    h.policies.put({ ...policyObject('p', spec), status: readBack(observed) });
    await h.reconcile('p');
    const failing = h.writes.at(-1)?.status;
    expect(conditionOf(failing, 'LatencyObserved')).toMatchObject({
      status: 'False',
      reason: 'SourceUnavailable',
    });
    expect(failing?.workloads?.[0]?.observedLatency).toMatchObject({
      seconds: 4,
      message: 'kept while Prometheus fails: connect ECONNREFUSED',
    });
    expect(h.events.map((e) => [e.type, e.reason])).toEqual([['Warning', 'LatencyNotObserved']]);
    // Still failing: no second Event.
    h.policies.put({ ...policyObject('p', spec), status: readBack(failing) });
    await h.reconcile('p');
    expect(h.events).toHaveLength(1);
    // Back: True, one Normal Event.
    estimates.update('shop/api', known(4), opts);
    h.policies.put({ ...policyObject('p', spec), status: readBack(h.writes.at(-1)?.status) });
    await h.reconcile('p');
    expect(conditionOf(h.writes.at(-1)?.status, 'LatencyObserved')?.status).toBe('True');
    expect(h.events.map((e) => [e.type, e.reason])).toEqual([
      ['Warning', 'LatencyNotObserved'],
      ['Normal', 'LatencyObserved'],
    ]);
  });

  test('no LatencyObserved condition and no latency gauges without a source', async () => {
    const h = harness({ policies: [policyObject('p', {})], deployments: [compliantDeployment()] });
    await h.reconcile('p');
    expect(conditionOf(h.writes.at(-1)?.status, 'LatencyObserved')).toBeUndefined();
    expect(await seriesValue(h.metrics.latencyObservedSeconds, { policy: 'p' })).toBeUndefined();
  });
});

describe('pacing', () => {
  test("each pass tells the pacer how long it took; a deleted policy's measure is forgotten", async () => {
    const pacer = new StatusPacer({ minMs: 1, factor: 1_000_000 });
    const h = harness({
      policies: [policyObject('p', { mode: 'Audit' })],
      deployments: [deployment({ name: 'web' })],
      pacer,
    });
    await h.reconcile('p');
    expect(pacer.delay('p')).toBeGreaterThan(1);
    h.policies.delete('p');
    await h.reconcile('p');
    expect(pacer.delay('p')).toBe(1);
  });

  test('each status write tells the pacer how long the apiserver took to answer', async () => {
    const pacer = new StatusPacer({ minMs: 1, factor: 0, writeFactor: 10 });
    const h = harness({
      policies: [policyObject('p', { mode: 'Audit' })],
      deployments: [deployment({ name: 'web' })],
      pacer,
      writeMs: 60,
    });
    await h.reconcile('p');
    expect(h.writes).toHaveLength(1);
    expect(pacer.delay('p')).toBeGreaterThanOrEqual(500);
  });
});
