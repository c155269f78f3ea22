import type { V1Deployment, V1ManagedFieldsEntry } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { APPLIED_ANNOTATION, FIELD_MANAGER } from '../api/annotations.ts';
import { deploymentCacheTransform } from '../kube/informer.ts';
import { rolloutState } from './budget.ts';
import { conflictDecision, conflictMemory, conflictWait, fieldsTakenOver, managerName } from './conflicts.ts';
import type { FieldChange } from './diff.ts';
import type { AppliedRecord } from './ownership.ts';
import { container, deployment, operatorRecord, policy } from './test-fixtures.ts';

const NOW = Date.parse('2026-12-07T10:00:00Z');
const POLICY = policy('standard', { mode: 'Enforce', rollout: { conflictWindowSeconds: 3600 } });

const GRACE = { 'f:terminationGracePeriodSeconds': {} };
const APP_PROBE = { 'f:containers': { 'k:{"name":"web"}': { '.': {}, 'f:readinessProbe': {} } } };
const APP_HOOK = { 'f:containers': { 'k:{"name":"web"}': { '.': {}, 'f:lifecycle': { 'f:preStop': {} } } } };

function entry(manager: string, podSpec: object, operation = 'Apply', time = '2026-12-07T09:00:00Z') {
  return {
    manager,
    operation,
    apiVersion: 'apps/v1',
    time,
    fieldsType: 'FieldsV1',
    fieldsV1: { 'f:spec': { 'f:template': { 'f:spec': podSpec } } },
  } as unknown as V1ManagedFieldsEntry;
}

const RECORD: AppliedRecord = {
  policy: 'standard',
  policyGeneration: 1,
  terminationGracePeriodSeconds: 45,
  containers: { web: { readinessProbe: true, preStop: true } },
  reason: '',
};

function withFields(
  record: AppliedRecord | undefined,
  managedFields: V1ManagedFieldsEntry[],
  grace = 10,
): V1Deployment {
  const d = deployment({
    grace,
    containers: [
      container('web', [['http', 8080]], {
        readinessProbe: { httpGet: { path: '/readyz', port: 8080 } },
        lifecycle: { preStop: { sleep: { seconds: 5 } } },
      }),
    ],
    ...(record ? { annotations: { [APPLIED_ANNOTATION]: JSON.stringify(record) } } : {}),
  });
  return { ...d, metadata: { ...d.metadata, managedFields } };
}

const GRACE_CHANGE: FieldChange = {
  field: 'terminationGracePeriodSeconds',
  missing: false,
  from: '10',
  to: '45',
};

/** The record with a memory of a set-back of the grace period (by Argo CD unless said). */
function remembering(conflict: Partial<NonNullable<AppliedRecord['conflict']>> = {}): AppliedRecord {
  return {
    ...RECORD,
    conflict: {
      manager: 'argocd-controller',
      field: 'terminationGracePeriodSeconds',
      at: new Date(NOW).toISOString(),
      ...conflict,
    },
  };
}

describe('fieldsTakenOver', () => {
  it('names the manager that now owns a field the record says the operator wrote', () => {
    const d = withFields(RECORD, [
      entry(FIELD_MANAGER, { ...APP_PROBE, ...APP_HOOK }),
      entry('argocd-controller', GRACE),
    ]);
    expect(fieldsTakenOver(d, operatorRecord(d))).toEqual([
      { field: 'terminationGracePeriodSeconds', manager: 'argocd-controller' },
    ]);
  });

  it('sees an Update manager (kubectl client-side apply, helm, kubectl edit) the same way', () => {
    const d = withFields(RECORD, [
      entry(FIELD_MANAGER, { ...GRACE, ...APP_HOOK }),
      entry('kubectl-client-side-apply', APP_PROBE, 'Update'),
    ]);
    expect(fieldsTakenOver(d, operatorRecord(d))).toEqual([
      { field: 'readinessProbe', container: 'web', manager: 'kubectl-client-side-apply' },
    ]);
  });

  it("still sees the takeover in the operator's Deployment cache, which trims managedFields", () => {
    const d = withFields(RECORD, [
      entry(FIELD_MANAGER, { ...APP_PROBE, ...APP_HOOK }),
      entry('argocd-controller', {
        ...GRACE,
        'f:containers': { 'k:{"name":"web"}': { '.': {}, 'f:image': {} } },
      }),
      entry('kubectl-scale', {}, 'Update'),
    ]);
    const cached = deploymentCacheTransform<V1Deployment>(FIELD_MANAGER)(structuredClone(d));
    expect(fieldsTakenOver(cached, operatorRecord(cached))).toEqual([
      { field: 'terminationGracePeriodSeconds', manager: 'argocd-controller' },
    ]);
  });

  it('finds nothing while the operator still owns its fields (shared ownership included)', () => {
    const d = withFields(RECORD, [
      entry(FIELD_MANAGER, { ...GRACE, ...APP_PROBE, ...APP_HOOK }),
      entry('argocd-controller', GRACE),
    ]);
    expect(fieldsTakenOver(d, operatorRecord(d))).toEqual([]);
  });

  it('is no takeover when nobody owns the field any more (a manager let go of it, or it was removed)', () => {
    const d = withFields(RECORD, [
      entry(FIELD_MANAGER, { ...GRACE, ...APP_PROBE }),
      entry('kubectl-edit', {}, 'Update'),
    ]);
    const withoutHook = structuredClone(d);
    const web = withoutHook.spec?.template?.spec?.containers[0];
    if (web) web.lifecycle = undefined;
    expect(fieldsTakenOver(withoutHook, operatorRecord(withoutHook))).toEqual([]);
  });

  it('finds nothing without a record or without managedFields (nothing can be told)', () => {
    const noRecord = withFields(undefined, [entry('argocd-controller', GRACE)]);
    expect(fieldsTakenOver(noRecord, undefined)).toEqual([]);
    const d = withFields(RECORD, []);
    const bare = { ...d, metadata: { ...d.metadata, managedFields: undefined } };
    expect(fieldsTakenOver(bare, RECORD)).toEqual([]);
  });

  it("ignores the status subresource and the operator's own Update entries (its JSON patches)", () => {
    const d = withFields(RECORD, [
      entry(FIELD_MANAGER, { ...APP_PROBE, ...APP_HOOK }),
      entry(FIELD_MANAGER, GRACE, 'Update'),
      { ...entry('kube-controller-manager', GRACE, 'Update'), subresource: 'status' },
    ]);
    // Nobody else owns the grace period, and it is present: not a takeover.
    expect(fieldsTakenOver(d, operatorRecord(d))).toEqual([]);
  });

  it('bounds a hostile manager name to one printable line', () => {
    expect(managerName(`evil\n::error::x${'a'.repeat(300)}`)).toMatch(/^evil\?::error::xa+$/);
    expect(managerName(`evil\n${'a'.repeat(300)}`)).toHaveLength(128);
    expect(managerName('')).toBe('an unnamed manager');
  });
});

describe('conflictDecision', () => {
  const taken = (record: AppliedRecord) =>
    withFields(record, [
      entry(FIELD_MANAGER, { ...APP_PROBE, ...APP_HOOK }),
      entry('argocd-controller', GRACE),
    ]);

  it('re-applies once on the first set-back, and says so', () => {
    const d = taken(RECORD);
    const decision = conflictDecision({
      deployment: d,
      record: operatorRecord(d),
      changes: [GRACE_CHANGE],
      policy: POLICY,
      now: NOW,
    });
    expect(decision.kind).toBe('Reapply');
    expect(decision.kind !== 'None' && decision.message).toContain(
      'field manager argocd-controller set it to 10 after the operator wrote terminationGracePeriodSeconds',
    );
    expect(conflictWait(decision)).toBeUndefined();
  });

  it('holds when the same manager sets the same field back within the window', () => {
    const first = conflictDecision({
      deployment: taken(RECORD),
      record: RECORD,
      changes: [GRACE_CHANGE],
      policy: POLICY,
      now: NOW,
    });
    if (first.kind === 'None') throw new Error('expected a conflict');
    const remembered: AppliedRecord = { ...RECORD, conflict: conflictMemory(first, NOW) };
    const d = taken(remembered);
    const again = conflictDecision({
      deployment: d,
      record: operatorRecord(d),
      changes: [GRACE_CHANGE],
      policy: POLICY,
      now: NOW + 60_000,
    });
    expect(again.kind).toBe('Hold');
    expect(conflictWait(again)).toMatchObject({ kind: 'Wait', reason: 'ConflictingManager' });
    expect(again.kind !== 'None' && again.message).toMatch(/argocd-controller set it to 10 again .* held/);
  });

  it('re-applies again once the window has passed since the last set-back', () => {
    const remembered: AppliedRecord = remembering();
    const decision = conflictDecision({
      deployment: taken(remembered),
      record: remembered,
      changes: [GRACE_CHANGE],
      policy: POLICY,
      now: NOW + 3600_000,
    });
    expect(decision.kind).toBe('Reapply');
  });

  it('keeps holding past the window while the hold lasts', () => {
    const held: AppliedRecord = remembering({ held: true });
    const decision = conflictDecision({
      deployment: taken(held),
      record: held,
      changes: [GRACE_CHANGE],
      policy: POLICY,
      now: NOW + 30 * 86_400_000,
    });
    expect(decision.kind).toBe('Hold');
  });

  it("is no conflict when the other manager's value is compliant (the plan changes nothing there)", () => {
    const held: AppliedRecord = remembering({ held: true });
    expect(
      conflictDecision({ deployment: taken(held), record: held, changes: [], policy: POLICY, now: NOW }).kind,
    ).toBe('None');
  });

  it('is no conflict once the manager lets go of the field (nobody else owns it)', () => {
    const held: AppliedRecord = remembering({ held: true });
    const d = withFields(held, [entry(FIELD_MANAGER, { ...APP_PROBE, ...APP_HOOK })], 30);
    expect(
      conflictDecision({
        deployment: d,
        record: held,
        changes: [{ ...GRACE_CHANGE, from: '30' }],
        policy: POLICY,
        now: NOW,
      }).kind,
    ).toBe('None');
  });

  it('does not hold for another manager or another field than the one remembered', () => {
    const remembered: AppliedRecord = remembering({ manager: 'helm' });
    expect(
      conflictDecision({
        deployment: taken(remembered),
        record: remembered,
        changes: [GRACE_CHANGE],
        policy: POLICY,
        now: NOW,
      }).kind,
    ).toBe('Reapply');
  });

  it('does not hold on a memory written for another policy', () => {
    const other: AppliedRecord = { ...remembering({ held: true }), policy: 'other' };
    expect(
      conflictDecision({
        deployment: taken(other),
        record: other,
        changes: [GRACE_CHANGE],
        policy: POLICY,
        now: NOW,
      }).kind,
    ).toBe('Reapply');
  });
});

describe('the record keeps a conflict only in a bounded, known shape', () => {
  const parse = (conflict: unknown) =>
    operatorRecord(
      deployment({ annotations: { [APPLIED_ANNOTATION]: JSON.stringify({ ...RECORD, conflict }) } }),
    )?.conflict;

  it('reads a well-formed memory', () => {
    expect(
      parse({ manager: 'flux', field: 'preStop', container: 'web', at: '2026-12-07T10:00:00Z', held: true }),
    ).toEqual({
      manager: 'flux',
      field: 'preStop',
      container: 'web',
      at: '2026-12-07T10:00:00Z',
      held: true,
    });
  });

  it('drops an unknown field, an over-long manager and a malformed memory', () => {
    expect(parse({ manager: 'flux', field: 'image', at: '2026-12-07T10:00:00Z' })).toBeUndefined();
    expect(parse({ manager: 'x'.repeat(129), field: 'preStop', at: '2026-12-07T10:00:00Z' })).toBeUndefined();
    expect(parse('held')).toBeUndefined();
    expect(parse({ manager: 'flux', field: 'preStop', at: '2026-12-07T10:00:00Z', held: 'yes' })).toEqual({
      manager: 'flux',
      field: 'preStop',
      at: '2026-12-07T10:00:00Z',
    });
  });
});

describe('rolloutState after a takeover', () => {
  it("does not count the other manager's rollout as the operator's own, even on this replica", () => {
    const record: AppliedRecord = {
      ...RECORD,
      rollout: { generation: 2, startedAt: new Date(NOW - 1000).toISOString(), previous: {} },
    };
    const base = taken3(record);
    const rolling: V1Deployment = {
      ...base,
      metadata: { ...base.metadata, generation: 3 },
      status: {
        observedGeneration: 3,
        replicas: 3,
        updatedReplicas: 1,
        readyReplicas: 2,
        availableReplicas: 2,
      },
    };
    expect(rolloutState(rolling, operatorRecord(rolling), POLICY, NOW, { startedHere: true }).kind).toBe(
      'RollingOut',
    );
    // The negative control: the same rollout without the takeover is the operator's.
    const ours = withFields(record, [entry(FIELD_MANAGER, { ...GRACE, ...APP_PROBE, ...APP_HOOK })]);
    const oursRolling: V1Deployment = {
      ...ours,
      metadata: { ...ours.metadata, generation: 3 },
      status: rolling.status,
    };
    expect(
      rolloutState(oursRolling, operatorRecord(oursRolling), POLICY, NOW, { startedHere: true }).kind,
    ).toBe('OwnRollout');
  });

  function taken3(record: AppliedRecord): V1Deployment {
    return withFields(record, [
      entry(FIELD_MANAGER, { ...APP_PROBE, ...APP_HOOK }),
      entry('argocd-controller', GRACE),
    ]);
  }
});
