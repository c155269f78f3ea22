// Reading one histogram out of a pod's /metrics (the Prometheus text exposition format), for the
// Scrape source. The pod is a tenant's: its body may be hostile, and the operator's leader reads
// it on the same event loop that runs the controllers, the admission webhook and the health
// probes. So everything here is bounded, and every bound refuses the pod's scrape rather than
// keep a part of it: a histogram with some of its buckets or label sets missing would give a
// wrong latency, a refused pod gives none (its earlier snapshots still count, see scrape.ts).
// Reasons are in the operator's own words, never quoting the pod's text.
//
// The `<metric>_bucket` lines are parsed here, by a scanner that looks at each character once.
// The parser used before (prom2javascript) matches each line with a regular expression that
// backtracks on whitespace inside the braces: one line of 4,000 spaces held the event loop for
// 14 s on Node 24 (1,000 spaces: 0.45 s), which no time slicing can interrupt.
import { TimeSlicer } from '../util/time-slicer.ts';
import { anchored, type HistogramSpec, seriesCounts } from './presets.ts';

/**
 * Bytes of a pod's exposition read per scrape. A real application's /metrics is kilobytes
 * (prom-client's default metrics are about 10 KiB, client_golang's about 8 KiB) to a few MiB with
 * many label sets; 4 MiB leaves room for that while bounding the CPU one scrape may cost (the
 * body streams through: memory holds one chunk and one line, not the body).
 */
export const MAX_SCRAPE_BYTES = 4 * 1024 * 1024;
/**
 * Lines of a pod's exposition per scrape, whatever their kind. Applications export hundreds to
 * a few tens of thousands of lines; a typical line is 50 to 150 bytes, so a real body under
 * MAX_SCRAPE_BYTES stays under this. It bounds the per-line work of bodies of tiny lines.
 */
export const MAX_SCRAPE_LINES = 100_000;
/**
 * Characters of one line. Real lines are under a few KiB, even an OpenTelemetry target_info
 * with every resource attribute; a longer one is only a way to make the operator buffer it.
 */
export const MAX_LINE_CHARS = 64 * 1024;
/**
 * Distinct `le` bounds of the histogram on one pod. A snapshot keeps one count per bound (the
 * label sets are summed per `le`), so this is what a snapshot costs. Real histograms have 10
 * to 30 bounds (prom-client's default 11, client_golang's 11, demo-service's 16) and share
 * them across label sets; OpenTelemetry's exponential histograms, written as classic buckets,
 * up to 160; with +Inf, 200 is above every real one.
 */
export const MAX_BUCKET_BOUNDS = 200;
/**
 * Label sets (series apart from `le`) of the histogram on one pod: routes x methods x status
 * codes of one application, tens to hundreds; 2,000 is past what Prometheus's own guidance
 * calls too many for one metric. They are summed, so they cost parsing, not memory kept.
 */
export const MAX_HISTOGRAM_SERIES = 2_000;

export interface ExpositionLimits {
  bytes: number;
  lines: number;
  lineChars: number;
  bounds: number;
  series: number;
}

export const DEFAULT_EXPOSITION_LIMITS: Readonly<ExpositionLimits> = {
  bytes: MAX_SCRAPE_BYTES,
  lines: MAX_SCRAPE_LINES,
  lineChars: MAX_LINE_CHARS,
  bounds: MAX_BUCKET_BOUNDS,
  series: MAX_HISTOGRAM_SERIES,
};

export type HistogramRead =
  /**
   * Per histogram asked for (in the order asked), the cumulative count per bucket bound, summed
   * over its label sets that count; empty where no sample counted.
   */
  { ok: true; histograms: Map<number, number>[] } | { ok: false; reason: string };

/** One histogram to read from an exposition, and which of its series count (latency/presets.ts). */
export type SeriesSpec = Pick<
  HistogramSpec,
  'metric' | 'matchers' | 'excludedLabels' | 'routeLabels' | 'excludedRoutes'
>;

/** Characters of lines handled between two checks of the time slicer. */
const CHARS_PER_CHECK = 64 * 1024;
/** Counted per line on top of its length, so that many tiny lines also reach a check. */
const LINE_COST = 64;

/**
 * The `<metric>_bucket` samples of a pod's exposition, for each histogram asked for, summed per
 * `le`, read as the body streams in, with the event loop given a turn every few ms of work. A
 * series counts as its spec says (seriesCounts): a mesh's server side only, and not a label set
 * with a label (other than `le`) equal to an excluded path, which counts traffic that is not the
 * workload's: the scrape path (route="/metrics", path="/metrics", ...) the operator's own scrapes,
 * a probe's path the kubelet's probes. It is left out, so a quiet service does not look busy with
 * fast requests (which could only lower its estimate). Network errors are thrown; everything
 * about the body's content is a refusal.
 */
export async function readHistogram(
  body: ReadableStream<Uint8Array> | null,
  specs: readonly SeriesSpec[],
  excludedPaths: ReadonlySet<string>,
  limits: Readonly<ExpositionLimits> = DEFAULT_EXPOSITION_LIMITS,
  slicer: TimeSlicer = new TimeSlicer(),
): Promise<HistogramRead> {
  const reads = specs.map((spec) => ({
    spec,
    prefix: `${spec.metric}_bucket`,
    excludedRoutes: spec.excludedRoutes ? anchored(spec.excludedRoutes) : undefined,
    sums: new Map<number, number>(),
    // Bounded by MAX_HISTOGRAM_SERIES keys, each no longer than its line: at most the body.
    series: new Set<string>(),
  }));
  const histograms = () => reads.map((read) => read.sums);
  let lines = 0;

  /** Takes one line; answers why the pod is refused, or undefined. */
  const take = (raw: string): string | undefined => {
    lines++;
    if (lines > limits.lines)
      return `refused: more than ${limits.lines} lines of metrics (the limit per scrape)`;
    const line = raw.trim();
    for (const read of reads) {
      const { prefix, sums, series } = read;
      if (!line.startsWith(prefix)) continue;
      const next = line.charAt(prefix.length);
      if (next !== '{' && next !== ' ' && next !== '\t') continue;
      const sample = parseBucketSample(line, prefix.length);
      if (typeof sample === 'string') return `cannot parse ${prefix}: line ${lines} ${sample}`;
      series.add(sample.series);
      if (series.size > limits.series)
        return `refused: ${prefix} has more than ${limits.series} label sets (the limit per pod)`;
      if (!seriesCounts(read.spec, sample.labels, excludedPaths, read.excludedRoutes)) return undefined;
      sums.set(sample.le, (sums.get(sample.le) ?? 0) + sample.count);
      if (sums.size > limits.bounds)
        return `refused: ${prefix} has more than ${limits.bounds} distinct le bounds (the limit per pod)`;
      return undefined;
    }
    return undefined;
  };

  if (!body) return { ok: true, histograms: histograms() };
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let bytes = 0;
  let partial = '';
  let sinceCheck = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (!done) {
        bytes += value.byteLength;
        if (bytes > limits.bytes)
          return { ok: false, reason: `refused: larger than ${limits.bytes} bytes (the limit per scrape)` };
      }
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      let start = 0;
      for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
        const line = partial + text.slice(start, end);
        partial = '';
        start = end + 1;
        if (line.length > limits.lineChars) return { ok: false, reason: tooLong(limits) };
        const refused = take(line);
        if (refused) return { ok: false, reason: refused };
        sinceCheck += line.length + LINE_COST;
        if (sinceCheck >= CHARS_PER_CHECK) {
          sinceCheck = 0;
          await slicer.pause();
        }
      }
      partial += text.slice(start);
      if (partial.length > limits.lineChars) return { ok: false, reason: tooLong(limits) };
      if (done) break;
    }
    if (partial !== '') {
      const refused = take(partial);
      if (refused) return { ok: false, reason: refused };
    }
    return { ok: true, histograms: histograms() };
  } finally {
    // Stops the download when refused early; a no-op once the body is read.
    reader.cancel().catch(() => {});
  }
}

function tooLong(limits: Readonly<ExpositionLimits>): string {
  return `refused: a line of metrics longer than ${limits.lineChars} characters (the limit per line)`;
}

// --- one sample line -----------------------------------------------------------------------------

interface BucketSample {
  le: number;
  count: number;
  /** The label set apart from `le`, as a key. */
  series: string;
  /** The labels apart from `le`. */
  labels: Map<string, string>;
}

const isSpace = (c: number) => c === 0x20 || c === 0x09;
const isNameStart = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
const isNameChar = (c: number) => isNameStart(c) || (c >= 0x30 && c <= 0x39);
/** A decimal float, one way to match each text (no backtracking to speak of). */
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const INFINITY = /^[+-]?inf(?:inity)?$/i;

/**
 * One `<metric>_bucket` sample line (trimmed; its metric name ends at `from`): the labels, the
 * value, an optional timestamp, and an OpenMetrics exemplar (`# {...} v`) ignored. Answers what
 * is wrong with the line, in words that quote none of it, when it is not one.
 */
export function parseBucketSample(line: string, from: number): BucketSample | string {
  const n = line.length;
  let i = from;
  const skipSpace = () => {
    while (i < n && isSpace(line.charCodeAt(i))) i++;
  };
  const labels: [string, string][] = [];
  if (line.charAt(i) === '{') {
    i++;
    for (;;) {
      skipSpace();
      if (line.charAt(i) === '}') {
        i++;
        break;
      }
      const nameStart = i;
      if (!isNameStart(line.charCodeAt(i))) return 'has a malformed label name';
      while (i < n && isNameChar(line.charCodeAt(i))) i++;
      const name = line.slice(nameStart, i);
      skipSpace();
      if (line.charAt(i) !== '=') return 'has a label without "="';
      i++;
      skipSpace();
      if (line.charAt(i) !== '"') return 'has a label value without quotes';
      i++;
      let value = '';
      let chunk = i;
      for (;;) {
        if (i >= n) return 'has a label value that is not closed';
        const c = line.charCodeAt(i);
        if (c === 0x22 /* " */) break;
        if (c === 0x5c /* \\ */) {
          const escaped = line.charAt(i + 1);
          const replacement =
            escaped === 'n' ? '\n' : escaped === '\\' || escaped === '"' ? escaped : undefined;
          // An unknown escape is kept as it is, as Prometheus does.
          if (replacement !== undefined) {
            value += line.slice(chunk, i) + replacement;
            chunk = i + 2;
          }
          i += 2;
          continue;
        }
        i++;
      }
      value += line.slice(chunk, i);
      i++;
      if (labels.some(([other]) => other === name)) return 'has a label twice';
      labels.push([name, value]);
      skipSpace();
      const sep = line.charAt(i);
      if (sep === ',') i++;
      else if (sep !== '}') return 'has labels not separated by ","';
    }
  }
  const tokens = line
    .slice(i)
    .trim()
    .split(/[ \t]+/);
  const exemplar = tokens.findIndex((t) => t.startsWith('#'));
  const fields = exemplar === -1 ? tokens : tokens.slice(0, exemplar);
  if (fields.length === 0 || fields[0] === '') return 'has no value';
  if (fields.length > 2) return 'has more than a value and a timestamp';
  if (fields.length === 2 && !DECIMAL.test(fields[1] as string))
    return 'has a timestamp that is not a number';
  const count = DECIMAL.test(fields[0] as string) ? Number(fields[0]) : Number.NaN;
  if (!Number.isFinite(count) || count < 0) return 'has a count that is not a finite number >= 0';
  const leText = labels.find(([name]) => name === 'le')?.[1];
  if (leText === undefined) return 'has no le label';
  const le = parseLe(leText);
  if (le === undefined) return 'has an le that is not a number';
  const rest = labels.filter(([name]) => name !== 'le').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    le,
    count,
    series: rest.map(([name, value]) => `${name}=${value}`).join('\u0000'),
    labels: new Map(rest),
  };
}

/** An `le` label as Prometheus reads it (a Go float: +Inf, Inf, 1e-3, 0.5); undefined if not one. */
function parseLe(text: string): number | undefined {
  const trimmed = text.trim();
  if (INFINITY.test(trimmed))
    return trimmed.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  return DECIMAL.test(trimmed) ? Number(trimmed) : undefined;
}
