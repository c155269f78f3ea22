import { type DestinationStream, type LevelWithSilentOrString, type Logger, pino } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** pino level name; `silent` turns logging off (tests). */
  level?: LevelWithSilentOrString;
  /** Where JSON lines go; stdout when absent. */
  destination?: DestinationStream;
  /** Fields on every line, e.g. the replica's identity. */
  base?: Record<string, unknown>;
}

/** JSON lines to stdout, ISO timestamps, errors serialised under `err`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      base: options.base ?? null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Synchronous writes to stdout (pino's default): nothing is lost when the process exits.
    options.destination,
  );
}

/** A logger for one controller: every line carries `controller`. */
export function controllerLogger(logger: Logger, controller: string): Logger {
  return logger.child({ controller });
}

/** Discards everything; for tests and for callers that pass no logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
