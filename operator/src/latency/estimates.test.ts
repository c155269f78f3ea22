import { describe, expect, test } from 'vitest';
import type { LatencyObservation } from '../policy/types.ts';
import { EstimateCache } from './estimates.ts';

const known = (seconds: number, samples = 500): LatencyObservation => ({
  known: true,
  seconds,
  samples,
  percentile: 0.99,
  window: '1h',
  source: 'Prometheus',
});
const down: LatencyObservation = {
  known: false,
  source: 'Prometheus',
  reason: 'connect ECONNREFUSED 127.0.0.1:9090',
  unavailable: true,
};
const options = { stabilizationMs: 60_000, minSamples: 100 };

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('EstimateCache', () => {
  test('publishes a higher latency at once and a lower one only after the stabilization window', () => {
    const c = clock();
    const cache = new EstimateCache(c.now);
    expect(cache.update('ns/web', known(2), options)).toBe(true);
    c.advance(10_000);
    expect(cache.update('ns/web', known(8), options)).toBe(true);
    expect(cache.get('ns/web')?.published).toMatchObject({ seconds: 8 });
    c.advance(10_000);
    // Lower again: the 8 s of 10 s ago still rules.
    cache.update('ns/web', known(2), options);
    expect(cache.get('ns/web')?.published).toMatchObject({ seconds: 8 });
    expect(cache.get('ns/web')?.latest).toMatchObject({ seconds: 2 });
    c.advance(45_000);
    cache.update('ns/web', known(2), options);
    expect(cache.get('ns/web')?.published).toMatchObject({ seconds: 8 });
    // 60 s after the 8 s observation it ages out.
    c.advance(6_000);
    expect(cache.update('ns/web', known(2), options)).toBe(true);
    expect(cache.get('ns/web')?.published).toMatchObject({ seconds: 2 });
  });

  test('noise within the window does not move the published value, and is no change', () => {
    const c = clock();
    const cache = new EstimateCache(c.now);
    cache.update('ns/web', known(3), options);
    for (const s of [2.9, 2.7, 3, 2.8]) {
      c.advance(5_000);
      expect(cache.update('ns/web', known(s), options)).toBe(false);
      expect(cache.get('ns/web')?.published).toMatchObject({ seconds: 3 });
    }
  });

  test('an unknown answer keeps the last known latency published, marked stale, for as long as it lasts', () => {
    const c = clock();
    const cache = new EstimateCache(c.now);
    cache.update('ns/web', known(5), options);
    c.advance(10_000);
    expect(cache.update('ns/web', down, options)).toBe(true);
    expect(cache.get('ns/web')).toMatchObject({ published: { seconds: 5 }, latest: down, stale: true });
    // Long past the window: still the last known.
    c.advance(3_600_000);
    cache.update('ns/web', down, options);
    expect(cache.get('ns/web')).toMatchObject({ published: { seconds: 5 }, stale: true });
    // The source is back: fresh again.
    expect(cache.update('ns/web', known(4), options)).toBe(true);
    expect(cache.get('ns/web')).toMatchObject({ published: { seconds: 4 }, stale: false });
  });

  test('too few samples is not trusted: it neither enters the window nor replaces a known latency', () => {
    const c = clock();
    const cache = new EstimateCache(c.now);
    cache.update('ns/new', known(9, 5), options);
    // Nothing known before: the untrusted answer is what there is (planning says TooFewSamples).
    expect(cache.get('ns/new')).toMatchObject({ published: { seconds: 9, samples: 5 }, stale: false });
    cache.update('ns/web', known(3), options);
    c.advance(1_000);
    cache.update('ns/web', known(30, 5), options);
    expect(cache.get('ns/web')).toMatchObject({ published: { seconds: 3 }, stale: true });
  });

  test('canLower only once the workload has been followed for the whole window (not after a restart)', () => {
    const c = clock();
    const cache = new EstimateCache(c.now);
    cache.update('ns/web', known(2), options);
    expect(cache.get('ns/web')?.canLower).toBe(false);
    c.advance(59_000);
    expect(cache.update('ns/web', known(2), options)).toBe(false);
    c.advance(1_000);
    // Turning true is a change: the Deployment must be looked at again.
    expect(cache.update('ns/web', known(2), options)).toBe(true);
    expect(cache.get('ns/web')?.canLower).toBe(true);
  });

  test('delete forgets; keys lists what is followed', () => {
    const cache = new EstimateCache();
    cache.update('a/x', known(1), options);
    cache.update('b/y', down, options);
    expect(cache.keys().sort()).toEqual(['a/x', 'b/y']);
    expect(cache.delete('a/x')).toBe(true);
    expect(cache.get('a/x')).toBeUndefined();
    expect(cache.keys()).toEqual(['b/y']);
  });
});

describe('publishedAt', () => {
  test('moves only when the published value changes, and tells how old a stale value is', () => {
    const c = clock();
    const cache = new EstimateCache(c.now);
    const t0 = c.now();
    cache.update('ns/web', known(3), options);
    c.advance(5_000);
    cache.update('ns/web', known(3.01), options);
    expect(cache.get('ns/web')?.publishedAt).toBe(t0);
    c.advance(5_000);
    cache.update('ns/web', known(6), options);
    expect(cache.get('ns/web')?.publishedAt).toBe(t0 + 10_000);
    c.advance(5_000);
    cache.update('ns/web', down, options);
    expect(cache.get('ns/web')).toMatchObject({
      stale: true,
      publishedAt: t0 + 10_000,
      refreshedAt: t0 + 15_000,
    });
  });
});

describe('trust', () => {
  test('crossing minSamples is news even when the latency stays the same', () => {
    const cache = new EstimateCache();
    cache.update('ns/web', known(0.05, 43), options);
    expect(cache.get('ns/web')?.trusted).toBe(false);
    expect(cache.update('ns/web', known(0.05, 173), options)).toBe(true);
    expect(cache.get('ns/web')?.trusted).toBe(true);
    // Negative control: more samples alone, already trusted, is no news.
    expect(cache.update('ns/web', known(0.05, 400), options)).toBe(false);
  });
});
