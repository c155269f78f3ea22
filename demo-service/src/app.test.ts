import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { type Logger, pino } from 'pino';
import { Gauge } from 'prom-client';
import { afterEach, describe, expect, test } from 'vitest';
import { createDemoService, type DemoService, guardHandler, INSTANCE_HEADER } from './app.ts';
import { loadConfig } from './config.ts';
import { destroyRawClients, exchange, rawClient, statusOf, until } from './test-support.ts';

function get(port: number, path: string): Promise<{ status?: number; body: string; instance?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode, body, instance: res.headers[INSTANCE_HEADER] as string }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

let service: DemoService | undefined;
afterEach(() => {
  destroyRawClients();
  service?.server.closeAllConnections();
  service?.server.close();
  service = undefined;
});

async function start(env: Record<string, string> = {}, logger: Logger = pino({ level: 'silent' })) {
  const config = loadConfig({ LATENCY_PROFILE: 'fixed:1', PROPAGATION_DELAY_SECONDS: '0.3', ...env }, []);
  service = createDemoService(config, logger);
  await new Promise<void>((resolve) => service?.server.listen(0, '127.0.0.1', resolve));
  return { ...service, port: (service.server.address() as AddressInfo).port };
}

describe('demo-service routes', () => {
  test('work answers with the profile latency, or the ?ms= override', async () => {
    const { port } = await start();
    expect(await get(port, '/work')).toEqual({ status: 200, body: '{"ms":1}', instance: hostname() });
    expect(await get(port, '/work?ms=3')).toEqual({ status: 200, body: '{"ms":3}', instance: hostname() });
    expect((await get(port, '/nope')).status).toBe(404);
  });

  test('while draining, liveness stays 200 and readiness turns 503', async () => {
    const { drain, port } = await start();
    expect((await get(port, '/readyz')).status).toBe(200);
    const done = drain.drain('SIGTERM');
    expect((await get(port, '/healthz')).status).toBe(200);
    expect((await get(port, '/readyz')).status).toBe(503);
    expect((await done).outcome).toBe('drained');
  });

  test("METRIC_SHAPES: other stacks' histograms, each with what its exporter would see", async () => {
    const { port } = await start({
      METRIC_SHAPES: 'istio,linkerd,opentelemetry,micrometer',
      WORKLOAD_NAME: 'web',
      POD_NAMESPACE: 'shop',
    });
    await get(port, '/work?ms=2');
    await get(port, '/readyz');
    const text = (await get(port, '/metrics')).body;
    const counts = (metric: string) =>
      text
        .split('\n')
        .filter((line) => line.startsWith(`${metric}_count{`))
        .sort();
    // Istio: the server side, named by workload; the probe went to the agent, unseen.
    expect(counts('istio_request_duration_milliseconds')).toEqual([
      expect.stringMatching(
        /^istio_request_duration_milliseconds_count\{reporter="destination",.*destination_workload="web",destination_workload_namespace="shop",.*response_code="200".*\} 1$/,
      ),
    ]);
    // Linkerd: inbound; the probe on the route the policy controller names `probe`.
    expect(counts('response_latency_ms')).toEqual([
      expect.stringMatching(/direction="inbound",.*route_name="default",status_code="200"\} 1$/),
      expect.stringMatching(/direction="inbound",.*route_name="probe",status_code="200"\} 1$/),
    ]);
    // and its newer histogram, to the end of the response, in seconds, on the same routes.
    expect(counts('inbound_http_request_duration_seconds')).toEqual([
      expect.stringMatching(/route_kind="default",route_name="default"\} 1$/),
      expect.stringMatching(/route_kind="default",route_name="probe"\} 1$/),
    ]);
    expect(text).toContain('inbound_http_request_duration_seconds_bucket{le="0.025",');
    // OpenTelemetry: every request under its route.
    expect(counts('http_server_request_duration_seconds')).toEqual([
      expect.stringContaining('http_route="/readyz"'),
      expect.stringContaining('http_route="/work"'),
    ]);
    expect(text).toContain('http_server_request_duration_seconds_bucket{le="0.005",');
    // Micrometer: the probe as Spring's health group.
    expect(counts('http_server_requests_seconds')).toEqual([
      expect.stringContaining('uri="/actuator/health/readiness"'),
      expect.stringContaining('uri="/work"'),
    ]);
    // Its own histograms only where asked.
    expect(text).not.toMatch(/^http_request_duration_seconds_bucket\{/m);
    expect(text).not.toMatch(/^http_server_duration_milliseconds_bucket\{/m);
    expect(() => loadConfig({ METRIC_SHAPES: 'istio,nginx' }, [])).toThrow(/unknown shape\(s\) nginx/);
  });

  test('METRIC_SHAPES opentelemetry-otlp: an exponential histogram pushed over OTLP with the k8s resource attributes', async () => {
    // The receiving end: a plain HTTP server on 127.0.0.1 that keeps what is posted.
    const posts: { path?: string; type?: string; body: unknown }[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        posts.push({ path: req.url, type: req.headers['content-type'], body: JSON.parse(body) });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const { port, flushMetrics } = await start({
        METRIC_SHAPES: 'opentelemetry-otlp',
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/api/v1/otlp/v1/metrics`,
        // Longer than the test: only the flush at the end of a drain pushes.
        OTEL_METRIC_EXPORT_INTERVAL: '600000',
        WORKLOAD_NAME: 'web',
        POD_NAMESPACE: 'shop',
        POD_NAME: 'web-7d4b9c-x7k2q',
      });
      await get(port, '/work?ms=30');
      await get(port, '/readyz');
      // Nothing of it in the pod's own exposition.
      expect((await get(port, '/metrics')).body).not.toContain('http_server_request_duration_seconds');
      expect(posts).toHaveLength(0);
      await flushMetrics();
      expect(posts.map((p) => [p.path, p.type])).toEqual([['/api/v1/otlp/v1/metrics', 'application/json']]);
      type Pushed = {
        resourceMetrics: {
          resource: { attributes: { key: string; value: { stringValue: string } }[] };
          scopeMetrics: { metrics: { name: string; unit: string; exponentialHistogram?: unknown }[] }[];
        }[];
      };
      const resourceMetrics = (posts[0]?.body as Pushed | undefined)?.resourceMetrics[0];
      const attributes = Object.fromEntries(
        (resourceMetrics?.resource.attributes ?? []).map((a) => [a.key, a.value.stringValue]),
      );
      expect(attributes).toMatchObject({
        'k8s.namespace.name': 'shop',
        'k8s.deployment.name': 'web',
        'k8s.pod.name': 'web-7d4b9c-x7k2q',
      });
      const metric = resourceMetrics?.scopeMetrics[0]?.metrics[0] as {
        name: string;
        unit: string;
        exponentialHistogram: {
          aggregationTemporality: number;
          dataPoints: { count: number; attributes: { key: string; value: { stringValue?: string } }[] }[];
        };
      };
      expect([metric.name, metric.unit]).toEqual(['http.server.request.duration', 's']);
      // Cumulative (2), one data point per route: the probe is recorded under its own.
      expect(metric.exponentialHistogram.aggregationTemporality).toBe(2);
      const routes = metric.exponentialHistogram.dataPoints
        .map((p) => p.attributes.find((a) => a.key === 'http.route')?.value.stringValue)
        .sort();
      expect(routes).toEqual(['/metrics', '/readyz', '/work']);
    } finally {
      receiver.close();
    }
  });

  test('the opentelemetry-otlp shape needs an endpoint, named', () => {
    expect(() => loadConfig({ METRIC_SHAPES: 'opentelemetry-otlp' }, [])).toThrow(
      /OTEL_EXPORTER_OTLP_METRICS_ENDPOINT/,
    );
    expect(() =>
      loadConfig(
        { METRIC_SHAPES: 'opentelemetry-otlp', OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'ftp://x/' },
        [],
      ),
    ).toThrow(/http or https URL/);
  });

  test('METRIC_SHAPES ingress-nginx and envoy: its requests as a proxy in front of PROXIED_SERVICE records them', async () => {
    const { port } = await start({
      METRIC_SHAPES: 'ingress-nginx,envoy',
      PROXIED_SERVICE: 'web',
      POD_NAMESPACE: 'shop',
    });
    await get(port, '/work?ms=2');
    await get(port, '/readyz');
    const text = (await get(port, '/metrics')).body;
    // Only the proxied request: probes and scrapes do not pass a proxy.
    expect(text).toMatch(
      /^nginx_ingress_controller_request_duration_seconds_count\{status="200",method="GET",path="\/",namespace="shop",ingress="web",service="web",.*\} 1$/m,
    );
    expect(text).toContain('nginx_ingress_controller_request_duration_seconds_bucket{le="0.005",');
    expect(text).toMatch(/^envoy_cluster_upstream_rq_time_count\{envoy_cluster_name="shop_web_80"\} 1$/m);
  });

  test('metrics expose the names the operator scrapes', async () => {
    const { drain, metrics, port } = await start();
    await get(port, '/work?ms=2');
    const before = (await get(port, '/metrics')).body;
    expect(before).toContain(
      'http_request_duration_seconds_bucket{le="0.001",method="GET",route="/work",status_code="200"}',
    );
    expect(before).toContain(
      'http_request_duration_seconds_bucket{le="60",method="GET",route="/work",status_code="200"} 1',
    );
    // The twin in milliseconds: the same bounds x 1000, the same count.
    expect(before).toContain(
      'http_server_duration_milliseconds_bucket{le="60000",http_method="GET",http_route="/work",http_status_code="200",http_scheme="http"} 1',
    );
    expect(before).toContain(
      'http_server_duration_milliseconds_bucket{le="1",http_method="GET",http_route="/work"',
    );
    // No other stack's histogram unless METRIC_SHAPES asks.
    expect(before).not.toContain('istio_request_duration_milliseconds');
    expect(before).toMatch(/^http_requests_in_flight 1$/m); // the /metrics request itself
    expect(before).toMatch(/^http_server_drain_phase 0$/m);
    expect(before).toMatch(/^http_server_forced_closes_total 0$/m);
    expect(before).toContain('# TYPE http_server_shutdown_duration_seconds gauge');
    const drained = drain.drain('SIGTERM');
    expect((await get(port, '/metrics')).body).toMatch(/^http_server_drain_phase 1$/m);
    metrics.recordDrain(await drained);
    const after = await metrics.registry.metrics();
    expect(after).toMatch(/^http_server_drain_phase 3$/m);
    expect(after).toMatch(/^http_server_shutdown_duration_seconds 0\.\d+$/m);
  });
});

/** A raw request that closes its connection after the answer. */
const raw = (target: string, headers = '', method = 'GET'): string =>
  `${method} ${target} HTTP/1.1\r\nHost: demo\r\n${headers}Connection: close\r\n\r\n`;

/** A pino logger whose lines land in `lines`. */
function recordingLogger(): { logger: Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe('demo-service with hostile clients', () => {
  test('a request target URL cannot parse gets 400, and the server keeps serving', async () => {
    // Negative control: Node's parser hands such targets to the handler, where `new URL` throws
    // (the old handler called it unguarded: the process exited).
    const seen: string[] = [];
    const bare = createServer((req, res) => {
      seen.push(req.url ?? '');
      res.end();
    });
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    await exchange((bare.address() as AddressInfo).port, raw('http://[/x'));
    bare.close();
    expect(seen).toEqual(['http://[/x']);
    expect(() => new URL('http://[/x', 'http://localhost')).toThrow();

    const { port } = await start();
    for (const target of ['http://[/x', '//[/x', 'http://demo:99999/work']) {
      expect(statusOf(await exchange(port, raw(target))), target).toBe(400);
    }
    // An absolute-form target URL can parse is routed by its path.
    expect(statusOf(await exchange(port, raw('http://elsewhere/healthz')))).toBe(200);
    expect((await get(port, '/healthz')).status).toBe(200);
  });

  test("requests Node's parser rejects get 400, or 431 for too large or too many headers, and never reach a handler", async () => {
    const { port } = await start();
    const rejected = {
      'unknown method': raw('/healthz', '', 'FOO'),
      'space in the target': raw('/a b'),
      'not HTTP': '\x00\x01 hello\r\n\r\n',
      'two Content-Length': raw('/healthz', 'Content-Length: 1\r\nContent-Length: 2\r\n'),
      'header over 16 KiB': raw('/healthz', `X-Big: ${'a'.repeat(17 * 1024)}\r\n`),
      'over 100 headers': raw('/healthz', 'X-Many: 1\r\n'.repeat(100)),
    };
    const statuses = Object.fromEntries(
      await Promise.all(
        Object.entries(rejected).map(async ([what, data]) => [what, statusOf(await exchange(port, data))]),
      ),
    );
    expect(statuses).toEqual({
      'unknown method': 400,
      'space in the target': 400,
      'not HTTP': 400,
      'two Content-Length': 400,
      'header over 16 KiB': 431,
      'over 100 headers': 431,
    });
    // Controls: just inside the limits is served.
    expect(statusOf(await exchange(port, raw('/healthz', `X-Big: ${'a'.repeat(15 * 1024)}\r\n`)))).toBe(200);
    expect(statusOf(await exchange(port, raw('/healthz', 'X-Many: 1\r\n'.repeat(97))))).toBe(200);
    // The handler counted only the two controls.
    const text = (await get(port, '/metrics')).body;
    expect(text).toMatch(
      /^http_request_duration_seconds_count\{method="GET",route="\/healthz",status_code="200"\} 2$/m,
    );
    expect(text).not.toContain('status_code="4');
  });

  test('a request with a body gets 413 (405 for another method) and its connection closes without reading the body', async () => {
    const { port } = await start();
    // Announces a megabyte and sends ten bytes: answered and closed at once, not read to the end.
    const get = await rawClient(
      port,
      'GET /healthz HTTP/1.1\r\nHost: demo\r\nContent-Length: 1000000\r\n\r\n0123456789',
    );
    const answer = await get.closed();
    expect(statusOf(answer)).toBe(413);
    expect(answer).toContain('Connection: close');
    const post = await rawClient(
      port,
      'POST /work HTTP/1.1\r\nHost: demo\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
    );
    expect(statusOf(await post.closed())).toBe(405);
    // Control: without a body the connection stays open for the next request.
    const plain = await rawClient(port, 'GET /healthz HTTP/1.1\r\nHost: demo\r\n\r\n');
    await until(() => plain.received.endsWith('ok\n'), 'the answer arrives');
    expect(plain.isClosed).toBe(false);
  });

  test('clients that never finish their headers, or send nothing, get 408 after HEADERS_TIMEOUT_SECONDS', async () => {
    const { port } = await start({ HEADERS_TIMEOUT_SECONDS: '0.5', KEEP_ALIVE_TIMEOUT_SECONDS: '30' });
    const idle = await rawClient(port, 'GET /healthz HTTP/1.1\r\nHost: demo\r\n\r\n');
    await until(() => idle.received.endsWith('ok\n'), 'the keep-alive answer arrives');
    // Both connect after `idle` went idle, so when they time out `idle` has been idle longer.
    const slow = await rawClient(port, 'GET /healthz HTTP/1.1\r\nHost: demo\r\n');
    const silent = await rawClient(port);
    expect(statusOf(await slow.closed())).toBe(408);
    expect(statusOf(await silent.closed())).toBe(408);
    // The timeout counts from a request's first byte: an idle keep-alive socket is not cut by it.
    expect(idle.isClosed).toBe(false);
    idle.socket.write(raw('/healthz'));
    expect((await idle.closed()).match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
  });

  test('timeouts in fractions of a millisecond still start a server (Node takes whole milliseconds only)', async () => {
    const { port, server } = await start({
      KEEP_ALIVE_TIMEOUT_SECONDS: '1.2345',
      HEADERS_TIMEOUT_SECONDS: '2.0005',
    });
    expect([server.keepAliveTimeout, server.headersTimeout, server.requestTimeout]).toEqual([
      1235, 2001, 2001,
    ]);
    expect((await get(port, '/healthz')).status).toBe(200);
  });

  test('beyond MAX_CONNECTIONS a connection is closed at once without an answer, and counted', async () => {
    const { port, server } = await start({ MAX_CONNECTIONS: '2' });
    let open = 0;
    server.on('connection', (socket) => {
      open += 1;
      socket.once('close', () => (open -= 1));
    });
    const first = await rawClient(port);
    await rawClient(port);
    await until(() => open === 2, 'both connections are accepted');
    expect(await exchange(port, raw('/healthz'))).toBe('');
    first.socket.destroy();
    await until(() => open === 1, 'the server sees the first connection closed');
    expect(statusOf(await exchange(port, raw('/metrics')))).toBe(200);
    expect(await exchange(port, raw('/metrics'))).toMatch(/^http_server_dropped_connections_total 1$/m);
  });

  test('a failing metrics collection answers 500, logged, and the server keeps serving', async () => {
    const { logger, lines } = recordingLogger();
    const { metrics, port } = await start({}, logger);
    new Gauge({
      name: 'broken_metric',
      help: 'its collect throws',
      registers: [metrics.registry],
      collect() {
        throw new Error('collector broke');
      },
    });
    expect((await get(port, '/metrics')).status).toBe(500);
    expect(lines).toContainEqual(expect.objectContaining({ level: 50, msg: 'request handler failed' }));
    metrics.registry.removeSingleMetric('broken_metric');
    expect((await get(port, '/metrics')).status).toBe(200);
  });

  test('a slow client is cut by HEADERS_TIMEOUT_SECONDS during a drain, not held until the deadline', async () => {
    const { drain, port, server } = await start({
      HEADERS_TIMEOUT_SECONDS: '0.5',
      PROPAGATION_DELAY_SECONDS: '0',
      TERMINATION_GRACE_PERIOD_SECONDS: '10',
    });
    let accepted = 0;
    server.on('connection', () => (accepted += 1));
    const slow = await rawClient(port, 'GET /work HTTP/1.1\r\nHost: demo\r\n');
    await until(() => accepted === 1, 'the slow connection is accepted');
    // Node's header-timeout check keeps running once the drain has closed the listener.
    expect(await drain.drain('test')).toMatchObject({
      outcome: 'drained',
      forcedCloses: 0,
      idleClosesAtDeadline: 0,
    });
    expect(statusOf(await slow.closed())).toBe(408);
  });
});

describe('guardHandler', () => {
  test('whatever a handler throws, at once or later, is a 500 for that request only, logged; the server keeps serving', async () => {
    const { logger, lines } = recordingLogger();
    const server = createServer(
      guardHandler(async (req, res) => {
        switch (req.url) {
          case '/throws':
            throw new Error('sync');
          case '/rejects':
            await new Promise((r) => setImmediate(r));
            throw new Error('async');
          case '/after-headers':
            res.writeHead(200, { 'Content-Type': 'text/plain' });
            res.write('partial');
            await new Promise((r) => setImmediate(r));
            throw new Error('after the status line');
          case '/write-after-end':
            res.end('once\n');
            res.write('again');
            return;
          default:
            res.end('ok\n');
        }
      }, logger),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      // The first one is a plain function throwing synchronously, before any await.
      const sync = createServer(
        guardHandler(() => {
          throw new Error('plain sync');
        }, logger),
      );
      await new Promise<void>((resolve) => sync.listen(0, '127.0.0.1', resolve));
      expect(statusOf(await exchange((sync.address() as AddressInfo).port, raw('/')))).toBe(500);
      sync.close();

      expect(statusOf(await exchange(port, raw('/throws')))).toBe(500);
      expect(statusOf(await exchange(port, raw('/rejects')))).toBe(500);
      // Status already sent: the response is cut short (chunked, no last chunk) rather than completed.
      const cut = await exchange(port, raw('/after-headers'));
      expect(statusOf(cut)).toBe(200);
      expect(cut).toContain('partial');
      expect(cut.endsWith('0\r\n\r\n')).toBe(false);
      expect(statusOf(await exchange(port, raw('/write-after-end')))).toBe(200);
      await until(() => lines.some((line) => line.msg === 'response error'), 'the write after end is logged');
      expect(statusOf(await exchange(port, raw('/fine')))).toBe(200);
      expect(lines.filter((line) => line.msg === 'request handler failed')).toHaveLength(4);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
