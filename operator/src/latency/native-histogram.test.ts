import { describe, expect, test } from 'vitest';
import { bucketQuantile } from './histogram.ts';
import {
  type NativeHistogram,
  nativeHistogramQuantile,
  parseApiHistogram,
  usesCustomBuckets,
} from './native-histogram.ts';

/** A histogram as the API sends it: numbers as strings. */
function api(count: number, sum: number, buckets: [number, number | string, number | string, number][]) {
  const parsed = parseApiHistogram({
    count: String(count),
    sum: String(sum),
    buckets: buckets.map(([rule, lower, upper, n]) => [rule, String(lower), String(upper), String(n)]),
  });
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.histogram;
}

const value = (q: number, h: NativeHistogram) => {
  const r = nativeHistogramQuantile(q, h);
  if (!r.ok) throw new Error(r.reason);
  return r;
};

describe('nativeHistogramQuantile: as histogram_quantile computes it for native histograms', () => {
  // Schema 0 (bounds 2^k): 10 observations in (0.5, 1], 10 in (1, 2].
  const exponential = api(20, 25, [
    [0, 0.5, 1, 10],
    [0, 1, 2, 10],
  ]);

  test('exponential buckets: log2 interpolation, from the high end for q >= 0.5', () => {
    // Rank from the top: (1 - 0.99) x 20 = 0.2 into (1, 2] counted downwards: fraction 0.98.
    expect(value(0.99, exponential).value).toBeCloseTo(2 ** 0.98, 12);
    // From the bottom for q < 0.5: rank 5 of 10 in (0.5, 1]: 2^(-1 + 0.5).
    expect(value(0.25, exponential).value).toBeCloseTo(2 ** -0.5, 12);
    expect(value(0.99, exponential)).toMatchObject({ observations: 20, atLeast: false });
  });

  test('custom buckets (a classic histogram stored natively) give what bucketQuantile gives the classic one', () => {
    // Classic: le 0.1: 5, le 0.5: 15, +Inf: 20.
    const classic = [
      { le: 0.1, count: 5 },
      { le: 0.5, count: 15 },
      { le: Number.POSITIVE_INFINITY, count: 20 },
    ];
    const nhcb = api(20, 7, [
      [0, '-Inf', 0.1, 5],
      [0, 0.1, 0.5, 10],
      [0, 0.5, '+Inf', 5],
    ]);
    expect(usesCustomBuckets(nhcb)).toBe(true);
    for (const q of [0.1, 0.5, 0.75, 0.9, 0.99])
      expect(nativeHistogramQuantile(q, nhcb)).toEqual(bucketQuantile(q, classic));
    // Past the last finite bound: that bound, marked as a lower bound.
    expect(value(0.9, nhcb)).toMatchObject({ value: 0.5, atLeast: true });
  });

  test('the zero bucket starts at 0 when there are only positive buckets; interpolated linearly', () => {
    const h = api(20, 15, [
      [3, -0.001, 0.001, 10],
      [0, 1, 2, 10],
    ]);
    expect(value(0.25, h).value).toBeCloseTo(0.0005, 12);
  });

  test('empty buckets are skipped; no observations is no answer', () => {
    const h = api(10, 10, [
      [0, 0.5, 1, 0],
      [0, 1, 2, 10],
      [0, 2, 4, 0],
    ]);
    expect(value(0.5, h).value).toBeCloseTo(2 ** 0.5, 12);
    expect(nativeHistogramQuantile(0.99, api(0, 0, []))).toEqual({
      ok: false,
      reason: 'NoObservations',
      observations: 0,
    });
  });
});

describe('usesCustomBuckets', () => {
  test('exponential bounds of one schema are not custom; classic default bounds are', () => {
    const schema3 = api(2, 3, [
      [0, 2 ** (8 / 8), 2 ** (9 / 8), 1],
      [0, 2 ** (12 / 8), 2 ** (13 / 8), 1],
    ]);
    expect(usesCustomBuckets(schema3)).toBe(false);
    const defaults = api(2, 0.1, [
      [0, 0.025, 0.05, 1],
      [0, 0.05, 0.1, 1],
    ]);
    expect(usesCustomBuckets(defaults)).toBe(true);
  });
});

describe('parseApiHistogram', () => {
  test("the API's shape: numbers as strings, buckets sorted, ±Inf bounds", () => {
    const parsed = parseApiHistogram({
      count: '3',
      sum: '1.5',
      buckets: [
        [0, '1', '2', '2'],
        [0, '-Inf', '1', '1'],
      ],
    });
    expect(parsed).toEqual({
      ok: true,
      histogram: {
        count: 3,
        sum: 1.5,
        buckets: [
          { boundaryRule: 0, lower: Number.NEGATIVE_INFINITY, upper: 1, count: 1 },
          { boundaryRule: 0, lower: 1, upper: 2, count: 2 },
        ],
      },
    });
  });

  test('bad input names what is wrong', () => {
    expect(parseApiHistogram('x')).toEqual({ ok: false, reason: 'a histogram is an object' });
    expect(parseApiHistogram({ count: 'many', sum: '1', buckets: [] })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('count'),
    });
    expect(parseApiHistogram({ count: '1', sum: '1', buckets: [[0, '2', '1', '1']] })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('bounds'),
    });
    expect(parseApiHistogram({ count: '1', sum: '1', buckets: [[7, '1', '2', '1']] })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('rule'),
    });
    expect(parseApiHistogram({ count: '1', sum: '1', buckets: [[0, '1', '2']] })).toMatchObject({
      ok: false,
    });
  });
});
