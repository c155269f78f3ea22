/**
 * demo-service entry point. Runs as PID 1 in its container (`node` is the entrypoint): Node
 * ignores SIGTERM as PID 1 unless a handler is installed, so this handler is what makes the
 * pod stop at all before SIGKILL.
 */
import { type Logger, pino } from 'pino';
import { createDemoService } from './app.ts';
import { type DemoConfig, loadConfig } from './config.ts';
import { FORCED_EXIT_CODE } from './drain.ts';
import { createGrpcDemo } from './grpc.ts';
import { formatLatencyProfile } from './latency.ts';
import { createRedisDemo } from './redis.ts';

const config = loadConfig();
const logger = pino({ level: config.LOG_LEVEL, base: { service: 'demo-service', pid: process.pid } });
if (config.DEMO_PROTOCOL !== 'http') {
  await serveOther(config, logger);
} else {
  serveHttp(config, logger);
}

/** gRPC or Redis protocol (the operator's probe-choice fixtures): serve until SIGTERM, then stop. */
async function serveOther(config: DemoConfig, logger: Logger): Promise<void> {
  const stopAfterMs = Math.max(
    0,
    (config.TERMINATION_GRACE_PERIOD_SECONDS - config.DRAIN_MARGIN_SECONDS) * 1000,
  );
  let stop: () => Promise<string>;
  if (config.DEMO_PROTOCOL === 'grpc') {
    const demo = createGrpcDemo();
    const port = await demo.listen(config.PORT, config.HOST);
    logger.info({ protocol: 'grpc', port }, 'listening');
    stop = () => demo.drain(stopAfterMs);
  } else {
    const server = createRedisDemo();
    await new Promise<void>((resolve) => server.listen(config.PORT, config.HOST, resolve));
    logger.info({ protocol: 'redis', address: server.address() }, 'listening');
    stop = () =>
      new Promise((resolve) => {
        server.close(() => resolve('clean'));
        setTimeout(() => resolve('forced'), stopAfterMs).unref();
      });
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, protocol: config.DEMO_PROTOCOL }, 'shutdown signal received');
    void stop().then((outcome) => {
      logger.info({ outcome }, 'stopped');
      logger.flush();
      process.exit(outcome === 'forced' ? FORCED_EXIT_CODE : 0);
    });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function serveHttp(config: DemoConfig, logger: Logger): void {
  const { server, drain, metrics, flushMetrics } = createDemoService(config, logger);

  server.on('error', (error: NodeJS.ErrnoException) => {
    // accept(2) failing loses that connection, not the server. Out of file descriptors, libuv
    // accepts and closes the connection itself without reporting it (checked under ulimit -n 25);
    // what still comes here is rarer (ENOBUFS, ENOMEM).
    if (error.syscall === 'accept') {
      logger.error({ err: error }, 'accepting a connection failed');
      return;
    }
    logger.fatal({ err: error }, 'server error');
    process.exit(1);
  });

  server.listen(config.PORT, config.HOST, () => {
    const address = server.address();
    logger.info(
      {
        address,
        latency: formatLatencyProfile(config.latency),
        propagationDelaySeconds: config.PROPAGATION_DELAY_SECONDS,
        terminationGracePeriodSeconds: config.TERMINATION_GRACE_PERIOD_SECONDS,
        preStopSeconds: config.PRESTOP_SECONDS,
        keepAliveTimeoutSeconds: config.KEEP_ALIVE_TIMEOUT_SECONDS,
        headersTimeoutSeconds: config.HEADERS_TIMEOUT_SECONDS,
        maxConnections: config.MAX_CONNECTIONS,
      },
      'listening',
    );
  });

  const onSignal = (signal: NodeJS.Signals): void => {
    if (drain.draining) {
      logger.info({ signal }, 'signal received while already draining');
      return;
    }
    logger.info({ signal, inFlight: drain.inFlight }, 'shutdown signal received');
    drain.drain(signal).then(async (result) => {
      metrics.recordDrain(result);
      if (result.outcome === 'forced') {
        logger.flush();
        process.exit(FORCED_EXIT_CODE);
      }
      // The requests of the last export interval, for a pushing shape: at most 2 s, so an
      // unreachable receiver does not hold the exit toward the kubelet's SIGKILL.
      await Promise.race([
        flushMetrics().catch((err: unknown) => logger.warn({ err }, 'pushing the last metrics failed')),
        new Promise((resolve) => setTimeout(resolve, 2000).unref()),
      ]);
      // No process.exit on a clean drain: the loop empties by itself once the server is closed,
      // so nothing (logs included) is cut. The unref'd timer only fires if something leaks.
      process.exitCode = 0;
      setTimeout(() => {
        logger.warn('event loop still busy after a clean drain; exiting anyway');
        process.exit(0);
      }, 1000).unref();
    });
  };

  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
