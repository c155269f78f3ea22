import { describe, expect, test } from 'vitest';
import { type Bucket, bucketDelta, bucketQuantile, mergeBuckets } from './histogram.ts';

const inf = Number.POSITIVE_INFINITY;
const h = (pairs: [number, number][]): Bucket[] => pairs.map(([le, count]) => ({ le, count }));

describe('bucketQuantile (Prometheus BucketQuantile)', () => {
  test('interpolates inside the bucket that reaches the rank, the lowest from 0', () => {
    const b = h([
      [0.1, 50],
      [0.5, 90],
      [1, 100],
      [inf, 100],
    ]);
    // rank 50 of 100 reaches the first bucket exactly: its upper bound.
    expect(bucketQuantile(0.5, b)).toEqual({ ok: true, value: 0.1, observations: 100, atLeast: false });
    // rank 25: half of the first bucket, from 0.
    expect(bucketQuantile(0.25, b)).toMatchObject({ value: 0.05 });
    // rank 70: 20 of the 40 in (0.1, 0.5].
    expect((bucketQuantile(0.7, b) as { value: number }).value).toBeCloseTo(0.3, 10);
    // rank 99: 9 of the 10 in (0.5, 1].
    expect((bucketQuantile(0.99, b) as { value: number }).value).toBeCloseTo(0.95, 10);
  });

  test('a rank in the +Inf bucket answers the largest finite bound, marked atLeast', () => {
    const b = h([
      [0.1, 10],
      [1, 90],
      [inf, 100],
    ]);
    expect(bucketQuantile(0.99, b)).toEqual({ ok: true, value: 1, observations: 100, atLeast: true });
    expect(bucketQuantile(0.9, b)).toMatchObject({ value: 1, atLeast: false });
  });

  test('order, duplicate bounds and non-monotonic counts are handled as Prometheus does', () => {
    const shuffled = h([
      [inf, 100],
      [1, 100],
      [0.5, 40],
      [0.5, 50],
      [0.1, 95],
    ]);
    // 0.5 merges to 90; 0.1's 95 is carried forward so 0.5 and 1 read as at least 95 and 100.
    expect(bucketQuantile(0.5, shuffled)).toMatchObject({ ok: true, value: (0.1 * 50) / 95 });
  });

  test('no +Inf bucket, too few buckets, or no observations: no answer, with the reason', () => {
    expect(bucketQuantile(0.99, h([[1, 10]]))).toEqual({
      ok: false,
      reason: 'NoInfBucket',
      observations: 10,
    });
    expect(bucketQuantile(0.99, h([[inf, 10]]))).toEqual({
      ok: false,
      reason: 'TooFewBuckets',
      observations: 10,
    });
    expect(
      bucketQuantile(
        0.99,
        h([
          [1, 0],
          [inf, 0],
        ]),
      ),
    ).toEqual({ ok: false, reason: 'NoObservations', observations: 0 });
    expect(bucketQuantile(0.99, [])).toMatchObject({ ok: false, reason: 'NoInfBucket' });
  });
});

describe('bucketDelta and mergeBuckets', () => {
  test('the observations between two snapshots, bucket by bucket', () => {
    const older = h([
      [0.1, 10],
      [1, 20],
      [inf, 25],
    ]);
    const newer = h([
      [0.1, 15],
      [1, 40],
      [inf, 50],
    ]);
    expect(bucketDelta(older, newer)).toEqual(
      h([
        [0.1, 5],
        [1, 20],
        [inf, 25],
      ]),
    );
  });

  test('a counter that went down was reset: the newer snapshot counts whole', () => {
    const older = h([
      [0.1, 10],
      [inf, 25],
    ]);
    const newer = h([
      [0.1, 12],
      [inf, 7],
    ]);
    expect(bucketDelta(older, newer)).toEqual(newer);
  });

  test('series merge bucket by bucket (sum by le)', () => {
    expect(
      mergeBuckets([
        h([
          [1, 1],
          [inf, 2],
        ]),
        h([
          [inf, 3],
          [1, 2],
        ]),
      ]),
    ).toEqual(
      h([
        [1, 3],
        [inf, 5],
      ]),
    );
  });
});
