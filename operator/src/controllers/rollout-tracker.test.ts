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

describe('RolloutTracker.rollingKeys from the cache', () => {
  test.each<[string, V1Deployment, boolean]>([
    ['settled', settled('a'), false],
    ['new generation not yet observed', deployment({ name: 'a', generation: 2, status: steady(2, 1) }), true],
    [
      'replicas not all updated',
      deployment({ name: 'a', status: { ...steady(2, 1), updatedReplicas: 1 } }),
      true,
    ],
    [
      'replicas not all available',
      deployment({ name: 'a', status: { ...steady(2, 1), availableReplicas: 1 } }),
      true,
    ],
    ['old pods still running', deployment({ name: 'a', status: { ...steady(2, 1), replicas: 3 } }), true],
  ])('%s', (_title, d, rolling) => {
    const keys = new RolloutTracker().rollingKeys('p', cache(d, settled('b')));
    expect([...keys]).toEqual(rolling ? ['shop/a'] : []);
  });
});

describe('RolloutTracker reservations', () => {
  test('a patch in flight counts even though the cache shows the Deployment settled', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    expect([...tracker.rollingKeys('p', cache(settled('a', 5)))]).toEqual(['shop/a']);
    // Still counted on the next look: the reservation is kept until the patch is known.
    expect([...tracker.rollingKeys('p', cache(settled('a', 5)))]).toEqual(['shop/a']);
    expect(tracker.reservedCount).toBe(1);
  });

  test('a patch in flight counts even when the Deployment is not in the cache', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    expect([...tracker.rollingKeys('p', cache())]).toEqual(['shop/a']);
    expect(tracker.reservedCount).toBe(1);
  });

  test('kept until the cache observes the patched generation, then dropped', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    tracker.patched('shop/a', 2);
    // The cache still shows the old generation, settled.
    expect([...tracker.rollingKeys('p', cache(settled('a', 1)))]).toEqual(['shop/a']);
    // Observed, but the new pods are not all available yet.
    const rolling = deployment({
      name: 'a',
      generation: 2,
      status: { ...steady(2, 2), availableReplicas: 1 },
    });
    expect([...tracker.rollingKeys('p', cache(rolling))]).toEqual(['shop/a']);
    expect(tracker.reservedCount).toBe(1);
    // Rolled out.
    expect([...tracker.rollingKeys('p', cache(settled('a', 2)))]).toEqual([]);
    expect(tracker.reservedCount).toBe(0);
  });

  test('dropped when the Deployment is gone after the patch', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    tracker.patched('shop/a', 2);
    expect([...tracker.rollingKeys('p', cache(settled('b')))]).toEqual([]);
    expect(tracker.reservedCount).toBe(0);
  });

  test('a Deployment recreated under the same name does not inherit the reservation', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p', 'uid-old');
    tracker.patched('shop/a', 3);
    // Deleted and recreated: generation 1 < 3, but it is another object.
    const recreated = settled('a');
    recreated.metadata = { ...recreated.metadata, uid: 'uid-new' };
    expect([...tracker.rollingKeys('p', cache(recreated))]).toEqual([]);
    expect(tracker.reservedCount).toBe(0);
  });

  test('reservations of other policies are not counted, nor dropped', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'other');
    tracker.reserve('shop/b', 'p');
    expect([...tracker.rollingKeys('p', cache(settled('a'), settled('b')))]).toEqual(['shop/b']);
    // The other policy's patch is done by the cache's account, but only its own policy drops it.
    tracker.patched('shop/a', 1);
    tracker.rollingKeys('p', cache(settled('a'), settled('b')));
    expect(tracker.reservedCount).toBe(2);
    expect([...tracker.rollingKeys('other', cache(settled('a')))]).toEqual([]);
    expect(tracker.reservedCount).toBe(1);
  });

  test('patched without a reservation reserves nothing', () => {
    const tracker = new RolloutTracker();
    tracker.patched('shop/a', 2);
    expect(tracker.reservedCount).toBe(0);
    expect([...tracker.rollingKeys('p', cache(settled('a', 1)))]).toEqual([]);
  });

  test('release removes the reservation and the waiting entry', () => {
    const tracker = new RolloutTracker();
    tracker.reserve('shop/a', 'p');
    tracker.wait('p', 'shop/a');
    tracker.wait('p', 'shop/b');
    tracker.release('shop/a');
    expect(tracker.reservedCount).toBe(0);
    expect([...tracker.rollingKeys('p', cache(settled('a')))]).toEqual([]);
    expect(tracker.takeWaiting()).toEqual(['shop/b']);
  });
});

describe('RolloutTracker waiting', () => {
  test('takeWaiting returns each key once, across policies, and clears', () => {
    const tracker = new RolloutTracker();
    tracker.wait('p', 'shop/a');
    tracker.wait('p', 'shop/a');
    tracker.wait('p', 'shop/b');
    tracker.wait('q', 'shop/c');
    expect(tracker.takeWaiting().sort()).toEqual(['shop/a', 'shop/b', 'shop/c']);
    expect(tracker.takeWaiting()).toEqual([]);
  });

  test('nothing waiting: empty', () => {
    expect(new RolloutTracker().takeWaiting()).toEqual([]);
  });
});
