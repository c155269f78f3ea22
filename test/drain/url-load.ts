/**
 * Open-loop load with a ledger against any http:// URL, e.g. a Kubernetes Service's ClusterIP
 * while `kubectl rollout restart` runs. Bounded in requests and in time: it stops by itself.
 * The instance behind each request comes from the response header the service sets
 * (demo-service: `x-instance`, its pod name); a request lost on a connection is charged to the
 * instance that answered on that connection before, else to `(unknown)`.
 *
 *   const restarted = restartAndWait();  // resolves when the rollout has finished
 *   const load = runUrlLoad({ url: 'http://10.96.0.20/work', rps: 50, connections: 8,
 *     keepAliveMode: 'ignore', maxRequests: 6000, maxDurationMs: 120_000, until: restarted,
 *     timeoutMs: 10_000 });
 *   const report = await load.done;
 *   // report.stoppedEarly is set when the load ran out (count or time) before the rollout finished.
 */
import { INSTANCE_HEADER } from '../../demo-service/src/app.ts';
import {
  type KeepAliveMode,
  keepAliveModes,
  type LedgerEntry,
  type LedgerSummary,
  type LoadStopReason,
  loadStoppedEarly,
  OpenLoopLoad,
  summarizeLedger,
} from './load.ts';

export interface UrlLoadOptions {
  /** An http:// URL: host (name or IP), port, path and query. */
  url: string;
  /** Requests per second, open loop. */
  rps: number;
  /** Keep-alive sockets in the client pool. */
  connections: number;
  keepAliveMode: KeepAliveMode;
  /** Sending stops after this many requests... */
  maxRequests: number;
  /** ...or this long after the start... */
  maxDurationMs: number;
  /** ...or once this settles, or returns true (polled every 5 ms): what the load is meant to last for. */
  until?: Promise<unknown> | (() => boolean);
  /** Per request; a request without an answer by then is lost as `timeout`. */
  timeoutMs: number;
  /** Response header naming the instance; default demo-service's. */
  instanceHeader?: string;
}

export interface UrlLoadReport extends LedgerSummary {
  url: string;
  keepAliveMode: KeepAliveMode;
  /** Wall clock (ms since the epoch) at the start and once the last request ended. */
  startedAt: number;
  endedAt: number;
  stoppedBy: LoadStopReason;
  /** ms after the start when sending stopped. */
  stoppedAfterMs: number;
  /**
   * Set when an `until` was given and the load stopped before it came (its own bound, or stop()):
   * then its loss count does not cover the whole of what it was meant to measure.
   */
  stoppedEarly?: string;
  /** Every request; times in ms after the start. */
  ledger: LedgerEntry[];
}

export interface UrlLoad {
  /** Resolves once sending has stopped (until, maxRequests, maxDuration or stop()) and every request has ended. */
  readonly done: Promise<UrlLoadReport>;
  /** Stops sending now (stoppedBy `stop` unless it has already stopped) and resolves like `done`. */
  stop(): Promise<UrlLoadReport>;
}

function positive(name: string, value: number, integer = false): void {
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
    throw new RangeError(`runUrlLoad: ${name} wants a ${integer ? 'whole ' : ''}number > 0, got ${value}`);
}

export function runUrlLoad(options: UrlLoadOptions): UrlLoad {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError(`runUrlLoad: url is not a URL: "${options.url}"`);
  }
  if (url.protocol !== 'http:') throw new TypeError(`runUrlLoad: url must be http://, got "${options.url}"`);
  if (!keepAliveModes.includes(options.keepAliveMode))
    throw new TypeError(
      `runUrlLoad: keepAliveMode wants ${keepAliveModes.join(' or ')}, got "${options.keepAliveMode}"`,
    );
  positive('rps', options.rps);
  positive('connections', options.connections, true);
  positive('maxRequests', options.maxRequests, true);
  positive('maxDurationMs', options.maxDurationMs);
  positive('timeoutMs', options.timeoutMs);

  const t0 = performance.now();
  const startedAt = Date.now();
  const load = new OpenLoopLoad({
    // URL keeps IPv6 literals in brackets; a socket address has none.
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(url.port || 80),
    path: `${url.pathname}${url.search}`,
    clock: () => performance.now() - t0,
    ratePerSecond: options.rps,
    maxSockets: options.connections,
    keepAliveMode: options.keepAliveMode,
    maxRequests: options.maxRequests,
    maxDurationMs: options.maxDurationMs,
    until: options.until,
    timeoutMs: options.timeoutMs,
    instanceHeader: options.instanceHeader ?? INSTANCE_HEADER,
  });
  load.start();

  const done = load.finished.then((): UrlLoadReport => {
    const end = load.end;
    if (!end) throw new Error('runUrlLoad: the load finished without a stop reason (a bug in OpenLoopLoad)');
    return {
      url: options.url,
      keepAliveMode: options.keepAliveMode,
      ...summarizeLedger(load.ledger),
      startedAt,
      endedAt: Date.now(),
      stoppedBy: end.stoppedBy,
      stoppedAfterMs: end.stoppedAt,
      // Without `until`, the bounds are the intended end.
      stoppedEarly: options.until ? loadStoppedEarly(end, { what: 'its until condition' }) : undefined,
      ledger: load.ledger,
    };
  });
  return {
    done,
    stop: async () => {
      await load.stop();
      return done;
    },
  };
}
