// The Scrape source's exposition reader on text a tenant's pod serves (property-based): it never
// throws, never quotes the pod's text in a reason, and on a well-formed histogram, in any chunking
// and with any other lines around it, sums exactly what a model sums.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { DEFAULT_EXPOSITION_LIMITS, readHistogram } from './exposition.ts';
import { bodyStream } from './testdata/stream.ts';

const METRIC = 'http_request_duration_seconds';
const SPECS = [{ metric: METRIC, matchers: {}, routeLabels: [] }];
const MARKER = 'ZZMARKERZZ';

const read = (text: string, chunk: number) =>
  readHistogram(bodyStream(text, chunk), SPECS, new Set(['/metrics']), DEFAULT_EXPOSITION_LIMITS);

/** Lines that look like exposition, hostile ones included (the marker in names, labels, values). */
const hostileLine = fc.oneof(
  fc.string(),
  fc.constant(`${METRIC}_bucket{le="${MARKER}"} 1`),
  fc.constant(`${METRIC}_bucket{${MARKER}} 1`),
  fc.constant(`${METRIC}_bucket{le="0.1"} ${MARKER}`),
  fc.constant(`${METRIC}_bucket{le="0.1",route="${MARKER}\\"} 1`),
  fc.tuple(fc.string(), fc.string()).map(([a, b]) => `${METRIC}_bucket{${a}} ${b}`),
  fc.string().map((s) => `# HELP ${METRIC} ${s}`),
);

describe('readHistogram on hostile text (property-based)', () => {
  test('never throws, and a refusal never quotes the text', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(hostileLine, { maxLength: 30 }),
        fc.integer({ min: 1, max: 64 }),
        async (lines, chunk) => {
          const result = await read(lines.join('\n'), chunk);
          if (!result.ok) expect(result.reason).not.toContain(MARKER);
          else
            for (const [le, count] of result.histograms[0] ?? new Map())
              expect(Number.isNaN(le) || Number.isNaN(count)).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('a well-formed histogram, split anywhere and mixed with other metrics, sums as the model does', async () => {
    const bounds = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, Number.POSITIVE_INFINITY];
    const series = fc.record({
      route: fc.constantFrom('/a', '/b', '/c'),
      counts: fc.array(fc.nat(1_000_000), { minLength: bounds.length, maxLength: bounds.length }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(series, { selector: (s) => s.route, maxLength: 3 }),
        fc.array(
          fc.string({ unit: 'grapheme-ascii' }).map((s) => `other_metric{x="1"} ${s.length}`),
          { maxLength: 5 },
        ),
        fc.integer({ min: 1, max: 97 }),
        async (histograms, noise, chunk) => {
          const model = new Map<number, number>();
          const lines: string[] = [...noise];
          for (const { route, counts } of histograms) {
            let cumulative = 0;
            bounds.forEach((le, i) => {
              cumulative += counts[i] ?? 0;
              model.set(le, (model.get(le) ?? 0) + cumulative);
              const label = le === Number.POSITIVE_INFINITY ? '+Inf' : String(le);
              lines.push(`${METRIC}_bucket{route="${route}",le="${label}"} ${cumulative}`);
            });
          }
          const result = await read(lines.join('\n'), chunk);
          expect(result.ok).toBe(true);
          if (result.ok)
            expect([...(result.histograms[0] ?? new Map())].sort(([a], [b]) => a - b)).toEqual(
              [...model].sort(([a], [b]) => a - b),
            );
        },
      ),
      { numRuns: 300 },
    );
  });
});
