import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { containerShutdowns, owningDeployment } from './shutdowns.ts';

/** A pod deleted at 12:00:00 with a 30 s grace period: deletionTimestamp 12:00:30. */
function deleted(containers: { name: string; exitCode: number; finishedAt: string }[], grace = 30): V1Pod {
  return {
    metadata: {
      name: 'web-5d8f7-abcde',
      namespace: 'shop',
      labels: { 'pod-template-hash': '5d8f7' },
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d8f7', uid: 'rs', controller: true },
      ],
      deletionTimestamp: new Date(Date.parse('2026-11-30T12:00:00Z') + grace * 1000),
      deletionGracePeriodSeconds: grace,
    },
    status: {
      containerStatuses: containers.map((c) => ({
        name: c.name,
        image: 'x',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: c.exitCode, finishedAt: new Date(c.finishedAt) } },
      })),
    },
  };
}

describe('containerShutdowns', () => {
  test('an exit before the deadline is clean, with how long it took', () => {
    expect(
      containerShutdowns(deleted([{ name: 'app', exitCode: 0, finishedAt: '2026-11-30T12:00:07Z' }])),
    ).toEqual([{ container: 'app', outcome: 'Clean', exitCode: 0, seconds: 7, graceSeconds: 30 }]);
  });

  test('SIGKILL at the deadline (137 at or past deletionTimestamp) is Killed', () => {
    expect(
      containerShutdowns(
        deleted([
          { name: 'app', exitCode: 137, finishedAt: '2026-11-30T12:00:30Z' },
          { name: 'proxy', exitCode: 0, finishedAt: '2026-11-30T12:00:06Z' },
        ]),
      ),
    ).toMatchObject([
      { container: 'app', outcome: 'Killed', seconds: 30 },
      { container: 'proxy', outcome: 'Clean' },
    ]);
    // Whole-second timestamps: a kill that lands in the deadline's second still counts.
    expect(
      containerShutdowns(deleted([{ name: 'app', exitCode: 137, finishedAt: '2026-11-30T12:00:29Z' }]))?.[0]
        ?.outcome,
    ).toBe('Killed');
  });

  test('a 137 well before the deadline (an OOM kill, a kill -9 by the app) is not the deadline', () => {
    expect(
      containerShutdowns(deleted([{ name: 'app', exitCode: 137, finishedAt: '2026-11-30T12:00:10Z' }]))?.[0]
        ?.outcome,
    ).toBe('Clean');
  });

  test('not being deleted, still running, or ended before the deletion: nothing to say', () => {
    const pod = deleted([{ name: 'app', exitCode: 1, finishedAt: '2026-11-30T11:50:00Z' }]);
    expect(containerShutdowns(pod)).toEqual([]);
    expect(
      containerShutdowns({ ...pod, metadata: { ...pod.metadata, deletionTimestamp: undefined } }),
    ).toBeUndefined();
    const running = deleted([]);
    expect(containerShutdowns(running)).toEqual([]);
  });
});

describe('owningDeployment', () => {
  test("the ReplicaSet's name without the pod-template-hash", () => {
    expect(owningDeployment(deleted([]))).toBe('web');
    const bare = deleted([]);
    bare.metadata = { ...bare.metadata, ownerReferences: [] };
    expect(owningDeployment(bare)).toBeUndefined();
  });
});
