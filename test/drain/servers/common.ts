/**
 * The request handler every comparison server shares, so that only shutdown handling differs:
 * GET /work[?ms=N] with demo-service's latency profiles (env LATENCY_PROFILE), /healthz and
 * /readyz answering 200. Servers listen on $PORT at $HOST (127.0.0.1 unless told otherwise).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLatencySampler, parseLatencyProfile } from '../../../demo-service/src/latency.ts';

export const port = Number(process.env.PORT ?? 8080);
export const host = process.env.HOST ?? '127.0.0.1';
/** Seconds to keep accepting after SIGTERM, given to each library's own delay setting. */
export const propagationDelayMs = Number(process.env.PROPAGATION_DELAY_SECONDS ?? 0) * 1000;
/** Grace for in-flight work after the delay, given to each library's own timeout setting. */
export const drainTimeoutMs = Number(process.env.DRAIN_TIMEOUT_SECONDS ?? 20) * 1000;

const sampleLatencyMs = createLatencySampler(parseLatencyProfile(process.env.LATENCY_PROFILE ?? 'fixed:0'));

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

export function handleRequest(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/work') {
    const requested = url.searchParams.get('ms');
    const ms = requested === null ? sampleLatencyMs() : Number(requested) || 0;
    const timer = setTimeout(() => send(res, 200, `{"ms":${Math.round(ms)}}`), ms);
    res.once('close', () => clearTimeout(timer));
    return;
  }
  if (url.pathname === '/healthz' || url.pathname === '/readyz') send(res, 200, 'ok\n');
  else send(res, 404, 'not found\n');
}
