import { describe, expect, test } from 'vitest';
import { TimeSlicer } from '../util/time-slicer.ts';
import {
  DEFAULT_EXPOSITION_LIMITS,
  type ExpositionLimits,
  type HistogramRead,
  MAX_BUCKET_BOUNDS,
  MAX_HISTOGRAM_SERIES,
  MAX_LINE_CHARS,
  MAX_SCRAPE_BYTES,
  MAX_SCRAPE_LINES,
  readHistogram,
} from './exposition.ts';
import { GO_BODY, GO_SUMS } from './testdata/client-golang.ts';
import { bodyStream } from './testdata/stream.ts';

const METRIC = 'http_request_duration_seconds';
const SPECS = [{ metric: METRIC, matchers: {}, routeLabels: [] }];
const INF = Number.POSITIVE_INFINITY;

/** The body as a stream of `chunk`-byte pieces (lines and characters split across them). */

function read(text: string, limits: Partial<ExpositionLimits> = {}, chunk?: number): Promise<HistogramRead> {
  return readHistogram(bodyStream(text, chunk), SPECS, new Set(['/metrics']), {
    ...DEFAULT_EXPOSITION_LIMITS,
    ...limits,
  });
}

function buckets(result: HistogramRead): [number, number][] {
  if (!result.ok) throw new Error(`refused: ${result.reason}`);
  return [...(result.histograms[0] ?? new Map())].sort(([a], [b]) => a - b);
}

/** A histogram's bucket lines: `series` label sets, each with the bounds 1..`bounds` and +Inf. */
function hostileHistogram(series: number, bounds: number): string {
  const lines: string[] = [];
  for (let s = 0; s < series; s++) {
    for (let b = 1; b <= bounds; b++) lines.push(`${METRIC}_bucket{route="/r${s}",le="${b / 1000}"} ${b}`);
    lines.push(`${METRIC}_bucket{route="/r${s}",le="+Inf"} ${bounds}`);
  }
  return `${lines.join('\n')}\n`;
}

describe('readHistogram: real expositions', () => {
  test("client_golang's text format: label sets summed per le, whatever the chunking", async () => {
    expect(buckets(await read(GO_BODY))).toEqual(GO_SUMS);
    expect(buckets(await read(GO_BODY, {}, 7))).toEqual(GO_SUMS);
    expect(buckets(await read(GO_BODY.replaceAll('\n', '\r\n'), {}, 64))).toEqual(GO_SUMS);
  });

  test('escapes, braces and spaces in labels, a trailing comma, timestamps, an OpenMetrics exemplar', async () => {
    const body = [
      `${METRIC}_bucket{route="/users/{id}",msg="say \\"hi\\"\\n\\\\",le="0.1"} 3 1700000000000`,
      `${METRIC}_bucket{ route = "/users/{id}" , msg="say \\"hi\\"\\n\\\\", le="+Inf", } 4`,
      `${METRIC}_bucket{route="/b",le="1e-1"} 1 # {trace_id="abc"} 0.05 1700000000.123`,
      `${METRIC}_bucket{route="/b",le="Inf"}\t2`,
      `${METRIC}_bucket_total 7`,
      `${METRIC}_count 6`,
      '# EOF',
    ].join('\n');
    expect(buckets(await read(body))).toEqual([
      [0.1, 4],
      [INF, 6],
    ]);
  });

  test('label sets naming the scrape path are left out (the operator scrapes itself)', async () => {
    const body = [
      `${METRIC}_bucket{route="/metrics",le="0.1"} 300`,
      `${METRIC}_bucket{route="/metrics",le="+Inf"} 300`,
      `${METRIC}_bucket{route="/work",le="0.1"} 1`,
      `${METRIC}_bucket{route="/work",le="+Inf"} 30`,
    ].join('\n');
    expect(buckets(await read(body))).toEqual([
      [0.1, 1],
      [INF, 30],
    ]);
  });

  test('a long body gives the event loop turns while it is parsed', async () => {
    let turns = 0;
    let running = true;
    const tick = () => {
      turns++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const body = hostileHistogram(100, 100); // one chunk of about 0.5 MiB
    // A slice of 0 ms: every check of the slicer is a turn, so no clock decides the outcome.
    const result = await readHistogram(
      bodyStream(body),
      SPECS,
      new Set(['/metrics']),
      DEFAULT_EXPOSITION_LIMITS,
      new TimeSlicer(0),
    );
    running = false;
    expect(result.ok).toBe(true);
    expect(turns).toBeGreaterThan(3);
  });
});

describe('readHistogram: a hostile body is refused, saying which limit, quoting nothing of it', () => {
  test(`more than MAX_SCRAPE_BYTES (${MAX_SCRAPE_BYTES})`, async () => {
    const line = `# ${'x'.repeat(1021)}\n`; // 1 KiB
    const body = line.repeat(MAX_SCRAPE_BYTES / 1024) + hostileHistogram(1, 10);
    expect(await read(body, {}, 64 * 1024)).toEqual({
      ok: false,
      reason: `refused: larger than ${MAX_SCRAPE_BYTES} bytes (the limit per scrape)`,
    });
    // Without the limit the same body is a histogram like any other.
    expect(await read(body, { bytes: 2 * MAX_SCRAPE_BYTES }, 64 * 1024)).toMatchObject({ ok: true });
  });

  test(`more than MAX_SCRAPE_LINES (${MAX_SCRAPE_LINES})`, async () => {
    const body = `${'\n'.repeat(MAX_SCRAPE_LINES)}${hostileHistogram(1, 10)}`;
    expect(await read(body)).toEqual({
      ok: false,
      reason: `refused: more than ${MAX_SCRAPE_LINES} lines of metrics (the limit per scrape)`,
    });
    expect(await read(body, { lines: 2 * MAX_SCRAPE_LINES })).toMatchObject({ ok: true });
  });

  test(`a line longer than MAX_LINE_CHARS (${MAX_LINE_CHARS}), with or without its newline`, async () => {
    const long = `${METRIC}_bucket{route="${'y'.repeat(MAX_LINE_CHARS)}",le="+Inf"} 1`;
    const reason = `refused: a line of metrics longer than ${MAX_LINE_CHARS} characters (the limit per line)`;
    expect(await read(`${long}\n`, {}, 4096)).toEqual({ ok: false, reason });
    expect(await read(`# ${'y'.repeat(MAX_LINE_CHARS)}`, {}, 4096)).toEqual({ ok: false, reason });
    expect(await read(`${long}\n`, { lineChars: 2 * MAX_LINE_CHARS }, 4096)).toMatchObject({ ok: true });
  });

  test(`more than MAX_BUCKET_BOUNDS (${MAX_BUCKET_BOUNDS}) distinct le: the review's 250k buckets, smaller`, async () => {
    // MAX_BUCKET_BOUNDS - 1 finite bounds and +Inf: as many as allowed.
    expect(buckets(await read(hostileHistogram(1, MAX_BUCKET_BOUNDS - 1)))).toHaveLength(MAX_BUCKET_BOUNDS);
    const body = hostileHistogram(1, 5_000);
    expect(await read(body)).toEqual({
      ok: false,
      reason: `refused: ${METRIC}_bucket has more than ${MAX_BUCKET_BOUNDS} distinct le bounds (the limit per pod)`,
    });
    // Without the limit every bound would be kept, in every snapshot of the pod.
    expect(buckets(await read(body, { bounds: 10_000 }))).toHaveLength(5_001);
  });

  test(`more than MAX_HISTOGRAM_SERIES (${MAX_HISTOGRAM_SERIES}) label sets`, async () => {
    const body = hostileHistogram(MAX_HISTOGRAM_SERIES + 1, 1);
    expect(await read(body)).toEqual({
      ok: false,
      reason: `refused: ${METRIC}_bucket has more than ${MAX_HISTOGRAM_SERIES} label sets (the limit per pod)`,
    });
    expect(await read(body, { series: 2 * MAX_HISTOGRAM_SERIES })).toMatchObject({ ok: true });
    expect(await read(hostileHistogram(MAX_HISTOGRAM_SERIES, 1))).toMatchObject({ ok: true });
  });

  test('malformed bucket lines are refused by line number, none of their text quoted', async () => {
    const secret = 'SECRET-TOKEN';
    const cases: [string, string][] = [
      [`${METRIC}_bucket{route="${secret}",le="0.1" 12`, 'has labels not separated by ","'],
      [`${METRIC}_bucket{route="${secret}",le="0.1"} NaN`, 'has a count that is not a finite number >= 0'],
      [`${METRIC}_bucket{route="${secret}",le="0.1"} -3`, 'has a count that is not a finite number >= 0'],
      [`${METRIC}_bucket{route="${secret}",le="0.1"} +Inf`, 'has a count that is not a finite number >= 0'],
      [`${METRIC}_bucket{route="${secret}"} 1`, 'has no le label'],
      [`${METRIC}_bucket{route="${secret}",le="${secret}"} 1`, 'has an le that is not a number'],
      [`${METRIC}_bucket{le="1",le="2"} 1`, 'has a label twice'],
      [`${METRIC}_bucket{route="${secret}`, 'has a label value that is not closed'],
      [`${METRIC}_bucket{${secret}} 1`, 'has a label without "="'],
      [`${METRIC}_bucket{le="1"} 1 2 ${secret}`, 'has more than a value and a timestamp'],
      [`${METRIC}_bucket{le="1"} 1 ${secret}`, 'has a timestamp that is not a number'],
      [`${METRIC}_bucket{le="1"}`, 'has no value'],
    ];
    for (const [line, what] of cases) {
      expect(await read(`# TYPE ${METRIC} histogram\n${line}\n`)).toEqual({
        ok: false,
        reason: `cannot parse ${METRIC}_bucket: line 2 ${what}`,
      });
    }
  });

  test('whitespace inside the braces costs one look per character (the old parser backtracked on it)', async () => {
    const spaces = ' '.repeat(20_000);
    // prom2javascript took 14 s on one such line of 4,000 spaces.
    expect(buckets(await read(`${METRIC}_bucket{${spaces}le="1"${spaces}}${spaces}5\n`))).toEqual([[1, 5]]);
    expect(await read(`${METRIC}_bucket{${spaces} 1\n`)).toMatchObject({ ok: false });
  });
});
