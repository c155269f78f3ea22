// Native histogram arithmetic, pure: a histogram as Prometheus's HTTP API returns it (`count`,
// `sum`, and buckets `[boundary rule, lower, upper, count]`) and its quantile computed as
// PromQL's histogram_quantile computes it for native histograms (Prometheus 3.x,
// promql/quantile.go HistogramQuantile): the rank found from the low end for q < 0.5 and from
// the high end otherwise, empty buckets skipped; exponential buckets interpolated on a log2
// scale, custom buckets (a classic histogram stored as a native one, NHCB) and the zero bucket
// linearly; the zero bucket starting at 0 when only positive buckets exist. No npm package reads
// this format; it is small and must agree with Prometheus.
import type { Quantile } from './histogram.ts';

/** One bucket of a native histogram: observations in (lower, upper], per the boundary rule. */
export interface NativeBucket {
  /** 0: open left, 1: open right, 2: open both, 3: closed both (the API's first element). */
  boundaryRule: number;
  lower: number;
  upper: number;
  count: number;
}

export interface NativeHistogram {
  count: number;
  sum: number;
  buckets: NativeBucket[];
}

/** A number the API sends as a string ("+Inf", "-Inf", "NaN" included). */
function apiNumber(value: unknown): number | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  const text = String(value);
  if (text === '+Inf' || text === 'Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  const n = Number(text);
  return text.trim() === '' || (Number.isNaN(n) && text !== 'NaN') ? undefined : n;
}

/**
 * The `histogram` member of an API sample (`[timestamp, {count, sum, buckets}]`'s second element),
 * or why it is not one.
 */
export function parseApiHistogram(
  value: unknown,
): { ok: true; histogram: NativeHistogram } | { ok: false; reason: string } {
  if (typeof value !== 'object' || value === null) return { ok: false, reason: 'a histogram is an object' };
  const { count, sum, buckets } = value as Record<string, unknown>;
  const total = apiNumber(count);
  const s = apiNumber(sum);
  if (total === undefined || total < 0)
    return { ok: false, reason: `count ${JSON.stringify(count)} is not a count` };
  if (s === undefined) return { ok: false, reason: `sum ${JSON.stringify(sum)} is not a number` };
  const parsed: NativeBucket[] = [];
  for (const raw of (buckets ?? []) as unknown[]) {
    if (!Array.isArray(raw) || raw.length !== 4)
      return { ok: false, reason: 'a bucket is [rule, lower, upper, count]' };
    const [rule, lower, upper, n] = [
      apiNumber(raw[0]),
      apiNumber(raw[1]),
      apiNumber(raw[2]),
      apiNumber(raw[3]),
    ];
    if (rule === undefined || ![0, 1, 2, 3].includes(rule))
      return { ok: false, reason: `boundary rule ${JSON.stringify(raw[0])}` };
    if (lower === undefined || upper === undefined || !(lower <= upper))
      return { ok: false, reason: `bucket bounds ${JSON.stringify(raw[1])}, ${JSON.stringify(raw[2])}` };
    if (n === undefined || !(n >= 0)) return { ok: false, reason: `bucket count ${JSON.stringify(raw[3])}` };
    parsed.push({ boundaryRule: rule, lower, upper, count: n });
  }
  parsed.sort((a, b) => a.lower - b.lower || a.upper - b.upper);
  return { ok: true, histogram: { count: total, sum: s, buckets: parsed } };
}

const POWER_TOLERANCE = 1e-9;

/** x is 2^(k/2^schema) for an integer k (a bound of that exponential schema). */
function onSchema(x: number, schema: number): boolean {
  const k = Math.log2(Math.abs(x)) * 2 ** schema;
  return Math.abs(k - Math.round(k)) < POWER_TOLERANCE * Math.max(1, Math.abs(k));
}

/**
 * Whether the buckets are custom (NHCB: any bounds, ±Inf at the ends) rather than exponential:
 * the API does not say which schema it sent. Exponential buckets all have bounds 2^(k/2^s) for
 * one schema s in -4..8 (the zero bucket aside); anything else is custom. A custom histogram
 * whose few populated buckets happen to sit on such bounds is read as exponential: its
 * quantile then differs by the interpolation inside one bucket only.
 */
export function usesCustomBuckets(h: NativeHistogram): boolean {
  const regular = h.buckets.filter((b) => !(b.lower <= 0 && b.upper >= 0));
  if (regular.some((b) => !Number.isFinite(b.lower) || !Number.isFinite(b.upper))) return true;
  if (h.buckets.some((b) => b.lower === Number.NEGATIVE_INFINITY || b.upper === Number.POSITIVE_INFINITY))
    return true;
  for (let schema = -4; schema <= 8; schema++)
    if (regular.every((b) => onSchema(b.lower, schema) && onSchema(b.upper, schema))) return false;
  return true;
}

/** The q-quantile (0 < q < 1) of a native histogram, as histogram_quantile computes it. */
export function nativeHistogramQuantile(q: number, h: NativeHistogram): Quantile {
  const observations = h.count;
  if (!(observations > 0)) return { ok: false, reason: 'NoObservations', observations: 0 };
  const custom = usesCustomBuckets(h);
  const forward = Number.isNaN(h.sum) || q < 0.5;
  const ordered = forward ? h.buckets : [...h.buckets].reverse();
  let rank = forward ? q * observations : (1 - q) * observations;
  let count = 0;
  let found: NativeBucket | undefined;
  for (const b of ordered) {
    if (b.count === 0) continue;
    found = b;
    count += b.count;
    if (count >= rank) break;
  }
  if (!found) return { ok: false, reason: 'NoObservations', observations };
  let { lower, upper } = found;
  const hasNegative = h.buckets.some((b) => b.upper < 0 || (b.upper <= 0 && b.lower < 0 && b.upper !== 0));
  const hasPositive = h.buckets.some((b) => b.lower > 0);
  if (!custom && lower < 0 && upper > 0) {
    if (!hasNegative && hasPositive) lower = 0;
    else if (!hasPositive && hasNegative) upper = 0;
  } else if (custom) {
    if (lower === Number.NEGATIVE_INFINITY) {
      if (upper <= 0) return { ok: true, value: upper, observations, atLeast: false };
      lower = 0;
    } else if (upper === Number.POSITIVE_INFINITY) {
      // Past the last finite bound: Prometheus answers that bound, and the true value is at least
      // it (exactly it when the rank falls on the bound: counted from the top, count == rank).
      return { ok: true, value: lower, observations, atLeast: forward || count > rank };
    }
  }
  if (count > observations) count = observations;
  if (count < rank) return { ok: true, value: upper, observations, atLeast: false };
  rank = forward ? rank - (count - found.count) : count - rank;
  const fraction = rank / found.count;
  if (custom || (lower <= 0 && upper >= 0))
    return { ok: true, value: lower + (upper - lower) * fraction, observations, atLeast: false };
  const logLower = Math.log2(Math.abs(lower));
  const logUpper = Math.log2(Math.abs(upper));
  const value =
    lower > 0
      ? 2 ** (logLower + (logUpper - logLower) * fraction)
      : -(2 ** (logUpper + (logLower - logUpper) * (1 - fraction)));
  return { ok: true, value, observations, atLeast: false };
}
