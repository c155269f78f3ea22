// bucketQuantile against real Prometheus: the same buckets go to promtool's rule unit tests
// (`promtool test rules`, the promtool built with the test cluster's Prometheus from Go modules,
// test/cluster/build.ts; a cached build is reused), where histogram_quantile runs in the real
// PromQL engine, and both answers must agree within 1 %.
//
// promtool only asserts, it has no "evaluate and print". So every expression is given an
// expected sample that cannot match (a label no series has); the test fails and promtool prints
// what it got, `got: {case="c1"} 3.0000000000000004E-01, ...`, every value in full precision,
// which is parsed here. The parse is strict: a case missing from what promtool printed fails the
// test with promtool's whole output.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildPrometheus } from '../../../test/cluster/build.ts';
import { type Bucket, bucketQuantile } from './histogram.ts';

const run = promisify(execFile);

/** A histogram as Prometheus would hold it: one series per `le` label value (as written). */
interface Case {
  name: string;
  what: string;
  buckets: [le: string, count: number][];
}

const QUANTILES = [0.01, 0.1, 0.25, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999];

const FIXED: Case[] = [
  {
    name: 'inside',
    what: 'interpolation inside a bucket',
    buckets: [
      ['0.1', 50],
      ['0.5', 90],
      ['1', 100],
      ['+Inf', 100],
    ],
  },
  {
    name: 'lowest',
    what: 'the lowest bucket, interpolated from 0',
    buckets: [
      ['0.25', 40],
      ['1', 100],
      ['+Inf', 100],
    ],
  },
  {
    name: 'zero-bound',
    what: 'a lowest bound at 0 and below answers the bound itself',
    buckets: [
      ['-1', 5],
      ['0', 10],
      ['1', 100],
      ['+Inf', 100],
    ],
  },
  {
    name: 'inf',
    what: 'the rank in the +Inf bucket: the largest finite bound',
    buckets: [
      ['0.1', 10],
      ['1', 90],
      ['+Inf', 100],
    ],
  },
  {
    name: 'all-inf',
    what: 'every observation beyond the largest finite bound',
    buckets: [
      ['0.5', 0],
      ['2', 0],
      ['+Inf', 7],
    ],
  },
  {
    name: 'duplicates',
    what: 'one bound spelled three ways (0.5, 0.50, 5e-1) and written out of order: counts added',
    buckets: [
      ['+Inf', 200],
      ['5e-1', 30],
      ['1', 200],
      ['0.50', 50],
      ['0.1', 20],
      ['0.5', 40],
    ],
  },
  {
    name: 'non-monotonic',
    what: 'a lower bucket counting more than a higher one: forced monotonic',
    buckets: [
      ['0.1', 95],
      ['0.5', 90],
      ['1', 100],
      ['+Inf', 100],
    ],
  },
  {
    name: 'fractional',
    what: 'per-second rates rather than counts',
    buckets: [
      ['0.005', 0.25],
      ['0.05', 1.5],
      ['0.5', 2.125],
      ['5', 2.5],
      ['+Inf', 2.5],
    ],
  },
  {
    name: 'boundary',
    what: 'ranks landing exactly on bucket bounds',
    buckets: [
      ['1', 10],
      ['2', 25],
      ['4', 50],
      ['8', 90],
      ['16', 100],
      ['+Inf', 100],
    ],
  },
  { name: 'no-inf', what: 'no +Inf bucket: no answer (NaN)', buckets: [['1', 10]] },
  { name: 'only-inf', what: 'only the +Inf bucket: no answer (NaN)', buckets: [['+Inf', 10]] },
  {
    name: 'empty',
    what: 'no observations: no answer (NaN)',
    buckets: [
      ['1', 0],
      ['+Inf', 0],
    ],
  },
];

/** mulberry32: a small seeded generator, so the random cases are the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomCases(count: number, seed: number): Case[] {
  const random = seeded(seed);
  const cases: Case[] = [];
  for (let n = 0; n < count; n++) {
    const bounds = 2 + Math.floor(random() * 18);
    const buckets: [string, number][] = [];
    let le = 0.001 + random() * 0.05;
    let total = 0;
    for (let i = 0; i < bounds; i++) {
      // Some buckets empty, some fractional (rates), skewed like latencies.
      const added = random() < 0.2 ? 0 : Math.round(random() * 1000 * (1 + i)) / (n % 3 === 0 ? 8 : 1);
      total += added;
      buckets.push([String(Number(le.toPrecision(4))), total]);
      le *= 1.3 + random() * 2;
    }
    // Often some observations beyond the largest finite bound, so high quantiles hit +Inf.
    total += random() < 0.5 ? Math.round(random() * total * 0.02) : 0;
    buckets.push(['+Inf', total]);
    cases.push({ name: `random-${n}`, what: `random histogram ${n} (seed ${seed})`, buckets });
  }
  return cases;
}

const CASES = [...FIXED, ...randomCases(25, 20_240_601)];

function ours(q: number, c: Case): { value: number; atLeast: boolean } | undefined {
  const buckets: Bucket[] = c.buckets.map(([le, count]) => ({
    le: le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le),
    count,
  }));
  const result = bucketQuantile(q, buckets);
  return result.ok ? { value: result.value, atLeast: result.atLeast } : undefined;
}

/** promtool's rule test file: each case's series at t=0, one failing expression per quantile. */
function ruleTest(cases: readonly Case[]): string {
  const series = cases.flatMap((c) =>
    c.buckets.map(
      ([le, count]) => `      - series: 'h_bucket{case="${c.name}",le="${le}"}'\n        values: '${count}'`,
    ),
  );
  const exprs = QUANTILES.map(
    (q) =>
      `      - expr: histogram_quantile(${q}, h_bucket)\n        eval_time: 0m\n` +
      `        exp_samples:\n          - labels: '{case="__never__"}'\n            value: 0`,
  );
  return [
    'evaluation_interval: 1m',
    'tests:',
    '  - interval: 1m',
    '    input_series:',
    ...series,
    '    promql_expr_test:',
    ...exprs,
    '',
  ].join('\n');
}

/** promtool's "got" values: quantile -> case -> value (NaN included). */
function parseGot(output: string): Map<number, Map<string, number>> {
  const byQuantile = new Map<number, Map<string, number>>();
  const blocks = output.split(/expr: "histogram_quantile\(/).slice(1);
  for (const block of blocks) {
    const q = Number(block.slice(0, block.indexOf(',')));
    const got = block.match(/^\s*got:\s*(.*)$/m)?.[1] ?? '';
    const values = new Map<string, number>();
    for (const [, name, value] of got.matchAll(
      /\{case="([^"]+)"\} ([-+]?(?:[0-9.]+(?:E[-+]?[0-9]+)?|NaN|Inf))/gi,
    )) {
      values.set(
        name as string,
        value === '+Inf' || value === 'Inf' ? Number.POSITIVE_INFINITY : Number(value),
      );
    }
    byQuantile.set(q, values);
  }
  return byQuantile;
}

let dir = '';
let got = new Map<number, Map<string, number>>();
let promtoolOutput = '';

beforeAll(async () => {
  // About 5 minutes on a cold 2-core machine, once: the e2e suite reuses the cached build.
  const { promtool } = await buildPrometheus();
  dir = await mkdtemp(join(tmpdir(), 'gso-promtool-'));
  const file = join(dir, 'quantiles.test.yml');
  await writeFile(file, ruleTest(CASES));
  // Every expression fails by design: exit code 1, the values on stdout.
  const result = await run(promtool, ['test', 'rules', file]).then(
    (r) => ({ stdout: r.stdout, stderr: r.stderr, code: 0 }),
    (e: { stdout?: string; stderr?: string; code?: number }) => ({
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
      code: e.code ?? -1,
    }),
  );
  promtoolOutput = `${result.stdout}\n${result.stderr}`;
  got = parseGot(promtoolOutput);
}, 900_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('bucketQuantile agrees with Prometheus histogram_quantile (promtool test rules)', () => {
  test('promtool evaluated every quantile of every case', () => {
    expect([...got.keys()].sort(), promtoolOutput).toEqual([...QUANTILES].sort());
    for (const q of QUANTILES) {
      expect([...(got.get(q)?.keys() ?? [])].sort(), promtoolOutput).toEqual(CASES.map((c) => c.name).sort());
    }
  });

  test.each(CASES)('$name: $what', (c) => {
    for (const q of QUANTILES) {
      const prometheus = got.get(q)?.get(c.name);
      const mine = ours(q, c);
      const where = `q=${q}, case ${c.name}: Prometheus ${prometheus}, bucketQuantile ${mine?.value}`;
      if (prometheus === undefined || Number.isNaN(prometheus)) {
        expect(mine, where).toBeUndefined();
        continue;
      }
      expect(mine, where).toBeDefined();
      const value = mine?.value ?? Number.NaN;
      expect(Math.abs(value - prometheus), where).toBeLessThanOrEqual(0.01 * Math.abs(prometheus) + 1e-12);
      // atLeast exactly when Prometheus answered the largest finite bound for a rank in +Inf.
      if (mine?.atLeast) {
        const finite = c.buckets.map(([le]) => Number(le)).filter(Number.isFinite);
        expect(prometheus, where).toBe(Math.max(...finite));
      }
    }
  });
});
