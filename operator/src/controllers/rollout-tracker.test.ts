import type { V1Deployment, V1DeploymentStatus } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { deployment } from '../policy/test-fixtures.ts';
import { RolloutTracker } from './rollout-tracker.ts';

const steady = (replicas: number, generation: number): V1DeploymentStatus => ({
  observedGeneration: generation,
  replicas,
  updatedReplicas: replicas,
  readyReplicas: replicas,
  availableReplicas: replicas,
});

/** A settled Deployment at this generation (the controller has observed it, all replicas updated). */
const settled = (name: string, generation = 1) =>
  deployment({ name, generation, status: steady(2, generation) });

const cache = (...deployments: V1Deployment[]) =>
  new Map(deployments.map((d) => [`${d.metadata?.namespace}/${d.metadata?.name}`, d]));

describe('RolloutTracker.active', () => {
  test('a Deployment rolling in the cache without a reservation is not counted (not the operator rollout)', () => {
    const rolling = deployment({ name: 'a', generation: 2, status: steady(2, 1) });
    expect([...new RolloutTracker().active('p', cache(rolling))]).toEqual([]);
  });

  test('startedHere: reserved and not complete; a completed rollout (or another object) is dropped', () => {
    const tracker = new RolloutTracker();
    const rolling = deployment({ name: 'a', generation: 2, status: { ...steady(2, 2), updatedReplicas: 1 } });
    tracker.reserve('shop/a', 'p', rolling.metadata?.uid);
    tracker.written('shop/a', 2);
    expect(tracker.startedHere('shop/a', rolling)).toBe(true);
    expect(tracker.startedHere('shop/b', rolling)).toBe(false);
    // Completed, then a pod lost later: the reservation is gone, the trouble is not a rollout.
    const done = deployment({ name: 'a', generation: 2, status: steady(2, 2) });
    expect(tracker.startedHere('shop/a', done)).toBe(false);
    const degraded = deployment({
      name: 'a',
      generation: 2,
      status: { ...steady(2, 2), availableReplicas: 1 },
    });
    expect(tracker.startedHere('shop/a', degraded)).toBe(false);
    expect(tracker.reservedCount).toBe(0);
  });
});

describe('RolloutTracker.templateChanged', () => {
  test('a new template after a settled one: changed while rolling; a scale is not; forgotten once settled', () => {
    const tracker = new RolloutTracker();
    /** Each event as the watches see it: remembered, then asked. */
    const seen = (d: ReturnType<typeof deployment>) => {
      tracker.observe('shop/a', d);
      return tracker.templateChanged('shop/a', d);
    };
    expect(seen(settled('a'))).toBe(false);
    const scaled = deployment({ name: 'a', generation: 2, replicas: 5, status: steady(2, 1) });
    expect(seen(scaled)).toBe(false);
    const newImage = deployment({ name: 'a', generation: 2, grace: 99, status: steady(2, 1) });
    expect(seen(newImage)).toBe(true);
    // Asking changes nothing: the same answer again.
    expect(tracker.templateChanged('shop/a', newImage)).toBe(true);
    const done = deployment({ name: 'a', generation: 2, grace: 99, status: steady(2, 2) });
    expect(seen(done)).toBe(false);
    expect(seen({ ...done, status: steady(2, 1) })).toBe(false);
  });

  test('never seen settled: unknown, so no change', () => {
    const rolling = deployment({ name: 'a', generation: 2, status: steady(2, 1) });
    expect(new RolloutTracker().templateChanged('shop/a', rolling)).toBe(false);
  });
});

describe('RolloutTracker reservations', () => {
  test('a patch in flight counts even though the cache shows the Deployment settled', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    expect([...tracker.active('p', cache(settled('a', 5)))]).toEqual(['shop/a']);
    // Still counted on the next look: the reservation is kept until the patch is known.
    expect([...tracker.active('p', cache(settled('a', 5)))]).toEqual(['shop/a']);
    expect(tracker.reservedCount).toBe(1);
  });

  test('a patch in flight counts even when the Deployment is not in the cache', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    expect([...tracker.active('p', cache())]).toEqual(['shop/a']);
    expect(tracker.reservedCount).toBe(1);
  });

  test('kept until the cache observes the patched generation, then dropped', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p', 'uid-shop-a');
    tracker.written('shop/a', 2);
    // The cache still shows the old generation, settled.
    expect([...tracker.active('p', cache(settled('a', 1)))]).toEqual(['shop/a']);
    // Observed, but the new pods are not all available yet.
    const rolling = deployment({
      name: 'a',
      generation: 2,
      status: { ...steady(2, 2), availableReplicas: 1 },
    });
    expect([...tracker.active('p', cache(rolling))]).toEqual(['shop/a']);
    expect(tracker.reservedCount).toBe(1);
    // Rolled out.
    expect([...tracker.active('p', cache(settled('a', 2)))]).toEqual([]);
    expect(tracker.reservedCount).toBe(0);
  });

  test('dropped when the Deployment is gone after the patch', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    tracker.written('shop/a', 2);
    expect([...tracker.active('p', cache(settled('b')))]).toEqual([]);
    expect(tracker.reservedCount).toBe(0);
  });

  test('a Deployment recreated under the same name does not inherit the reservation', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p', 'uid-old');
    tracker.written('shop/a', 3);
    // Deleted and recreated: generation 1 < 3, but it is another object.
    const recreated = settled('a');
    recreated.metadata = { ...recreated.metadata, uid: 'uid-new' };
    expect([...tracker.active('p', cache(recreated))]).toEqual([]);
    expect(tracker.reservedCount).toBe(0);
  });

  test('reservations of other policies are not counted, nor dropped', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'other');
    tracker.reserve('shop/b', 'p');
    expect([...tracker.active('p', cache(settled('a'), settled('b')))]).toEqual(['shop/b']);
    // The other policy's patch is done by the cache's account, but only its own policy drops it.
    tracker.written('shop/a', 1);
    tracker.active('p', cache(settled('a'), settled('b')));
    expect(tracker.reservedCount).toBe(2);
    expect([...tracker.active('other', cache(settled('a')))]).toEqual([]);
    expect(tracker.reservedCount).toBe(1);
  });

  test('written without a reservation reserves nothing', () => {
    const tracker = new RolloutTracker();
    tracker.written('shop/a', 2);
    expect(tracker.reservedCount).toBe(0);
    expect([...tracker.active('p', cache(settled('a', 1)))]).toEqual([]);
  });

  test('release removes the reservation and the waiting entry', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    tracker.wait('p', 'shop/a');
    tracker.wait('p', 'shop/b');
    tracker.release('shop/a');
    expect(tracker.reservedCount).toBe(0);
    expect([...tracker.active('p', cache(settled('a')))]).toEqual([]);
    expect(tracker.takeWaiting('p')).toEqual(['shop/b']);
  });
});

describe('RolloutTracker waiting', () => {
  test("takeWaiting returns the policy's keys once each, clears them, and leaves other policies'", () => {
    const tracker = new RolloutTracker();
    tracker.wait('p', 'shop/a');
    tracker.wait('p', 'shop/a');
    tracker.wait('p', 'shop/b');
    tracker.wait('q', 'shop/c');
    expect(tracker.takeWaiting('p').sort()).toEqual(['shop/a', 'shop/b']);
    expect(tracker.takeWaiting('p')).toEqual([]);
    expect(tracker.takeWaiting('q')).toEqual(['shop/c']);
  });

  test('nothing waiting: empty', () => {
    expect(new RolloutTracker().takeWaiting('p')).toEqual([]);
  });

  test('one slot wakes the key that waited longest', () => {
    const tracker = new RolloutTracker();
    tracker.wait('p', 'shop/a');
    tracker.wait('p', 'shop/b');
    tracker.wait('p', 'shop/c');
    expect(tracker.takeWaiting('p', 1)).toEqual(['shop/a']);
    expect(tracker.takeWaiting('p', 1)).toEqual(['shop/b']);
    expect(tracker.takeWaiting('p')).toEqual(['shop/c']);
  });

  describe('a woken key that does not take its slot passes it on', () => {
    const setup = () => {
      const tracker = new RolloutTracker();
      const freed: string[] = [];
      tracker.onSlotFreed((policy) => freed.push(policy));
      tracker.wait('p', 'shop/a');
      tracker.wait('p', 'shop/b');
      tracker.takeWaiting('p', 1);
      expect(tracker.wokenCount('p')).toBe(1);
      return { tracker, freed };
    };

    test('nothing to write (compliant now, another mode, gone): passed on', () => {
      const { tracker, freed } = setup();
      tracker.settleWoken('shop/a');
      expect(freed).toEqual(['p']);
    });

    test('it took the slot (a reservation): kept', () => {
      const { tracker, freed } = setup();
      tracker.reserve('shop/a', 'p');
      tracker.settleWoken('shop/a');
      expect(freed).toEqual([]);
    });

    test('another key took the slot first, it waits again: kept (its turn comes with the next slot)', () => {
      const { tracker, freed } = setup();
      tracker.wait('p', 'shop/a');
      tracker.settleWoken('shop/a');
      expect(freed).toEqual([]);
    });

    test('woken until settled: counted against free slots until then, settled once', () => {
      const { tracker, freed } = setup();
      expect(tracker.wokenCount('other')).toBe(0);
      tracker.settleWoken('shop/a');
      expect(tracker.wokenCount('p')).toBe(0);
      tracker.settleWoken('shop/a');
      tracker.settleWoken('shop/b');
      expect(freed).toEqual(['p']);
    });
  });

  test('releasing a reservation frees its slot; releasing a key without one frees nothing', () => {
    const tracker = new RolloutTracker();
    const freed: string[] = [];
    tracker.onSlotFreed((policy) => freed.push(policy));
    tracker.reserve('shop/a', 'p');
    tracker.release('shop/a');
    tracker.release('shop/b');
    expect(freed).toEqual(['p']);
  });
});
