/**
 * @godaddy/terminus as its README suggests for Kubernetes: a readiness check that fails once
 * shutting down, beforeShutdown waiting for endpoint propagation, `timeout` for in-flight work.
 */
import { createServer } from 'node:http';
import { createTerminus } from '@godaddy/terminus';
import { drainTimeoutMs, handleRequest, host, port, propagationDelayMs } from './common.ts';

const server = createServer(handleRequest);
createTerminus(server, {
  signals: ['SIGTERM', 'SIGINT'],
  healthChecks: { '/readyz': async () => 'ok', '/healthz': async () => 'ok' },
  beforeShutdown: () => new Promise((resolve) => setTimeout(resolve, propagationDelayMs)),
  timeout: drainTimeoutMs,
  // Without it terminus re-raises the signal, which Node ignores as PID 1.
  useExit0: true,
});
server.listen(port, host);
