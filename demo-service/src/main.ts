/**
 * demo-service entry point. Runs as PID 1 in its container (`node` is the entrypoint): Node
 * ignores SIGTERM as PID 1 unless a handler is installed, so this handler is what makes the
 * pod stop at all before SIGKILL.
 */
import { pino } from 'pino';
import { createDemoService } from './app.ts';
import { loadConfig } from './config.ts';
import { FORCED_EXIT_CODE } from './drain.ts';
import { formatLatencyProfile } from './latency.ts';

const config = loadConfig();
const logger = pino({ level: config.LOG_LEVEL, base: { service: 'demo-service', pid: process.pid } });
const { server, drain, metrics } = createDemoService(config, logger);

server.on('error', (error) => {
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
  drain.drain(signal).then((result) => {
    metrics.recordDrain(result);
    if (result.outcome === 'forced') {
      logger.flush();
      process.exit(FORCED_EXIT_CODE);
    }
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
