/**
 * http-terminator as its README shows, plus the propagation wait before terminate() a
 * Kubernetes user has to add by hand (the library has no such setting).
 */
import { createServer } from 'node:http';
import { createHttpTerminator } from 'http-terminator';
import { drainTimeoutMs, handleRequest, host, port, propagationDelayMs } from './common.ts';

const server = createServer(handleRequest);
const terminator = createHttpTerminator({ server, gracefulTerminationTimeout: drainTimeoutMs });
server.listen(port, host);
let stopping = false;
process.on('SIGTERM', async () => {
  if (stopping) return;
  stopping = true;
  await new Promise((resolve) => setTimeout(resolve, propagationDelayMs));
  await terminator.terminate();
});
