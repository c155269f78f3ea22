/**
 * demo-service HTTP routes on a plain node:http server:
 *   GET /work[?ms=N]  answers after a latency drawn from the profile (or exactly N ms)
 *   GET /healthz      liveness: 200 even while draining, or the kubelet restarts us mid-drain
 *   GET /readyz       readiness: 503 from the first shutdown signal on
 *   GET /metrics      Prometheus text format
 * Every response carries `X-Instance: <hostname>` (the pod name in Kubernetes), so a client
 * behind a Service can tell which instance answered.
 *
 * Hostile clients (README "Limits"): Node's parser answers a request it cannot parse (bad method,
 * bad request line, oversized or too many headers) with 400 or 431 and never calls the handler;
 * a request target it passes on but URL cannot parse (`GET http://[/x`) gets 400 here; whatever a
 * handler throws, at once or later, becomes a 500 for that request (guardHandler).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { DemoConfig } from './config.ts';
import { createDrain, type DrainController, drainDeadlineMs } from './drain.ts';
import { createLatencySampler } from './latency.ts';
import { createMetrics, type DemoMetrics } from './metrics.ts';
import { createShapes } from './shapes.ts';

export interface DemoService {
  server: Server;
  drain: DrainController;
  metrics: DemoMetrics;
  /** Pushes what a pushing metric shape holds (opentelemetry-otlp), at the end of a drain. */
  flushMetrics(): Promise<void>;
}

const routes = new Set(['/work', '/healthz', '/readyz', '/metrics']);
/** The routes its Deployments have the kubelet probe. */
const PROBE_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

/** Response header naming the instance that answered. */
export const INSTANCE_HEADER = 'x-instance';

/** Request line plus headers, in bytes (Node's default): more gets 431. */
export const MAX_HEADER_BYTES = 16 * 1024;
/** Header fields per request (Node's default is 2000): more gets 431. */
export const MAX_HEADERS_COUNT = 100;
/** How often Node checks HEADERS_TIMEOUT_SECONDS (its default, 30 s, would let a timeout run 30 s late). */
const CONNECTIONS_CHECKING_INTERVAL_MS = 1000;

function send(res: ServerResponse, status: number, body: string, contentType = 'text/plain'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** A request announcing a body: no route reads one. */
function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * Wraps a handler so that nothing it throws ends the process: a synchronous throw or a rejected
 * promise is logged and answered with 500 (the connection is cut instead when the status line is
 * already sent), for that request only. A response 'error' (a write after end) is logged: without
 * a listener it would be an uncaught exception.
 */
export function guardHandler(
  handler: RequestHandler,
  logger: Pick<Logger, 'error' | 'warn'>,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const context = { method: req.method, url: req.url };
    res.on('error', (error) => logger.warn({ err: error, ...context }, 'response error'));
    const fail = (error: unknown): void => {
      logger.error({ err: error, ...context }, 'request handler failed');
      try {
        if (res.headersSent) res.destroy();
        else send(res, 500, 'internal error\n');
      } catch {
        res.destroy();
      }
    };
    try {
      const pending = handler(req, res);
      if (pending) pending.catch(fail);
    } catch (error) {
      fail(error);
    }
  };
}

/** Whole milliseconds: Node rejects a fractional timeout. */
const wholeMs = (seconds: number): number => Math.round(seconds * 1000);

export function createDemoService(config: DemoConfig, logger: Logger): DemoService {
  const metrics = createMetrics();
  const shapes = createShapes(metrics.registry, config.METRIC_SHAPES, {
    workload: config.WORKLOAD_NAME,
    namespace: config.POD_NAMESPACE,
    probeRoutes: PROBE_ROUTES,
    proxiedService: config.PROXIED_SERVICE,
    ...(config.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT
      ? {
          otlp: {
            endpoint: config.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
            intervalMs: config.OTEL_METRIC_EXPORT_INTERVAL,
            pod: config.POD_NAME ?? hostname(),
          },
        }
      : {}),
  });
  const recordOwn = config.METRIC_SHAPES.includes('prometheus-client');
  const recordTwin = config.METRIC_SHAPES.includes('opentelemetry-legacy');
  const instance = hostname();
  const sampleLatencyMs = createLatencySampler(config.latency);
  // At least 1 ms: 0 would turn the header timeout off.
  const headersTimeout = Math.max(1, wholeMs(config.HEADERS_TIMEOUT_SECONDS));
  const server = createServer({
    keepAliveTimeout: wholeMs(config.KEEP_ALIVE_TIMEOUT_SECONDS),
    // Counted from a request's first byte (or from accept), not from the previous response, on
    // Node 24: an idle keep-alive socket is not subject to it, so it need not exceed keepAliveTimeout.
    headersTimeout,
    // No route reads a body (one gets 413 and the connection closed), so the whole request is its headers.
    requestTimeout: headersTimeout,
    connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
    maxHeaderSize: MAX_HEADER_BYTES,
  });
  server.maxHeadersCount = MAX_HEADERS_COUNT;
  // Beyond it Node closes a new connection at once ('drop'), before it costs a parser.
  server.maxConnections = config.MAX_CONNECTIONS;
  server.on('drop', () => metrics.droppedConnections.inc());
  const drain = createDrain(server, {
    propagationDelayMs: config.PROPAGATION_DELAY_SECONDS * 1000,
    deadlineMs: drainDeadlineMs({
      terminationGracePeriodSeconds: config.TERMINATION_GRACE_PERIOD_SECONDS,
      preStopSeconds: config.PRESTOP_SECONDS,
      marginSeconds: config.DRAIN_MARGIN_SECONDS,
    }),
    onPhase: metrics.setPhase,
    logger,
  });

  const work = async (url: URL, res: ServerResponse): Promise<void> => {
    const requested = url.searchParams.get('ms');
    const ms =
      requested === null
        ? sampleLatencyMs()
        : Math.min(Math.max(0, Number(requested) || 0), config.MAX_WORK_MS);
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    try {
      await sleep(ms, undefined, { signal: gone.signal });
    } catch (error) {
      // Client gone (or connection cut at the deadline): nothing left to answer.
      if (gone.signal.aborted) return;
      throw error;
    }
    send(res, 200, `{"ms":${Math.round(ms * 1000) / 1000}}`, 'application/json');
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // URL.parse, not new URL: Node's parser passes on targets URL rejects (`http://[/x`, `//[`).
    const url = URL.parse(req.url ?? '/', 'http://localhost');
    const route = url && routes.has(url.pathname) ? url.pathname : 'other';
    const started = performance.now();
    res.setHeader(INSTANCE_HEADER, instance);
    metrics.inFlight.inc();
    res.once('close', () => {
      metrics.inFlight.dec();
      if (res.writableFinished) {
        const labels = { method: req.method ?? 'GET', route, status_code: String(res.statusCode) };
        const ms = performance.now() - started;
        if (recordOwn) metrics.requestDuration.observe(labels, ms / 1000);
        if (recordTwin)
          metrics.requestDurationMs.observe(
            {
              http_method: labels.method,
              http_route: route === 'other' ? '' : route,
              http_status_code: labels.status_code,
              http_scheme: 'http',
            },
            ms,
          );
        shapes.record({ method: labels.method, route, status: res.statusCode, ms });
      }
    });
    // Node would read an unread body to the end to reuse the connection: close it instead.
    const body = hasBody(req);
    if (body) res.setHeader('Connection', 'close');
    if (url === null) return send(res, 400, 'bad request target\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    if (body) return send(res, 413, 'no route takes a request body\n');
    switch (route) {
      case '/work':
        return work(url, res);
      case '/healthz':
        return send(res, 200, 'ok\n');
      case '/readyz':
        return drain.draining ? send(res, 503, 'draining\n') : send(res, 200, 'ready\n');
      case '/metrics':
        // A failed collection rejects: guardHandler answers 500 and logs it.
        return send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
      default:
        return send(res, 404, 'not found\n');
    }
  };
  server.on('request', guardHandler(handle, logger));

  return { server, drain, metrics, flushMetrics: () => shapes.shutdown() };
}
