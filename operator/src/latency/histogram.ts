// Classic (cumulative, `le`-labelled) histogram arithmetic, pure: the quantile exactly as
// Prometheus computes it (promql/quantile.go, BucketQuantile), windowed deltas between two
// cumulative snapshots with counter-reset handling, and merging across series. No npm package
// does this; it is small and must agree with Prometheus, which a test checks against promtool.

/** One cumulative bucket: how many observations were <= le (le may be +Infinity). */
export interface Bucket {
  le: number;
  count: number;
}

export type Quantile =
  | {
      ok: true;
      /** The interpolated quantile, in the histogram's unit. */
      value: number;
      /** Observations in the histogram (the +Inf bucket's count). */
      observations: number;
      /**
       * The quantile fell in the +Inf bucket: Prometheus then answers the largest finite bound,
       * so the true value is only known to be at least `value`.
       */
      atLeast: boolean;
    }
  | { ok: false; reason: 'NoInfBucket' | 'TooFewBuckets' | 'NoObservations'; observations: number };

/** Sorted by le, equal bounds merged (their counts added), as Prometheus coalesces them. */
function coalesce(buckets: readonly Bucket[]): Bucket[] {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const out: Bucket[] = [];
  for (const b of sorted) {
    const last = out.at(-1);
    if (last && last.le === b.le) last.count += b.count;
    else out.push({ le: b.le, count: b.count });
  }
  return out;
}

/**
 * The q-quantile (0 < q < 1) of a cumulative histogram, as PromQL's histogram_quantile over
 * classic buckets: the +Inf bucket is required, counts are forced monotonic, the rank q x total
 * is found in the first bucket whose count reaches it and interpolated linearly inside it (the
 * lowest bucket from 0). A rank in the +Inf bucket answers the largest finite bound, atLeast.
 */
export function bucketQuantile(q: number, buckets: readonly Bucket[]): Quantile {
  const b = coalesce(buckets);
  const last = b.at(-1);
  if (!last || last.le !== Number.POSITIVE_INFINITY)
    return { ok: false, reason: 'NoInfBucket', observations: last?.count ?? 0 };
  // Non-monotonic counts (scrapes of different moments, float error): carry the maximum forward.
  for (let i = 1; i < b.length; i++) {
    const prev = b[i - 1] as Bucket;
    const cur = b[i] as Bucket;
    if (cur.count < prev.count) cur.count = prev.count;
  }
  const observations = last.count;
  if (b.length < 2) return { ok: false, reason: 'TooFewBuckets', observations };
  if (!(observations > 0)) return { ok: false, reason: 'NoObservations', observations };
  let rank = q * observations;
  let i = b.findIndex((bucket, index) => index < b.length - 1 && bucket.count >= rank);
  if (i === -1) i = b.length - 1;
  if (i === b.length - 1)
    return { ok: true, value: (b[b.length - 2] as Bucket).le, observations, atLeast: true };
  const bucket = b[i] as Bucket;
  if (i === 0 && bucket.le <= 0) return { ok: true, value: bucket.le, observations, atLeast: false };
  let start = 0;
  let count = bucket.count;
  if (i > 0) {
    const below = b[i - 1] as Bucket;
    start = below.le;
    count -= below.count;
    rank -= below.count;
  }
  return { ok: true, value: start + (bucket.le - start) * (rank / count), observations, atLeast: false };
}

/**
 * Observations between two cumulative snapshots of one series, per bucket. A bucket whose
 * count went down was reset (the process restarted): everything it counts now is new, as
 * Prometheus's rate() treats a counter reset.
 */
export function bucketDelta(older: readonly Bucket[], newer: readonly Bucket[]): Bucket[] {
  const before = new Map(older.map((b) => [b.le, b.count]));
  // One reset bucket means the whole series restarted: take every bucket as new then.
  const reset = newer.some((b) => b.count < (before.get(b.le) ?? 0));
  return newer.map((b) => ({ le: b.le, count: reset ? b.count : b.count - (before.get(b.le) ?? 0) }));
}

/** Bucket-wise sum of several series' histograms (`sum by (le)`). */
export function mergeBuckets(series: readonly (readonly Bucket[])[]): Bucket[] {
  return coalesce(series.flat());
}
