/**
 * demo-service HTTP routes on a plain node:http server:
 *   GET /work[?ms=N]  answers after a latency drawn from the profile (or exactly N ms)
 *   GET /healthz      liveness: 200 even while draining, or the kubelet restarts us mid-drain
 *   GET /readyz       readiness: 503 from the first shutdown signal on
 *   GET /metrics      Prometheus text format
 * Every response carries `X-Instance: <hostname>` (the pod name in Kubernetes), so a client
 * behind a Service can tell which instance answered.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { DemoConfig } from './config.ts';
import { createDrain, type DrainController, drainDeadlineMs } from './drain.ts';
import { createLatencySampler } from './latency.ts';
import { createMetrics, type DemoMetrics } from './metrics.ts';

export interface DemoService {
  server: Server;
  drain: DrainController;
  metrics: DemoMetrics;
}

const routes = new Set(['/work', '/healthz', '/readyz', '/metrics']);

/** Response header naming the instance that answered. */
export const INSTANCE_HEADER = 'x-instance';

function send(res: ServerResponse, status: number, body: string, contentType = 'text/plain'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

export function createDemoService(config: DemoConfig, logger: Logger): DemoService {
  const metrics = createMetrics();
  const instance = hostname();
  const sampleLatencyMs = createLatencySampler(config.latency);
  const server = createServer({
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_SECONDS * 1000,
    // Must exceed keepAliveTimeout, or a slow first request on a reused socket times out first.
    headersTimeout: Math.max(60, config.KEEP_ALIVE_TIMEOUT_SECONDS + 5) * 1000,
  });
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

  const work = (url: URL, res: ServerResponse): void => {
    const requested = url.searchParams.get('ms');
    const ms =
      requested === null
        ? sampleLatencyMs()
        : Math.min(Math.max(0, Number(requested) || 0), config.MAX_WORK_MS);
    const timer = setTimeout(
      () => send(res, 200, `{"ms":${Math.round(ms * 1000) / 1000}}`, 'application/json'),
      ms,
    );
    // Client gone (or connection cut at the deadline): nothing left to answer.
    res.once('close', () => clearTimeout(timer));
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = routes.has(url.pathname) ? url.pathname : 'other';
    const started = performance.now();
    res.setHeader(INSTANCE_HEADER, instance);
    metrics.inFlight.inc();
    res.once('close', () => {
      metrics.inFlight.dec();
      if (res.writableFinished) {
        metrics.requestDuration.observe(
          { method: req.method ?? 'GET', route, status_code: String(res.statusCode) },
          (performance.now() - started) / 1000,
        );
      }
    });
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    switch (route) {
      case '/work':
        return work(url, res);
      case '/healthz':
        return send(res, 200, 'ok\n');
      case '/readyz':
        return drain.draining ? send(res, 503, 'draining\n') : send(res, 200, 'ready\n');
      case '/metrics':
        metrics.registry.metrics().then(
          (text) => send(res, 200, text, metrics.registry.contentType),
          (error: unknown) => {
            logger.error({ err: error }, 'metrics collection failed');
            send(res, 500, 'metrics failed\n');
          },
        );
        return;
      default:
        return send(res, 404, 'not found\n');
    }
  });

  return { server, drain, metrics };
}
