import type { V1Deployment, V1Lease } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { APPLIED_ANNOTATION, FIELD_MANAGER } from '../api/annotations.ts';
import { recordAnnotation } from '../policy/ownership.ts';
import { describeKept, handOverPatch, keepApply, operatorRunning } from './release.ts';
import { gspRun } from './test-support.ts';

const now = new Date('2026-12-07T20:00:00Z');
const lease = (spec: V1Lease['spec']): V1Lease => ({ spec });

function managed(annotations: Record<string, string> = {}): V1Deployment {
  const deployment: V1Deployment = {
    metadata: {
      name: 'web',
      namespace: 'shop',
      annotations,
      managedFields: [
        { manager: 'kubectl', operation: 'Apply', apiVersion: 'apps/v1' },
        { manager: FIELD_MANAGER, operation: 'Update', apiVersion: 'apps/v1' },
        { manager: FIELD_MANAGER, operation: 'Apply', apiVersion: 'apps/v1', subresource: 'status' },
        {
          manager: FIELD_MANAGER,
          operation: 'Apply',
          apiVersion: 'apps/v1',
          fieldsType: 'FieldsV1',
          fieldsV1: {
            'f:spec': {
              'f:template': {
                'f:spec': {
                  'f:terminationGracePeriodSeconds': {},
                  'f:containers': {
                    'k:{"name":"web"}': { '.': {}, 'f:name': {}, 'f:lifecycle': { 'f:preStop': {} } },
                  },
                },
              },
            },
          },
        },
      ],
    },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      template: {
        spec: {
          terminationGracePeriodSeconds: 35,
          containers: [{ name: 'web', image: 'web:1', lifecycle: { preStop: { sleep: { seconds: 5 } } } }],
        },
      },
    },
  };
  return deployment;
}

const withRecord = (): V1Deployment => {
  const d = managed();
  const record = recordAnnotation(d, {
    policy: 'shop',
    policyGeneration: 1,
    reason: 'test',
    terminationGracePeriodSeconds: 35,
    containers: { web: { preStop: true } },
  });
  return managed({ [APPLIED_ANNOTATION]: record, team: 'a' });
};

describe('gsp release: pure parts', () => {
  test("operatorRunning: held when the Lease is renewed within its duration, whatever this machine's clock says; free when released; stale when not renewed", async () => {
    const at = (seconds: number) => new Date(now.getTime() + seconds * 1000);
    const sequence = (...leases: V1Lease[]) => {
      let i = 0;
      return async () => leases[Math.min(i++, leases.length - 1)] as V1Lease;
    };
    const slept: number[] = [];
    const sleep = async (ms: number) => {
      slept.push(ms);
    };
    // Renewed two reads later: held, even with a renewTime far in this machine's past.
    const held = await operatorRunning(
      sequence(
        lease({ holderIdentity: 'op-1', renewTime: at(-3600), leaseDurationSeconds: 15 }),
        lease({ holderIdentity: 'op-1', renewTime: at(-3600), leaseDurationSeconds: 15 }),
        lease({ holderIdentity: 'op-1', renewTime: at(-3598), leaseDurationSeconds: 15 }),
      ),
      sleep,
    );
    expect(held).toEqual({ state: 'held', holder: 'op-1', seconds: 2 });
    // Released on a clean stop: free at once, no waiting.
    slept.length = 0;
    expect(
      await operatorRunning(sequence(lease({ holderIdentity: '', leaseDurationSeconds: 1 })), sleep),
    ).toEqual({
      state: 'free',
    });
    expect(slept).toEqual([]);
    // A holder that stopped renewing (killed): stale after its duration and a second.
    const stale = await operatorRunning(
      sequence(lease({ holderIdentity: 'op-2', renewTime: at(5), leaseDurationSeconds: 3 })),
      sleep,
    );
    expect(stale).toEqual({ state: 'stale', holder: 'op-2', seconds: 4 });
  });

  test('keepApply: the live values without the record, under the operator or the other manager; nothing to release without a record or ownership', () => {
    const d = withRecord();
    const keep = keepApply(d, undefined);
    expect(keep?.manager).toBe(FIELD_MANAGER);
    expect(keep?.config.metadata).toEqual({ name: 'web', namespace: 'shop' });
    expect(JSON.stringify(keep?.config.spec)).toContain('"terminationGracePeriodSeconds":35');
    expect(JSON.stringify(keep?.config.spec)).toContain('"preStop":{"sleep":{"seconds":5}}');
    expect(keepApply(d, 'argocd-controller')?.manager).toBe('argocd-controller');
    expect(describeKept(d)).toBe('grace 35 s, preStop on web');
    // Negative control: a Deployment the operator never touched.
    const untouched = managed();
    untouched.metadata = { ...untouched.metadata, managedFields: [] };
    expect(keepApply(untouched, undefined)).toBeUndefined();
  });

  test("handOverPatch: every operator entry but a subresource's, last first, and the record, each guarded by a test", () => {
    const d = withRecord();
    const record = d.metadata?.annotations?.[APPLIED_ANNOTATION];
    expect(handOverPatch(d)).toEqual([
      { op: 'test', path: '/metadata/managedFields/3/manager', value: FIELD_MANAGER },
      { op: 'test', path: '/metadata/managedFields/3/operation', value: 'Apply' },
      { op: 'remove', path: '/metadata/managedFields/3' },
      { op: 'test', path: '/metadata/managedFields/1/manager', value: FIELD_MANAGER },
      { op: 'test', path: '/metadata/managedFields/1/operation', value: 'Update' },
      { op: 'remove', path: '/metadata/managedFields/1' },
      { op: 'test', path: '/metadata/annotations/gracefulshutdown.dev~1applied', value: record },
      { op: 'remove', path: '/metadata/annotations/gracefulshutdown.dev~1applied' },
    ]);
    // Nothing to remove: no operation at all (not a patch that fails).
    expect(handOverPatch({ metadata: { name: 'x', managedFields: [{ manager: 'kubectl' }] } })).toEqual([]);
  });

  test('usage errors exit 2 and name the flag; --help prints the usage', async () => {
    const bad = await gspRun(['release', '--to-manager', 'bad\u0001name']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--to-manager: want a field manager name');
    const unknown = await gspRun(['release', '--all']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown option '--all'");
    const help = await gspRun(['release', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: gsp release [flags]');
  });

  test('no cluster configured: one line, exit 3', async () => {
    const none = await gspRun(['release', '--kubeconfig', '/nonexistent/kubeconfig']);
    expect(none.code).toBe(3);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    expect(none.stderr).toContain('/nonexistent/kubeconfig');
  });
});
