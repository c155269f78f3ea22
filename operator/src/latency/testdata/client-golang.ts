// A /metrics body as client_golang (promhttp, expfmt text format 0.0.4) writes it, for the
// Scrape source's tests: a HistogramVec with the default buckets by code and method, around the
// Go runtime's own metrics. Floats are in Go's %g (1e+06, 2.5e-05), a summary has NaN.

/** Per default bound of client_golang: `le` as Go writes it, then the two label sets' counts as written. */
const BUCKETS: [le: string, get200: string, post500: string][] = [
  ['0.005', '120000', '0'],
  ['0.01', '480000', '0'],
  ['0.025', '900000', '0'],
  ['0.05', '1e+06', '0'],
  ['0.1', '1.2e+06', '0'],
  ['0.25', '1.23e+06', '0'],
  ['0.5', '1.24e+06', '1'],
  ['1', '1.25e+06', '3'],
  ['2.5', '1.25e+06', '7'],
  ['5', '1.25e+06', '7'],
  ['10', '1.25e+06', '7'],
  ['+Inf', '1.25e+06', '9'],
];

function series(labels: string, column: 1 | 2, sum: string): string[] {
  const name = 'http_request_duration_seconds';
  return [
    ...BUCKETS.map((row) => `${name}_bucket{${labels},le="${row[0]}"} ${row[column]}`),
    `${name}_sum{${labels}} ${sum}`,
    `${name}_count{${labels}} ${BUCKETS.at(-1)?.[column]}`,
  ];
}

export const GO_BODY = `${[
  '# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.',
  '# TYPE go_gc_duration_seconds summary',
  'go_gc_duration_seconds{quantile="0"} 2.5e-05',
  'go_gc_duration_seconds{quantile="1"} NaN',
  'go_gc_duration_seconds_sum 0.000732',
  'go_gc_duration_seconds_count 12',
  '# HELP go_goroutines Number of goroutines that currently exist.',
  '# TYPE go_goroutines gauge',
  'go_goroutines 8',
  '# HELP http_request_duration_seconds A histogram of latencies for requests.',
  '# TYPE http_request_duration_seconds histogram',
  ...series('code="200",method="get"', 1, '18234.5'),
  ...series('code="500",method="post"', 2, '61.2'),
  '# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.',
  '# TYPE promhttp_metric_handler_requests_total counter',
  'promhttp_metric_handler_requests_total{code="200"} 4012',
].join('\n')}\n`;

/** GO_BODY's histogram, its label sets summed per le, written out by hand. */
export const GO_SUMS: [number, number][] = [
  [0.005, 120000],
  [0.01, 480000],
  [0.025, 900000],
  [0.05, 1e6],
  [0.1, 1.2e6],
  [0.25, 1.23e6],
  [0.5, 1.24e6 + 1],
  [1, 1.25e6 + 3],
  [2.5, 1.25e6 + 7],
  [5, 1.25e6 + 7],
  [10, 1.25e6 + 7],
  [Number.POSITIVE_INFINITY, 1.25e6 + 9],
];
