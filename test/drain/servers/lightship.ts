/**
 * lightship as its README shows: probes on lightship's own port, the app server closed by a
 * shutdown handler, `shutdownDelay` for endpoint propagation. The harness polls /readyz on the
 * app port, so that route reports lightship's readiness.
 */
import { createServer } from 'node:http';
import { Server as NetServer } from 'node:net';
import { createLightship } from 'lightship';
import { drainTimeoutMs, handleRequest, host, port, propagationDelayMs } from './common.ts';

// lightship binds its probe server to 0.0.0.0 with no setting to change it; the harness keeps
// every listener on loopback, so rewrite that one address here.
const listen = NetServer.prototype.listen;
NetServer.prototype.listen = function (this: NetServer, ...args: unknown[]) {
  const [first] = args;
  if (typeof first === 'object' && first !== null && (first as { host?: string }).host === '0.0.0.0') {
    args[0] = { ...first, host: '127.0.0.1' };
  }
  return (listen as (...a: unknown[]) => NetServer).apply(this, args);
} as typeof listen;

const lightship = await createLightship({
  detectKubernetes: false,
  port: 0,
  shutdownDelay: propagationDelayMs,
  gracefulShutdownTimeout: drainTimeoutMs,
  shutdownHandlerTimeout: drainTimeoutMs,
  signals: ['SIGTERM', 'SIGINT'],
});
const server = createServer((req, res) => {
  if (req.url === '/readyz') {
    res.statusCode = lightship.isServerReady() ? 200 : 500;
    res.end();
    return;
  }
  handleRequest(req, res);
});
lightship.registerShutdownHandler(() => {
  server.close();
});
server.listen(port, host, () => lightship.signalReady());
