import type { V1Deployment, V1ObjectReference, V1Pod } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import {
  APPLIED_ANNOTATION,
  EXCLUDE_ANNOTATION,
  FIELD_MANAGER,
  GRACE_PERIOD_SECONDS_ANNOTATION,
  PRESTOP_SECONDS_ANNOTATION,
  READINESS_PORT_ANNOTATION,
} from '../api/annotations.ts';
import type { DeploymentWriter } from '../kube/apply.ts';
import type { EventRecorder, EventType } from '../kube/events.ts';
import { deploymentCacheTransform } from '../kube/informer.ts';
import { EstimateCache } from '../latency/estimates.ts';
import { silentLogger } from '../log.ts';
import { templateHash } from '../policy/budget.ts';
import {
  type AppliedRecord,
  type ApplyConfiguration,
  readAppliedRecord,
  recordAnnotation,
} from '../policy/ownership.ts';
import {
  container,
  type DeploymentOptions,
  deployment,
  ROLLING_STATUS,
  sealed,
  TEST_SEAL,
} from '../policy/test-fixtures.ts';
import { ProbeVerifier } from '../probes/verifier.ts';
import { deploymentReconciler } from './deployment-controller.ts';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.ts';
import { ProbeChecks } from './probe-checks.ts';
import { RolloutTracker } from './rollout-tracker.ts';
import {
  afterApply,
  afterForcedApply,
  clusterScoped,
  FakeInformer,
  namespaced,
  policyObject,
  testView,
} from './test-support.ts';
import type { PolicyObject } from './view.ts';

const ROLLOUT_CHECK_MS = 5_000;
const RESYNC_MS = 300_000;
/** After a write: the rollout's deadline (progressDeadlineSeconds 600 by default), capped at the resync. */
const AFTER_WRITE = { requeueAfterMs: RESYNC_MS };

interface RecordedEvent {
  object: V1ObjectReference;
  type: EventType;
  reason: string;
  message: string;
}

interface Harness {
  reconcile: (key: string) => ReturnType<ReturnType<typeof deploymentReconciler>>;
  reconcileWith: (key: string, signal: AbortSignal) => ReturnType<ReturnType<typeof deploymentReconciler>>;
  deployments: FakeInformer<V1Deployment>;
  policies: FakeInformer<PolicyObject>;
  writes: ApplyConfiguration[];
  /** JSON Patches sent (handler replacements), in order, each with its target. */
  patches: { key: string; operations: object[] }[];
  events: RecordedEvent[];
  tracker: RolloutTracker;
  metrics: OperatorMetrics;
  /** Makes the writer throw until set back to undefined. */
  failWith: { error?: Error };
  /** The probe checks (with options.probes): requested by reconciles, run apart; done keys. */
  checks?: ProbeChecks;
  checked: [string, boolean][];
}

function harness(options: {
  policies: PolicyObject[];
  deployments: V1Deployment[];
  estimates?: EstimateCache;
  /** The writer applies to the cache like the apiserver would (test-support afterApply). */
  serverSideApply?: boolean;
  now?: () => number;
  probes?: { verifier: ProbeVerifier; podsOf: () => V1Pod[] };
  /** The records as given, not sealed by the operator's key (a tenant's forgery). */
  unsealed?: boolean;
}): Harness {
  const deployments = new FakeInformer<V1Deployment>(
    namespaced,
    options.unsealed ? options.deployments : options.deployments.map(sealed),
  );
  const policies = new FakeInformer<PolicyObject>(clusterScoped, options.policies);
  const view = testView(deployments, policies);
  const writes: ApplyConfiguration[] = [];
  const failWith: Harness['failWith'] = {};
  const patches: Harness['patches'] = [];
  const writer: DeploymentWriter = {
    patch: async (namespace, name, operations) => {
      patches.push({ key: `${namespace}/${name}`, operations: structuredClone(operations) });
      const current = deployments.get(`${namespace}/${name}`);
      if (!current) throw new Error('not found');
      return current;
    },
    apply: async (config) => {
      if (failWith.error) throw failWith.error;
      writes.push(structuredClone(config));
      const current = deployments.get(`${config.metadata.namespace}/${config.metadata.name}`);
      if (!current) throw new Error('not found');
      if (options.serverSideApply) {
        const stored = afterApply(current, config);
        deployments.put(stored);
        return stored;
      }
      const updated = structuredClone(current);
      updated.metadata = { ...updated.metadata, generation: (current.metadata?.generation ?? 0) + 1 };
      return updated;
    },
  };
  const events: RecordedEvent[] = [];
  const recorder: EventRecorder = {
    record: (object, type, reason, message) => events.push({ object, type, reason, message }),
  };
  const estimates = options.estimates ?? new EstimateCache();
  const tracker = new RolloutTracker();
  const metrics = createOperatorMetrics(new Registry());
  const checked: [string, boolean][] = [];
  const checks = options.probes ? new ProbeChecks({ verifier: options.probes.verifier }) : undefined;
  checks?.done.on((key, pending) => checked.push([key, pending]));
  void checks?.run(new AbortController().signal);
  const reconciler = deploymentReconciler({
    view,
    writer,
    events: recorder,
    estimates,
    facts: { nativeSleep: true },
    tracker,
    metrics,
    seal: TEST_SEAL,
    rolloutCheckMs: ROLLOUT_CHECK_MS,
    resyncMs: RESYNC_MS,
    ...(options.now ? { now: options.now } : {}),
    ...(options.probes && checks ? { probes: { ...options.probes, checks } } : {}),
  });
  return {
    reconcile: (key) => reconciler(key, new AbortController().signal, silentLogger()),
    reconcileWith: (key, signal) => reconciler(key, signal, silentLogger()),
    deployments,
    policies,
    writes,
    patches,
    events,
    tracker,
    metrics,
    failWith,
    ...(checks ? { checks } : {}),
    checked,
  };
}

/** A counter's value for the labels given (0 when never incremented). */
async function counterValue(
  counter:
    | OperatorMetrics['deploymentWrites']
    | OperatorMetrics['rolloutWaits']
    | OperatorMetrics['fieldConflicts'],
  labels: Record<string, string>,
): Promise<number> {
  const { values } = await counter.get();
  const match = values.find((v) =>
    Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
  );
  return match?.value ?? 0;
}

/** What the cache shows after a server-side apply of the configuration has rolled out. */
const ENFORCE = policyObject('p', { mode: 'Enforce' });
const web = (options: DeploymentOptions = {}) => deployment({ name: 'web', ...options });
const appliedRecord = (fields: Partial<AppliedRecord> = {}): string =>
  JSON.stringify({
    policy: 'p',
    policyGeneration: 1,
    containers: { web: { readinessProbe: true, preStop: true } },
    reason: 'drain',
    ...fields,
  });
/** A Deployment carrying the operator's probe and hook and its record. */
const managedWeb = (annotations: Record<string, string> = {}) =>
  web({
    annotations: { [APPLIED_ANNOTATION]: appliedRecord(), ...annotations },
    containers: [
      container('web', [['http', 8080]], {
        readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 5 },
        lifecycle: { preStop: { sleep: { seconds: 5 } } },
      }),
    ],
  });

describe('deploymentReconciler', () => {
  test('a Deployment gone from the cache: nothing, its reservation released', async () => {
    const h = harness({ policies: [ENFORCE], deployments: [] });
    h.tracker.reserve('shop/web', 'p');
    expect(await h.reconcile('shop/web')).toBeUndefined();
    expect(h.writes).toEqual([]);
    expect(h.tracker.reservedCount).toBe(0);
  });

  test('Audit: no writes, no events', async () => {
    const h = harness({ policies: [policyObject('p', { mode: 'Audit' })], deployments: [web()] });
    await h.reconcile('shop/web');
    expect(h.writes).toEqual([]);
    expect(h.events).toEqual([]);
  });

  test('Enforce, not compliant: one apply with the record, and an Event', async () => {
    const h = harness({ policies: [ENFORCE], deployments: [web()] });
    expect(await h.reconcile('shop/web')).toEqual(AFTER_WRITE);
    expect(h.writes).toHaveLength(1);
    const [config] = h.writes;
    expect(config?.metadata.name).toBe('web');
    expect(config?.metadata.namespace).toBe('shop');
    const record = JSON.parse(config?.metadata.annotations?.[APPLIED_ANNOTATION] ?? '{}');
    expect(record).toMatchObject({
      policy: 'p',
      containers: { web: { readinessProbe: true, preStop: true } },
    });
    expect(config?.spec?.template.spec.containers).toEqual([
      expect.objectContaining({ name: 'web', lifecycle: { preStop: { sleep: { seconds: 5 } } } }),
    ]);
    expect(h.events).toHaveLength(1);
    expect(h.events[0]).toMatchObject({
      object: { kind: 'Deployment', namespace: 'shop', name: 'web' },
      type: 'Normal',
      reason: 'ShutdownSettingsApplied',
    });
    expect(h.events[0]?.message).toContain('policy p:');
    expect(h.events[0]?.message).toContain(
      'grace 30 s: preStop 5 + drain 0 (no latency source) + overhead 5 = 10',
    );
    expect(await counterValue(h.metrics.deploymentWrites, { policy: 'p', operation: 'apply' })).toBe(1);
    // The rollout the patch starts counts against the budget until the cache shows it done.
    expect([...h.tracker.active('p', new Map([['shop/web', web()]]))]).toEqual(['shop/web']);
  });

  test('steady state: once applied, compliant with the same ownership, no second write', async () => {
    const h = harness({ policies: [ENFORCE], deployments: [web()] });
    await h.reconcile('shop/web');
    const [config] = h.writes;
    if (!config) throw new Error('no write');
    const applied = afterApply(web(), config);
    h.deployments.put(applied);
    expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
    expect(h.writes).toHaveLength(1);
    expect(h.events).toHaveLength(1);
    expect(await counterValue(h.metrics.deploymentWrites, { policy: 'p', operation: 'apply' })).toBe(1);
    // The rollout the cache shows complete no longer counts against the budget.
    expect([...h.tracker.active('p', new Map([['shop/web', applied]]))]).toEqual([]);
  });

  test('Override over a handler of another kind: replaced by a JSON patch, then applied', async () => {
    const tcpProbe = { tcpSocket: { port: 8080 } };
    const h = harness({
      policies: [policyObject('p', { mode: 'Enforce', readinessProbe: { inject: 'Override', port: 8080 } })],
      deployments: [web({ containers: [container('web', [8080], { readinessProbe: tcpProbe })] })],
    });
    await h.reconcile('shop/web');
    expect(h.patches).toEqual([
      {
        key: 'shop/web',
        operations: [
          { op: 'test', path: '/spec/template/spec/containers/0/name', value: 'web' },
          {
            op: 'replace',
            path: '/spec/template/spec/containers/0/readinessProbe',
            value: expect.objectContaining({ httpGet: { path: '/readyz', port: 8080 } }),
          },
          // The record in the same write: the rollout the patch starts, sealed, what it replaced.
          { op: 'add', path: '/metadata/annotations', value: { [APPLIED_ANNOTATION]: expect.any(String) } },
        ],
      },
    ]);
    const last = h.patches[0]?.operations.at(-1) as { value: Record<string, string> } | undefined;
    const inPatch = last?.value ?? {};
    const recorded = readAppliedRecord(
      web({ annotations: { [APPLIED_ANNOTATION]: inPatch[APPLIED_ANNOTATION] ?? '' } }),
      TEST_SEAL,
    );
    expect(recorded?.refused).toBeUndefined();
    expect(recorded?.rollout).toMatchObject({
      generation: 2,
      previous: { containers: { web: { readinessProbe: tcpProbe } } },
    });
    // The apply follows and owns the new probe; the plain case sends no patch at all.
    expect(h.writes).toHaveLength(1);
    // The hook is missing, so the apply writes it, and the annotation mirroring it with it.
    expect(h.writes[0]?.spec?.template.metadata?.annotations).toEqual({ [PRESTOP_SECONDS_ANNOTATION]: '5' });
    expect(await counterValue(h.metrics.deploymentWrites, { policy: 'p', operation: 'replace' })).toBe(1);
    const plain = harness({ policies: [ENFORCE], deployments: [web()] });
    await plain.reconcile('shop/web');
    expect(plain.patches).toEqual([]);
  });

  test("after a replacement, the operator's Update entry leaves managedFields (guarded); its Apply entry stays", async () => {
    const tcpProbe = { tcpSocket: { port: 8080 } };
    const withEntries = web({ containers: [container('web', [8080], { readinessProbe: tcpProbe })] });
    withEntries.metadata = {
      ...withEntries.metadata,
      managedFields: [
        { manager: 'kubectl', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: {} },
        { manager: FIELD_MANAGER, operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: {} },
        { manager: FIELD_MANAGER, operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: {} },
      ],
    };
    const h = harness({
      policies: [policyObject('p', { mode: 'Enforce', readinessProbe: { inject: 'Override', port: 8080 } })],
      deployments: [withEntries],
    });
    await h.reconcile('shop/web');
    expect(h.patches.map((p) => p.operations)).toEqual([
      expect.any(Array),
      [
        { op: 'test', path: '/metadata/managedFields/1/manager', value: FIELD_MANAGER },
        { op: 'test', path: '/metadata/managedFields/1/operation', value: 'Update' },
        { op: 'remove', path: '/metadata/managedFields/1' },
      ],
    ]);
  });

  test('a field the policy stops writing (inject Never) is kept at its value, not deleted by the apply', async () => {
    const h = harness({
      policies: [policyObject('p', { mode: 'Enforce', preStop: { inject: 'Never' } })],
      deployments: [managedWeb()],
    });
    expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
    // Same values, same ownership: nothing to write at all (an apply without the hook would
    // have deleted it and restarted the pods outside the rollout budget).
    expect(h.writes).toEqual([]);
    // A later apply for another reason still carries the kept hook.
    const h2 = harness({
      policies: [
        policyObject('p', {
          mode: 'Enforce',
          preStop: { inject: 'Never' },
          readinessProbe: { path: '/ready' },
        }),
      ],
      deployments: [managedWeb()],
    });
    await h2.reconcile('shop/web');
    const containers = h2.writes[0]?.spec?.template.spec.containers as { lifecycle?: unknown }[] | undefined;
    expect(containers?.[0]?.lifecycle).toEqual({ preStop: { sleep: { seconds: 5 } } });
  });

  test('a Deployment recreated under the same name is reconciled (expectations are per object)', async () => {
    const h = harness({ policies: [ENFORCE], deployments: [web()] });
    const withUid = (uid: string) => {
      const d = web();
      d.metadata = { ...d.metadata, uid };
      return d;
    };
    h.deployments.put(withUid('first'));
    await h.reconcile('shop/web');
    expect(h.writes).toHaveLength(1);
    // Deleted and created again: generation 1 again, a new uid, nothing of ours on it.
    h.deployments.put(withUid('second'));
    expect(await h.reconcile('shop/web')).toEqual(AFTER_WRITE);
    expect(h.writes).toHaveLength(2);
  });

  test('an aborted reconcile (leadership lost) writes nothing', async () => {
    const h = harness({ policies: [ENFORCE], deployments: [web()] });
    const aborted = new AbortController();
    aborted.abort(new Error('leadership lost'));
    await expect(h.reconcileWith('shop/web', aborted.signal)).rejects.toThrow('leadership lost');
    expect(h.writes).toEqual([]);
  });

  test('a record naming an invalid policy keeps the Deployment still even when another policy matches', async () => {
    const h = harness({
      policies: [
        policyObject('broken', { mode: 'Enforce', preStop: { seconds: -1 } }),
        policyObject('other', { mode: 'Enforce' }),
      ],
      deployments: [managedWeb({ [APPLIED_ANNOTATION]: appliedRecord({ policy: 'broken' }) })],
    });
    expect(await h.reconcile('shop/web')).toBeUndefined();
    expect(h.writes).toEqual([]);
  });

  test('a stale cache after our own write: no second write until the cache catches up', async () => {
    const h = harness({ policies: [ENFORCE], deployments: [web()] });
    await h.reconcile('shop/web');
    expect(h.writes).toHaveLength(1);
    // The cache still holds the object from before the write (its watch event is on the way).
    expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: ROLLOUT_CHECK_MS });
    expect(h.writes).toHaveLength(1);
    const [config] = h.writes;
    if (!config) throw new Error('no write');
    h.deployments.put(afterApply(web(), config));
    expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
    expect(h.writes).toHaveLength(1);
  });

  test('compliant but recorded under another policy: the record alone is rewritten, no Event', async () => {
    const h = harness({
      policies: [ENFORCE],
      deployments: [managedWeb({ [APPLIED_ANNOTATION]: appliedRecord({ policy: 'old' }) })],
    });
    expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
    expect(h.writes).toHaveLength(1);
    expect(JSON.parse(h.writes[0]?.metadata.annotations?.[APPLIED_ANNOTATION] ?? '{}').policy).toBe('p');
    expect(h.events).toEqual([]);
    // No pod template change: nothing reserved against the rollout budget.
    expect(h.tracker.reservedCount).toBe(0);
  });

  test('opted out with a record: released without the annotation, values kept, and an Event', async () => {
    const deployed = managedWeb({ [EXCLUDE_ANNOTATION]: 'true' });
    const h = harness({ policies: [ENFORCE], deployments: [deployed] });
    expect(await h.reconcile('shop/web')).toBeUndefined();
    expect(h.writes).toEqual([
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: 'shop' },
        spec: {
          template: {
            spec: {
              containers: [
                {
                  name: 'web',
                  readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 5 },
                  lifecycle: { preStop: { sleep: { seconds: 5 } } },
                },
              ],
            },
          },
        },
      },
    ]);
    expect(h.events).toEqual([
      expect.objectContaining({ type: 'Normal', reason: 'ShutdownSettingsReleased' }),
    ]);
    expect(h.events[0]?.message).toContain('opted out');
    expect(await counterValue(h.metrics.deploymentWrites, { policy: 'p', operation: 'release' })).toBe(1);
  });

  test('no policy any more: released', async () => {
    const h = harness({ policies: [], deployments: [managedWeb()] });
    await h.reconcile('shop/web');
    expect(h.writes).toHaveLength(1);
    expect(h.writes[0]?.metadata).not.toHaveProperty('annotations');
    expect(h.events[0]?.reason).toBe('ShutdownSettingsReleased');
    expect(h.events[0]?.message).toContain('no policy selects it any more');
  });

  test('not managed and not matched: nothing', async () => {
    const h = harness({ policies: [], deployments: [web()] });
    await h.reconcile('shop/web');
    expect(h.writes).toEqual([]);
    expect(h.events).toEqual([]);
  });

  test('a record naming an invalid policy, no valid match: kept still', async () => {
    const h = harness({
      policies: [policyObject('p', { mode: 'Enforce', preStop: { seconds: -1 } })],
      deployments: [managedWeb()],
    });
    await h.reconcile('shop/web');
    expect(h.writes).toEqual([]);
    expect(h.events).toEqual([]);
  });

  test('an unreadable record (a null container entry) counts as none: no release, no crash', async () => {
    const h = harness({
      policies: [ENFORCE],
      deployments: [
        managedWeb({
          [EXCLUDE_ANNOTATION]: 'true',
          [APPLIED_ANNOTATION]: JSON.stringify({ policy: 'p', containers: { web: null } }),
        }),
      ],
    });
    await expect(h.reconcile('shop/web')).resolves.toBeUndefined();
    expect(h.writes).toEqual([]);
  });

  test('a malformed readiness-port annotation: no write, a Warning', async () => {
    const h = harness({
      policies: [ENFORCE],
      deployments: [web({ annotations: { [READINESS_PORT_ANNOTATION]: 'not a port!' } })],
    });
    expect(await h.reconcile('shop/web')).toBeUndefined();
    expect(h.writes).toEqual([]);
    expect(h.events).toEqual([
      expect.objectContaining({
        type: 'Warning',
        reason: 'InvalidAnnotation',
        object: expect.objectContaining({ name: 'web' }),
      }),
    ]);
    expect(h.events[0]?.message).toContain(READINESS_PORT_ANNOTATION);
  });

  describe('the annotations mirroring grace and preStop for the app', () => {
    const GRACE = GRACE_PERIOD_SECONDS_ANNOTATION;
    const PRESTOP = PRESTOP_SECONDS_ANNOTATION;
    /** Managed by an operator from before the annotations: grace 30 and the hook owned and right. */
    const managedBefore = () =>
      web({
        grace: 30,
        annotations: { [APPLIED_ANNOTATION]: appliedRecord({ terminationGracePeriodSeconds: 30 }) },
        containers: [
          container('web', [['http', 8080]], {
            readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 5 },
            lifecycle: { preStop: { sleep: { seconds: 5 } } },
          }),
        ],
      });
    const overrideGrace = (seconds: number) =>
      policyObject('p', {
        mode: 'Enforce',
        terminationGracePeriod: { inject: 'Override', strategy: 'Fixed', fixedSeconds: seconds },
      });

    test('written in the same apply as the grace period and the preStop', async () => {
      const h = harness({ policies: [overrideGrace(45)], deployments: [web()] });
      await h.reconcile('shop/web');
      expect(h.writes).toHaveLength(1);
      const template = h.writes[0]?.spec?.template;
      expect(template?.spec.terminationGracePeriodSeconds).toBe(45);
      expect(template?.metadata).toEqual({ annotations: { [GRACE]: '45', [PRESTOP]: '5' } });
      const record = JSON.parse(h.writes[0]?.metadata.annotations?.[APPLIED_ANNOTATION] ?? '{}');
      expect(record.templateAnnotations).toEqual([PRESTOP, GRACE].sort());
      expect(h.events[0]?.message).toContain(`(annotation ${GRACE}: missing -> "45")`);
    });

    test('a new grace period: the annotation changes with it, in one write', async () => {
      const h = harness({ policies: [overrideGrace(45)], deployments: [web()] });
      await h.reconcile('shop/web');
      const [first] = h.writes;
      if (!first) throw new Error('no write');
      const h2 = harness({ policies: [overrideGrace(60)], deployments: [afterApply(web(), first)] });
      await h2.reconcile('shop/web');
      expect(h2.writes).toHaveLength(1);
      expect(h2.writes[0]?.spec?.template.spec.terminationGracePeriodSeconds).toBe(60);
      expect(h2.writes[0]?.spec?.template.metadata?.annotations).toEqual({ [GRACE]: '60', [PRESTOP]: '5' });
    });

    test('managed from before, values right, annotations missing: no write (no restart for them)', async () => {
      const h = harness({ policies: [ENFORCE], deployments: [managedBefore()] });
      expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
      expect(h.writes).toEqual([]);
      expect(h.events).toEqual([]);
      // The next write that changes the template anyway brings them.
      const h2 = harness({
        policies: [policyObject('p', { mode: 'Enforce', readinessProbe: { path: '/ready' } })],
        deployments: [managedBefore()],
      });
      await h2.reconcile('shop/web');
      expect(h2.writes[0]?.spec?.template.metadata?.annotations).toEqual({ [GRACE]: '30', [PRESTOP]: '5' });
    });

    test('released: the record goes, the annotations stay at their values like the fields', async () => {
      const h = harness({ policies: [overrideGrace(45)], deployments: [web()] });
      await h.reconcile('shop/web');
      const [first] = h.writes;
      if (!first) throw new Error('no write');
      const applied = afterApply(web(), first);
      applied.metadata = {
        ...applied.metadata,
        annotations: { ...applied.metadata?.annotations, [EXCLUDE_ANNOTATION]: 'true' },
      };
      const h2 = harness({ policies: [overrideGrace(45)], deployments: [applied] });
      await h2.reconcile('shop/web');
      expect(h2.writes).toHaveLength(1);
      const release = h2.writes[0];
      expect(release?.metadata).toEqual({ name: 'web', namespace: 'shop' });
      expect(release?.spec?.template.metadata).toEqual({ annotations: { [GRACE]: '45', [PRESTOP]: '5' } });
      expect(release?.spec?.template.spec.terminationGracePeriodSeconds).toBe(45);
      expect(h2.events[0]?.reason).toBe('ShutdownSettingsReleased');
    });

    test("a user's longer grace period: no grace annotation", async () => {
      const h = harness({ policies: [ENFORCE], deployments: [web({ grace: 120 })] });
      await h.reconcile('shop/web');
      expect(h.writes[0]?.spec?.template.spec).not.toHaveProperty('terminationGracePeriodSeconds');
      expect(h.writes[0]?.spec?.template.metadata?.annotations).toEqual({ [PRESTOP]: '5' });
    });
  });

  describe('rollout budget', () => {
    /** In a rollout the operator started: its record names the generation. */
    const rollingApi = deployment({
      name: 'api',
      generation: 2,
      annotations: {
        [APPLIED_ANNOTATION]: appliedRecord({
          rollout: { generation: 2, startedAt: new Date().toISOString(), previous: {} },
        }),
      },
      status: {
        observedGeneration: 1,
        replicas: 2,
        updatedReplicas: 2,
        readyReplicas: 2,
        availableReplicas: 2,
      },
    });

    test('another Deployment of the policy rolling: no write, waits to be woken (resync as the safety net)', async () => {
      const h = harness({
        policies: [policyObject('p', { mode: 'Enforce', rollout: { maxConcurrent: 1 } })],
        deployments: [web(), rollingApi],
      });
      expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
      expect(h.writes).toEqual([]);
      expect(h.events).toEqual([]);
      expect(
        await counterValue(h.metrics.rolloutWaits, { policy: 'p', reason: 'RolloutBudgetExhausted' }),
      ).toBe(1);
      expect(h.tracker.takeWaiting('p')).toEqual(['shop/web']);
    });

    describe('a Deployment a freed slot woke', () => {
      const woken = (h: { tracker: RolloutTracker }) => {
        const freed: string[] = [];
        h.tracker.onSlotFreed((policy) => freed.push(policy));
        h.tracker.wait('p', 'shop/web');
        expect(h.tracker.takeWaiting('p', 1)).toEqual(['shop/web']);
        return freed;
      };

      test('takes the slot: writes, and the slot is not passed on', async () => {
        const h = harness({ policies: [ENFORCE], deployments: [web()] });
        const freed = woken(h);
        await h.reconcile('shop/web');
        expect(h.writes.map((w) => w.metadata.name)).toEqual(['web']);
        expect(freed).toEqual([]);
      });

      test('finds no room after all: waits again, nothing passed on', async () => {
        const h = harness({
          policies: [policyObject('p', { mode: 'Enforce', rollout: { maxConcurrent: 1 } })],
          deployments: [web(), rollingApi],
        });
        const freed = woken(h);
        await h.reconcile('shop/web');
        expect(freed).toEqual([]);
        expect(h.tracker.takeWaiting('p')).toEqual(['shop/web']);
      });

      test('has nothing to write any more (its policy now audits): passes the slot on', async () => {
        const h = harness({ policies: [policyObject('p', { mode: 'Audit' })], deployments: [web()] });
        const freed = woken(h);
        await h.reconcile('shop/web');
        expect(h.writes).toEqual([]);
        expect(freed).toEqual(['p']);
      });
    });

    test('a Deployment rolling out for its own reasons takes no slot', async () => {
      const ownReasons = deployment({ name: 'api', generation: 2, status: rollingApi.status });
      const h = harness({ policies: [ENFORCE], deployments: [web(), ownReasons] });
      await h.reconcile('shop/web');
      expect(h.writes.map((w) => w.metadata.name)).toEqual(['web']);
    });

    test('a Deployment rolling out for its own reasons is not written meanwhile, nor polled: its end is an event', async () => {
      const ownReasons = deployment({ name: 'api', generation: 2, status: rollingApi.status });
      const h = harness({ policies: [ENFORCE], deployments: [ownReasons] });
      expect(await h.reconcile('shop/api')).toEqual({ requeueAfterMs: RESYNC_MS });
      expect(h.writes).toEqual([]);
      expect(await counterValue(h.metrics.rolloutWaits, { policy: 'p', reason: 'RollingOut' })).toBe(1);
    });

    test('a rolling Deployment won by another policy does not count', async () => {
      // api is selected by both policies, and won by the other one (higher priority).
      const other = policyObject('other', {
        mode: 'Enforce',
        priority: 10,
        deploymentSelector: { matchLabels: { team: 'x' } },
      });
      const h = harness({
        policies: [ENFORCE, other],
        deployments: [
          web(),
          deployment({ name: 'api', labels: { team: 'x' }, generation: 2, status: rollingApi.status }),
        ],
      });
      await h.reconcile('shop/web');
      expect(h.writes.map((w) => w.metadata.name)).toEqual(['web']);
    });

    test('a patch this replica just made counts before the cache shows it', async () => {
      const h = harness({ policies: [ENFORCE], deployments: [web(), deployment({ name: 'api' })] });
      await h.reconcile('shop/web');
      expect(h.writes).toHaveLength(1);
      expect(await h.reconcile('shop/api')).toEqual({ requeueAfterMs: RESYNC_MS });
      expect(h.writes).toHaveLength(1);
    });

    test('a failed write rejects and releases the reservation', async () => {
      const h = harness({ policies: [ENFORCE], deployments: [web(), deployment({ name: 'api' })] });
      h.failWith.error = new Error('conflict');
      await expect(h.reconcile('shop/web')).rejects.toThrow('conflict');
      expect(h.tracker.reservedCount).toBe(0);
      expect(h.events).toEqual([]);
      h.failWith.error = undefined;
      // With the reservation leaked, api would wait for web's rollout that never started.
      expect(await h.reconcile('shop/api')).toEqual(AFTER_WRITE);
      expect(h.writes.map((w) => w.metadata.name)).toEqual(['api']);
    });

    test('after a failed write, the next reconcile applies', async () => {
      const h = harness({ policies: [ENFORCE], deployments: [web()] });
      h.failWith.error = new Error('conflict');
      await expect(h.reconcile('shop/web')).rejects.toThrow('conflict');
      h.failWith.error = undefined;
      expect(await h.reconcile('shop/web')).toEqual(AFTER_WRITE);
      expect(h.writes.map((w) => w.metadata.name)).toEqual(['web']);
      expect(h.events.map((e) => e.reason)).toEqual(['ShutdownSettingsApplied']);
    });
  });
});

describe('observed latency', () => {
  const spec = { mode: 'Enforce', observedLatency: { source: 'Prometheus', minSamples: 100 } };
  test('a Deployment whose policy has a source waits for its first estimate, then gets one write with it', async () => {
    const estimates = new EstimateCache();
    const h = harness({ policies: [policyObject('p', spec)], deployments: [web()], estimates });
    expect(await h.reconcile('shop/web')).toBeUndefined();
    expect(h.writes).toEqual([]);
    estimates.update(
      'shop/web',
      { known: true, seconds: 20, samples: 500, percentile: 0.99, window: '1h', source: 'Prometheus' },
      { stabilizationMs: 60_000, minSamples: 100 },
    );
    await h.reconcile('shop/web');
    expect(h.writes).toHaveLength(1);
    // preStop 5 + drain ceil(20 x 1.5) = 30 + overhead 5.
    expect(h.writes[0]?.spec?.template.spec.terminationGracePeriodSeconds).toBe(40);
    expect(h.events[0]?.message).toContain('grace 40 s = preStop 5 + drain 30 (p99 20 s x 1.5) + overhead 5');
  });

  describe('ownership from managedFields (server-side apply modelled, field removal included)', () => {
    const optedOut = (d: V1Deployment, out: boolean): V1Deployment => {
      const copy = structuredClone(d);
      const annotations = { ...copy.metadata?.annotations };
      if (out) annotations[EXCLUDE_ANNOTATION] = 'true';
      else delete annotations[EXCLUDE_ANNOTATION];
      copy.metadata = { ...copy.metadata, annotations };
      return copy;
    };

    test('the fake removes a field the manager applied before and leaves out now (negative control)', () => {
      const probe = { httpGet: { path: '/readyz', port: 8080 } };
      const config: ApplyConfiguration = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: 'shop' },
        spec: { template: { spec: { containers: [{ name: 'web', readinessProbe: probe }] } } },
      };
      const applied = afterApply(web(), config);
      expect(applied.spec?.template?.spec?.containers[0]?.readinessProbe).toEqual(probe);
      const { spec: _, ...empty } = config;
      expect(afterApply(applied, empty).spec?.template?.spec?.containers[0]?.readinessProbe).toBeUndefined();
    });

    test('opted out and back in: released, re-adopted, the pod template never changes', async () => {
      const h = harness({ policies: [ENFORCE], deployments: [web()], serverSideApply: true });
      await h.reconcile('shop/web');
      const template = () => JSON.stringify(h.deployments.get('shop/web')?.spec?.template);
      const managed = template();
      h.deployments.put(optedOut(h.deployments.get('shop/web') as V1Deployment, true));
      await h.reconcile('shop/web');
      expect(h.deployments.get('shop/web')?.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeUndefined();
      expect(template()).toBe(managed);
      // Meanwhile the policy stops writing preStop hooks: the one the operator wrote stays its own.
      const changed = policyObject('p', { mode: 'Enforce', preStop: { inject: 'Never' } }, 2);
      h.policies.put({ ...changed, metadata: { ...changed.metadata, resourceVersion: '2' } });
      h.deployments.put(optedOut(h.deployments.get('shop/web') as V1Deployment, false));
      await h.reconcile('shop/web');
      expect(template()).toBe(managed);
      expect(h.writes).toHaveLength(3);
      expect(h.events.map((e) => e.reason)).toEqual(['ShutdownSettingsApplied', 'ShutdownSettingsReleased']);
    });

    test('the record deleted by hand: written again, the pod template unchanged', async () => {
      const h = harness({ policies: [ENFORCE], deployments: [web()], serverSideApply: true });
      await h.reconcile('shop/web');
      const managed = structuredClone(h.deployments.get('shop/web') as V1Deployment);
      const stripped = structuredClone(managed);
      delete stripped.metadata?.annotations?.[APPLIED_ANNOTATION];
      h.deployments.put(stripped);
      await h.reconcile('shop/web');
      const after = h.deployments.get('shop/web');
      expect(after?.metadata?.annotations?.[APPLIED_ANNOTATION]).toBeDefined();
      expect(after?.spec?.template).toEqual(managed.spec?.template);
    });
  });

  describe('another field manager setting a field back (policy/conflicts.ts)', () => {
    const NOW = Date.parse('2026-12-07T10:00:00Z');
    /** Argo CD's sync of a manifest with terminationGracePeriodSeconds 10 (or none). */
    const sync = (grace?: number): ApplyConfiguration => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { template: { spec: grace === undefined ? {} : { terminationGracePeriodSeconds: grace } } },
    });
    const grace = (h: Harness) =>
      h.deployments.get('shop/web')?.spec?.template?.spec?.terminationGracePeriodSeconds;
    const record = (h: Harness) =>
      JSON.parse(
        h.deployments.get('shop/web')?.metadata?.annotations?.[APPLIED_ANNOTATION] ?? '{}',
      ) as AppliedRecord;
    const syncAgain = (h: Harness, value?: number) =>
      h.deployments.put(
        afterForcedApply(h.deployments.get('shop/web') as V1Deployment, sync(value), 'argocd-controller'),
      );

    const fight = async () => {
      let clock = NOW;
      const h = harness({
        // Above the default 30 s, which a grace period let go of falls back to.
        policies: [policyObject('p', { mode: 'Enforce', terminationGracePeriod: { minSeconds: 45 } })],
        deployments: [afterForcedApply(web(), sync(10), 'argocd-controller')],
        serverSideApply: true,
        now: () => clock,
      });
      await h.reconcile('shop/web');
      const wanted = grace(h);
      expect(wanted).toBe(45);
      clock += 60_000;
      syncAgain(h, 10);
      return { h, wanted, tick: () => (clock += 60_000) };
    };

    test('the first set-back is written once more, with a Warning naming the manager and the field', async () => {
      const { h, wanted } = await fight();
      await h.reconcile('shop/web');
      expect(grace(h)).toBe(wanted);
      expect(record(h).conflict).toMatchObject({
        manager: 'argocd-controller',
        field: 'terminationGracePeriodSeconds',
      });
      expect(record(h).conflict?.held).toBeUndefined();
      const warning = h.events.find((e) => e.reason === 'FieldSetBack');
      expect(warning?.type).toBe('Warning');
      expect(warning?.message).toContain('field manager argocd-controller set it to 10');
      expect(await counterValue(h.metrics.fieldConflicts, { policy: 'p', action: 'reapplied' })).toBe(1);
    });

    test('a second set-back within the window holds the Deployment: no template write, ever again', async () => {
      const { h, tick } = await fight();
      await h.reconcile('shop/web');
      tick();
      syncAgain(h, 10);
      const template = () => JSON.stringify(h.deployments.get('shop/web')?.spec?.template);
      const before = template();
      await h.reconcile('shop/web');
      expect(grace(h)).toBe(10);
      expect(record(h).conflict).toMatchObject({ manager: 'argocd-controller', held: true });
      // The hold's one write is the record: it owns no template field it did not own before.
      const last = h.writes.at(-1);
      expect(last?.spec?.template.spec.terminationGracePeriodSeconds).toBeUndefined();
      const held = h.events.find((e) => e.reason === 'ConflictingManager');
      expect(held?.type).toBe('Warning');
      expect(held?.message).toContain('argocd-controller set it to 10 again');
      // More syncs, days later: nothing is written.
      const writes = h.writes.length;
      for (let i = 0; i < 3; i++) {
        tick();
        syncAgain(h, 10);
        await h.reconcile('shop/web');
      }
      expect(h.writes.length).toBe(writes);
      expect(template()).toBe(before);
      expect(h.events.filter((e) => e.reason === 'ConflictingManager')).toHaveLength(1);
      expect(await counterValue(h.metrics.fieldConflicts, { policy: 'p', action: 'held' })).toBe(1);
    });

    test('resumes when the manager lets go of the field, and forgets the hold', async () => {
      const { h, wanted, tick } = await fight();
      await h.reconcile('shop/web');
      tick();
      syncAgain(h, 10);
      await h.reconcile('shop/web');
      expect(record(h).conflict?.held).toBe(true);
      // The manifest no longer sets it: Argo's apply lets go, the field is gone.
      tick();
      syncAgain(h);
      expect(grace(h)).toBeUndefined();
      await h.reconcile('shop/web');
      expect(grace(h)).toBe(wanted);
      expect(record(h).conflict).toBeUndefined();
    });

    test('a manager whose value is compliant is no conflict: nothing is written', async () => {
      const { h, tick } = await fight();
      await h.reconcile('shop/web');
      tick();
      syncAgain(h, 600);
      const writes = h.writes.length;
      await h.reconcile('shop/web');
      expect(h.writes.length).toBe(writes);
      expect(grace(h)).toBe(600);
      expect(h.events.filter((e) => e.reason === 'ConflictingManager')).toHaveLength(0);
    });
  });

  describe('unhealthy and failed rollouts', () => {
    const NOW = Date.parse('2026-11-30T12:00:00Z');
    const PROBE = {
      httpGet: { path: '/readyz', port: 8080 },
      periodSeconds: 5,
      timeoutSeconds: 1,
      failureThreshold: 3,
    };
    /** Mid-rollout of the operator's write of a probe, started `ageMs` ago. */
    const stalled = (ageMs: number) =>
      web({
        generation: 2,
        annotations: {
          [APPLIED_ANNOTATION]: appliedRecord({
            containers: { web: { readinessProbe: true } },
            rollout: {
              generation: 2,
              startedAt: new Date(NOW - ageMs).toISOString(),
              previous: { containers: { web: { readinessProbe: null } } },
            },
          }),
        },
        containers: [container('web', [['http', 8080]], { readinessProbe: PROBE })],
        status: ROLLING_STATUS,
      });
    const policy = (onFailure: 'Pause' | 'Revert') =>
      policyObject('p', { mode: 'Enforce', rollout: { progressDeadlineSeconds: 60, onFailure } });

    test("the operator's rollout done, the user's image change a day later stalls: not the operator's, nothing reverted", async () => {
      let clock = NOW;
      const h = harness({
        policies: [policy('Revert')],
        deployments: [web({ containers: [container('web', [['http', 8080]])] })],
        now: () => clock,
        serverSideApply: true,
      });
      await h.reconcile('shop/web');
      expect(h.writes).toHaveLength(1);
      await h.reconcile('shop/web'); // the cache shows it done (afterApply observes the generation)
      const applied = h.deployments.get('shop/web') as V1Deployment;
      const userChange = structuredClone(applied);
      const containers = userChange.spec?.template?.spec?.containers ?? [];
      if (containers[0]) containers[0].image = 'example/web:2';
      userChange.metadata = { ...userChange.metadata, generation: (applied.metadata?.generation ?? 0) + 1 };
      userChange.status = {
        observedGeneration: userChange.metadata.generation,
        replicas: 3,
        updatedReplicas: 1,
        readyReplicas: 2,
        availableReplicas: 2,
      };
      h.deployments.put(userChange);
      clock += 86_400_000;
      await h.reconcile('shop/web');
      expect(h.writes).toHaveLength(1);
      expect(h.patches).toEqual([]);
      expect(h.events.map((e) => e.reason)).toEqual(['ShutdownSettingsApplied']);
    });

    test('an unhealthy Deployment is not patched and takes no slot', async () => {
      const broken = deployment({
        name: 'api',
        status: {
          observedGeneration: 1,
          replicas: 2,
          updatedReplicas: 2,
          readyReplicas: 0,
          availableReplicas: 0,
        },
      });
      const h = harness({ policies: [ENFORCE], deployments: [broken, web()] });
      // Woken by its own recovery (an update event); the resync is the safety net.
      expect(await h.reconcile('shop/api')).toEqual({ requeueAfterMs: RESYNC_MS });
      expect(await counterValue(h.metrics.rolloutWaits, { policy: 'p', reason: 'Unhealthy' })).toBe(1);
      // Not among the keys a freed slot wakes: its own recovery ends the wait.
      expect(h.tracker.takeWaiting('p')).toEqual([]);
      await h.reconcile('shop/web');
      expect(h.writes.map((w) => w.metadata.name)).toEqual(['web']);
    });

    test('within rollout.progressDeadlineSeconds: nothing; looked at again a second past the deadline, when it fails', async () => {
      let clock = NOW;
      const h = harness({
        policies: [policy('Pause')],
        deployments: [stalled(30_000)],
        now: () => clock,
        serverSideApply: true,
      });
      // 60 s deadline, started 30 s ago: no polling meanwhile (progress is a watch event).
      expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: 31_000 });
      expect(h.writes).toEqual([]);
      clock += 31_000;
      await h.reconcile('shop/web');
      expect(h.events.map((e) => e.reason)).toEqual(['RolloutFailed']);
    });

    test("the operator's rollout of a compliant Deployment: looked at again at its deadline, not polled", async () => {
      const h = harness({ policies: [policy('Pause')], deployments: [web()], now: () => NOW });
      // Right after the write: its watch event comes back; the deadline is the safety net.
      expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: 61_000 });
      const [config] = h.writes;
      if (!config) throw new Error('no write');
      // The write reached the cache; the new pods are not all there yet.
      const rolling = afterApply(web(), config);
      rolling.status = { ...ROLLING_STATUS, observedGeneration: rolling.metadata?.generation };
      h.deployments.put(rolling);
      expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: 61_000 });
      expect(h.writes).toHaveLength(1);
    });

    test('a rollout start that is no time (a hand-edited record): the resync, not a NaN', async () => {
      const garbled = stalled(0);
      const annotations = garbled.metadata?.annotations ?? {};
      const record = JSON.parse(annotations[APPLIED_ANNOTATION] ?? '{}') as AppliedRecord;
      annotations[APPLIED_ANNOTATION] = JSON.stringify({
        ...record,
        rollout: { ...record.rollout, startedAt: 'yesterday' },
      });
      const h = harness({ policies: [policy('Pause')], deployments: [garbled], now: () => NOW });
      expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
    });

    test('Pause: the failure is recorded (template kept), a Warning Event, and no other rollout starts', async () => {
      const h = harness({
        policies: [policy('Pause')],
        deployments: [stalled(61_000), deployment({ name: 'api' })],
        now: () => NOW,
        serverSideApply: true,
      });
      await h.reconcile('shop/web');
      const failed = h.deployments.get('shop/web') as V1Deployment;
      const record = JSON.parse(failed.metadata?.annotations?.[APPLIED_ANNOTATION] ?? '{}') as AppliedRecord;
      expect(record.failure).toMatchObject({ policyGeneration: 1, reason: 'RolloutTimedOut' });
      expect(failed.spec?.template?.spec?.containers[0]?.readinessProbe).toEqual(PROBE);
      expect(h.patches).toEqual([]);
      expect(h.events.map((e) => [e.type, e.reason])).toEqual([['Warning', 'RolloutFailed']]);
      expect(await counterValue(h.metrics.rolloutFailures, { policy: 'p', action: 'Pause' })).toBe(1);
      // The breaker: api would be patched otherwise.
      await h.reconcile('shop/api');
      expect(h.writes.map((w) => w.metadata.name)).toEqual(['web']);
      expect(await counterValue(h.metrics.rolloutWaits, { policy: 'p', reason: 'BreakerOpen' })).toBe(1);
      expect(templateHash(failed)).toBe(record.failure?.template);
    });

    test('a failure holds only its own namespace: a Deployment in another is written', async () => {
      const h = harness({
        policies: [policy('Pause')],
        deployments: [
          stalled(61_000),
          deployment({ name: 'api' }),
          deployment({ name: 'api', namespace: 'team-b' }),
        ],
        now: () => NOW,
        serverSideApply: true,
      });
      await h.reconcile('shop/web');
      await h.reconcile('shop/api');
      await h.reconcile('team-b/api');
      expect(h.writes.map((w) => `${w.metadata.namespace}/${w.metadata.name}`)).toEqual([
        'shop/web',
        'team-b/api',
      ]);
    });

    test('a tenant forging a failure or a rollout in its own record holds nobody, and is told its record was refused', async () => {
      const forgedFailure = web({
        annotations: {
          [APPLIED_ANNOTATION]: appliedRecord({
            failure: {
              policyGeneration: 1,
              reason: 'RolloutTimedOut',
              message: 'made up',
              at: new Date(NOW).toISOString(),
            },
          }),
        },
      });
      const forgedRollout = deployment({
        name: 'evil',
        generation: 2,
        annotations: {
          [APPLIED_ANNOTATION]: appliedRecord({
            rollout: { generation: 2, startedAt: new Date(NOW).toISOString(), previous: {} },
          }),
        },
        status: ROLLING_STATUS,
      });
      const victims = [deployment({ name: 'api' }), deployment({ name: 'cart' })];
      const run = async (unsealed: boolean) => {
        const h = harness({
          policies: [
            policyObject('p', { mode: 'Enforce', rollout: { maxConcurrent: 1, breakerNamespaces: 1 } }),
          ],
          deployments: [forgedFailure, forgedRollout, ...victims],
          now: () => NOW,
          unsealed,
        });
        await h.reconcile('shop/api');
        return h;
      };
      // Negative control: had the operator written these records, they would hold api back.
      const control = await run(false);
      expect(control.writes).toEqual([]);
      // Forged: api is written, and the forgery is named on the tenant's own Deployment.
      const h = await run(true);
      expect(h.writes.map((w) => w.metadata.name)).toEqual(['api']);
      await h.reconcile('shop/web');
      expect(h.events).toContainEqual(
        expect.objectContaining({
          type: 'Warning',
          reason: 'RecordRefused',
          object: expect.objectContaining({ name: 'web' }),
        }),
      );
    });

    test("a record copied from another Deployment never makes the operator take, then lower, the user's grace period", async () => {
      // Found on the real cluster: the copy claimed grace 45 as the operator's; with the cache
      // dropping managedFields where the operator had no entry, the record was believed, the
      // user's 60 taken over by a record write, then lowered to 45.
      const gracePolicy = policyObject('p', {
        mode: 'Enforce',
        readinessProbe: { inject: 'Never' },
        preStop: { inject: 'Never' },
        terminationGracePeriod: { minSeconds: 45 },
      });
      const honest = deployment({ name: 'honest', uid: 'uid-honest' });
      const copied = recordAnnotation(
        honest,
        {
          policy: 'p',
          policyGeneration: 1,
          terminationGracePeriodSeconds: 45,
          containers: {},
          templateAnnotations: ['gracefulshutdown.dev/termination-grace-period-seconds'],
          reason: 'copied',
        },
        TEST_SEAL,
      );
      const user = web({ grace: 60, annotations: { [APPLIED_ANNOTATION]: copied } });
      user.metadata = {
        ...user.metadata,
        managedFields: [
          { manager: 'kubectl-client-side-apply', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: {} },
        ],
      };
      const cached = deploymentCacheTransform<V1Deployment>(FIELD_MANAGER)(structuredClone(user));
      const h = harness({
        policies: [gracePolicy],
        deployments: [cached],
        serverSideApply: true,
        unsealed: true,
      });
      await h.reconcile('shop/web');
      await h.reconcile('shop/web');
      for (const write of h.writes)
        expect(write.spec?.template.spec).not.toHaveProperty('terminationGracePeriodSeconds');
      expect(h.deployments.get('shop/web')?.spec?.template?.spec?.terminationGracePeriodSeconds).toBe(60);
    });

    test('Revert never writes back values from a record the operator did not seal', async () => {
      const h = harness({
        policies: [policy('Revert')],
        deployments: [stalled(61_000)],
        now: () => NOW,
        unsealed: true,
      });
      await h.reconcile('shop/web');
      expect(h.patches).toEqual([]);
      expect(h.events.map((e) => e.reason)).not.toContain('RolloutReverted');
    });

    test('Revert: the previous values written back by a guarded JSON patch, then the failure recorded', async () => {
      const h = harness({ policies: [policy('Revert')], deployments: [stalled(61_000)], now: () => NOW });
      await h.reconcile('shop/web');
      expect(h.patches).toEqual([
        {
          key: 'shop/web',
          operations: [
            { op: 'test', path: '/spec/template/spec/containers/0/name', value: 'web' },
            { op: 'remove', path: '/spec/template/spec/containers/0/readinessProbe' },
          ],
        },
      ]);
      expect(h.events.map((e) => e.reason)).toEqual(['RolloutFailed', 'RolloutReverted']);
      const last = h.writes.at(-1);
      const record = JSON.parse(last?.metadata.annotations?.[APPLIED_ANNOTATION] ?? '{}') as AppliedRecord;
      expect(record.failure?.template).toBeDefined();
    });
  });

  describe('verified probes', () => {
    const pod: V1Pod = {
      metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web' } },
      spec: { containers: [{ name: 'web', ports: [{ name: 'http', containerPort: 8080 }] }] },
      status: {
        phase: 'Running',
        podIP: '10.88.0.9',
        conditions: [{ type: 'Ready', status: 'True' }],
        containerStatuses: [
          { name: 'web', state: { running: {} }, ready: true, restartCount: 0, image: '', imageID: '' },
        ],
      },
    };
    /** The pod, its container started at `startedAt` (unknown: long ago). */
    const young = (startedAt?: Date): V1Pod => {
      const copy = structuredClone(pod);
      const status = copy.status?.containerStatuses?.[0];
      if (status && startedAt) status.state = { running: { startedAt } };
      return copy;
    };
    const run = async (status: number, options: { paused?: boolean; startedAt?: Date } = {}) => {
      const asked: string[] = [];
      const verifier = new ProbeVerifier({
        check: async (target) => {
          asked.push(`${target.podIP}:${target.port}${target.path}`);
          return {
            ok: status < 400,
            url: `http://${target.podIP}:${target.port}${target.path}`,
            outcome: `answered ${status}`,
          };
        },
      });
      const h = harness({
        policies: [ENFORCE],
        deployments: [
          web({
            containers: [container('web', [['http', 8080]])],
            ...(options.paused ? { paused: true } : {}),
          }),
        ],
        probes: { verifier, podsOf: () => [young(options.startedAt)] },
      });
      // The reconcile requests the checks and returns; they run apart, then the key comes back.
      const result = await h.reconcile('shop/web');
      await h.checks?.idle();
      if (h.checked.some(([, pending]) => !pending)) await h.reconcile('shop/web');
      const written = h.writes[0]?.spec?.template.spec.containers as
        | { readinessProbe?: unknown }[]
        | undefined;
      return {
        asked,
        probe: written?.[0]?.readinessProbe,
        writes: h.writes.length,
        result,
        checked: h.checked,
      };
    };

    test('a write that waits anyway (paused) asks nothing', async () => {
      const { asked, writes } = await run(200, { paused: true });
      expect(asked).toEqual([]);
      expect(writes).toBe(0);
    });

    test('pods that only just started: nothing asked, nothing written, back soon (the check says pending)', async () => {
      const { asked, writes, checked } = await run(200, { startedAt: new Date() });
      expect(asked).toEqual([]);
      expect(writes).toBe(0);
      expect(checked).toEqual([['shop/web', true]]);
    });

    test('joining a template rollout (OnNextRollout): written at once, as for a new Deployment; the check runs in the background', async () => {
      const verifier = new ProbeVerifier({
        check: async (target) => ({
          ok: true,
          url: `http://${target.podIP}/readyz`,
          outcome: 'answered 200',
        }),
      });
      const h = harness({
        policies: [policyObject('p', { mode: 'Enforce', rollout: { updateExisting: 'OnNextRollout' } })],
        // The user's new template is rolling out: pods of the old one still run.
        deployments: [
          web({
            generation: 2,
            containers: [container('web', [['http', 8080]])],
            status: { ...ROLLING_STATUS, observedGeneration: 2 },
          }),
        ],
        probes: { verifier, podsOf: () => [young(new Date())] },
      });
      await h.reconcile('shop/web');
      expect(h.writes).toHaveLength(1);
      const written = h.writes[0]?.spec?.template.spec.containers as { readinessProbe?: unknown }[];
      // The port is named http: httpGet, as the webhook writes it for a Deployment with no pod to ask.
      expect(written[0]?.readinessProbe).toMatchObject({ httpGet: { path: '/readyz' } });
      await h.checks?.idle();
      expect(h.checked.map(([key]) => key)).toEqual(['shop/web']);
    });

    test('the check runs outside the reconcile: it returns at once, the worker free, and the key comes back when done', async () => {
      let answer: (() => void) | undefined;
      const verifier = new ProbeVerifier({
        check: (target) =>
          new Promise((resolve) => {
            answer = () =>
              resolve({ ok: true, url: `http://${target.podIP}/readyz`, outcome: 'answered 200' });
          }),
      });
      const h = harness({
        policies: [ENFORCE],
        deployments: [web({ containers: [container('web', [['http', 8080]])] })],
        probes: { verifier, podsOf: () => [young()] },
      });
      expect(await h.reconcile('shop/web')).toEqual({ requeueAfterMs: RESYNC_MS });
      expect(h.writes).toEqual([]);
      // A second reconcile meanwhile asks nothing more (the check is already running).
      await h.reconcile('shop/web');
      await new Promise((resolve) => setImmediate(resolve));
      answer?.();
      await h.checks?.idle();
      expect(h.checked).toEqual([['shop/web', false]]);
      await h.reconcile('shop/web');
      expect(h.writes).toHaveLength(1);
    });

    test('the app answers the path: the probe is written', async () => {
      const { asked, probe } = await run(200);
      expect(asked).toEqual(['10.88.0.9:8080/readyz']);
      expect(probe).toBeDefined();
    });

    test('it answers 404: no probe (the rest of the plan still written)', async () => {
      const { asked, probe } = await run(404);
      expect(asked).toEqual(['10.88.0.9:8080/readyz']);
      expect(probe).toBeUndefined();
    });
  });
});
