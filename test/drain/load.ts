/**
 * Load with a per-request ledger: every request sent is one entry that ends answered (with its
 * status) or failed (with an error kind). No retries, so every failure is visible.
 *
 * Each entry names the instance that served it. Behind the harness's proxy the instance of a
 * connection is asked for once, when the connection is made (`identifyConnection`), and every
 * request on that connection inherits it; behind a real Service the response header that names
 * the instance (`instanceHeader`) does it, and a request lost on a connection inherits the
 * instance that answered on that connection before.
 */

import { Agent, type IncomingHttpHeaders, request } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface LedgerEntry {
  id: number;
  /** ms on the harness clock */
  sentAt: number;
  endedAt?: number;
  status?: number;
  /** ECONNRESET, ECONNREFUSED, socket hang up, timeout, ... ; reused socket noted. */
  error?: string;
  /** The instance that served it (see the module comment); undefined when nothing could tell. */
  backend?: string;
  /** Sent straight to an instance, bypassing the proxy (long requests). */
  direct?: boolean;
}

export const isLost = (entry: LedgerEntry): boolean =>
  entry.error !== undefined || entry.status === undefined || entry.status < 200 || entry.status >= 300;

/** How a lost request failed: its error, or its non-2xx status. */
const lostKind = (entry: LedgerEntry): string => entry.error ?? `HTTP ${entry.status}`;

/**
 * How the client pool treats the server's `Keep-Alive: timeout=N` hint: `respect` drops an idle
 * socket before N, as Node's agent and undici do; `ignore` keeps it for its own idle time and
 * reuses it past N, as many other clients and proxies do.
 */
export type KeepAliveMode = 'respect' | 'ignore';
export const keepAliveModes: readonly KeepAliveMode[] = ['respect', 'ignore'];

/** How long an `ignore` client keeps an idle socket: a common proxy idle timeout (nginx, ALB). */
const ignoringClientIdleMs = 60_000;

/**
 * Names the instance a new client connection reached, asked once per connection as soon as it is
 * established. `since` (performance.now()) was taken after the connection's socket was created:
 * a connection the proxy accepted before then is an earlier one, even from the same local port.
 */
export type IdentifyConnection = (connection: {
  localPort: number;
  since: number;
}) => Promise<string | undefined>;

/** The instance of each client connection, set once per connection. */
const instanceOfConnection = new WeakMap<Socket, Promise<string | undefined>>();

export interface SendOptions {
  host: string;
  port: number;
  path: string;
  agent: Agent | false;
  timeoutMs: number;
  clock: () => number;
  identifyConnection?: IdentifyConnection;
  /** Response header naming the instance that answered, e.g. demo-service's `x-instance`. */
  instanceHeader?: string;
}

/** Sends one GET and fills `entry` in; resolves when the entry is complete, never rejects. */
export function sendLogged(entry: LedgerEntry, options: SendOptions): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    let socket: Socket | undefined;
    const finish = (fields: Partial<LedgerEntry>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      Object.assign(entry, fields, { endedAt: options.clock() });
      const connection = (socket && instanceOfConnection.get(socket)) ?? Promise.resolve(undefined);
      void connection.then((instance) => {
        entry.backend ??= instance;
        resolve();
      });
    };
    const req = request(
      { host: options.host, port: options.port, path: options.path, agent: options.agent },
      (res) => {
        const named = options.instanceHeader && headerValue(res.headers, options.instanceHeader);
        if (named) {
          entry.backend ??= named;
          if (socket && !instanceOfConnection.has(socket))
            instanceOfConnection.set(socket, Promise.resolve(named));
        }
        res.on('data', () => {});
        res.on('end', () => finish({ status: res.statusCode }));
        res.on('error', (error) => finish({ error: errorKind(error, req.reusedSocket) }));
      },
    );
    req.on('socket', (s) => {
      socket = s;
      const identify = options.identifyConnection;
      if (identify && !instanceOfConnection.has(s)) {
        instanceOfConnection.set(s, identifyWhenConnected(s, identify, performance.now()));
      }
    });
    req.on('error', (error) => finish({ error: errorKind(error, req.reusedSocket) }));
    const timer = setTimeout(() => {
      finish({ error: 'timeout' });
      req.destroy();
    }, options.timeoutMs);
    req.end();
  });
}

/** Asks `identify` once the socket is connected; undefined if it closes first or the answer fails. */
function identifyWhenConnected(
  socket: Socket,
  identify: IdentifyConnection,
  since: number,
): Promise<string | undefined> {
  return new Promise<string | undefined>((resolve) => {
    const ask = (): void => {
      socket.off('close', gone);
      const { localPort } = socket;
      if (localPort === undefined) resolve(undefined);
      else identify({ localPort, since }).then(resolve, () => resolve(undefined));
    };
    const gone = (): void => {
      socket.off('connect', ask);
      resolve(undefined);
    };
    if (socket.connecting) {
      socket.once('connect', ask);
      socket.once('close', gone);
    } else ask();
  });
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

function errorKind(error: Error & { code?: string }, reusedSocket: boolean): string {
  const kind = error.message === 'socket hang up' ? 'socket hang up' : (error.code ?? error.message);
  return reusedSocket ? `${kind} (reused socket)` : kind;
}

/** An agent that keeps idle sockets for its own idle time, whatever the server's Keep-Alive hint says. */
class HintIgnoringAgent extends Agent {
  // Node's own keepSocketAlive shortens the idle timeout to the hint minus a second, or refuses to
  // keep the socket when the hint is 1 s or less; this one does neither.
  override keepSocketAlive(duplex: Duplex): boolean {
    const socket = duplex as Socket;
    socket.setKeepAlive(true, 1000);
    socket.unref();
    socket.setTimeout(ignoringClientIdleMs);
    return true;
  }
}

/** A keep-alive client pool like a Node service's: LIFO, and the given treatment of the Keep-Alive hint. */
export function keepAliveAgent(maxSockets: number, mode: KeepAliveMode = 'respect'): Agent {
  if (mode === 'ignore') {
    return new HintIgnoringAgent({
      keepAlive: true,
      maxSockets,
      scheduling: 'lifo',
      timeout: ignoringClientIdleMs,
    });
  }
  // `timeout` must be set: Node's agent only applies the server's hint when it is shorter than this.
  return new Agent({ keepAlive: true, maxSockets, scheduling: 'lifo', timeout: 5000 });
}

/**
 * Why an open-loop load stopped sending: `until` (its condition came), `stop` (stop() was
 * called), or one of its own bounds.
 */
export type LoadStopReason = 'until' | 'stop' | 'maxRequests' | 'maxDuration';

export interface LoadEnd {
  stoppedBy: LoadStopReason;
  /** When sending stopped, on the load's clock. */
  stoppedAt: number;
  sent: number;
}

export interface OpenLoopOptions extends Omit<SendOptions, 'agent'> {
  ratePerSecond: number;
  maxSockets: number;
  /** Default `respect`. */
  keepAliveMode?: KeepAliveMode;
  maxRequests: number;
  /** Sending stops this long after start(). */
  maxDurationMs?: number;
  /** Sending stops once this settles (resolved or rejected), or once this returns true (polled every 5 ms). */
  until?: Promise<unknown> | (() => boolean);
}

/**
 * Open-loop load: requests go out at a fixed rate whatever the answers do, as from many
 * independent users; a slow or dying server cannot slow the sender down and hide losses. Request
 * i goes out at i / rate after start(). Bounded by `maxRequests` and `maxDurationMs`.
 */
export class OpenLoopLoad {
  readonly ledger: LedgerEntry[] = [];
  /** Resolves once sending has stopped, for whatever reason, and every request sent has ended. */
  readonly finished: Promise<void>;
  private readonly options: OpenLoopOptions;
  private readonly agent: Agent;
  private readonly pending = new Set<Promise<void>>();
  private ticker: NodeJS.Timeout | undefined;
  private stopped: LoadEnd | undefined;
  private markFinished: () => void = () => {};

  constructor(options: OpenLoopOptions) {
    this.options = options;
    this.agent = keepAliveAgent(options.maxSockets, options.keepAliveMode);
    this.finished = new Promise((resolve) => {
      this.markFinished = resolve;
    });
  }

  /** Why and when sending stopped; undefined while the load is still sending. */
  get end(): LoadEnd | undefined {
    return this.stopped;
  }

  start(): void {
    const { clock, ratePerSecond, maxRequests, maxDurationMs, until } = this.options;
    const startedAt = clock();
    if (until instanceof Promise) {
      const reached = (): void => this.stopSending('until');
      until.then(reached, reached);
    }
    const tick = (): void => {
      const elapsed = clock() - startedAt;
      if (typeof until === 'function' && until()) this.stopSending('until');
      else if (maxDurationMs !== undefined && elapsed >= maxDurationMs) this.stopSending('maxDuration');
      else {
        const due = ratePerSecond > 0 ? Math.floor((elapsed * ratePerSecond) / 1000) + 1 : 0;
        while (this.ledger.length < Math.min(due, maxRequests)) this.sendOne();
        if (this.ledger.length >= maxRequests) this.stopSending('maxRequests');
      }
    };
    this.ticker = setInterval(tick, 5);
    tick();
  }

  /** Stops sending (if it has not stopped by itself) and waits for every request still out to end. */
  async stop(): Promise<void> {
    this.stopSending('stop');
    await this.finished;
  }

  private stopSending(reason: LoadStopReason): void {
    if (this.stopped) return;
    clearInterval(this.ticker);
    this.stopped = { stoppedBy: reason, stoppedAt: this.options.clock(), sent: this.ledger.length };
    // Each request is bounded by its timeout.
    void Promise.all(this.pending).then(() => {
      this.agent.destroy();
      this.markFinished();
    });
  }

  private sendOne(): void {
    const entry: LedgerEntry = { id: this.ledger.length, sentAt: this.options.clock() };
    this.ledger.push(entry);
    const sent = sendLogged(entry, { ...this.options, agent: this.agent });
    this.pending.add(sent);
    void sent.then(() => this.pending.delete(sent));
  }
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * The rule that keeps "0 lost" honest: a load that stopped sending before the end of what it
 * measures (a rollout) only vouches for part of it. `end.at` is when that end came, on the load's
 * clock; without it, the end is the load's `until` condition. Returns why the load falls short,
 * or undefined when it was still sending at the end.
 */
export function loadStoppedEarly(load: LoadEnd, end: { what: string; at?: number }): string | undefined {
  const covered = end.at === undefined ? load.stoppedBy === 'until' : load.stoppedAt >= end.at;
  if (covered) return undefined;
  const why = {
    until: 'its until condition',
    stop: 'stop()',
    maxRequests: `its request bound (${load.sent} sent)`,
    maxDuration: 'its time bound',
  }[load.stoppedBy];
  const before = end.at === undefined ? end.what : `${end.what} at ${seconds(end.at)}`;
  return (
    `load stopped by ${why} at ${seconds(load.stoppedAt)}, before ${before}: ` +
    'requests from then on were never sent, so its loss count does not cover the rest'
  );
}

/** Entries whose instance is not known are counted under this name. */
export const unknownInstance = '(unknown)';

export interface LedgerSummary {
  sent: number;
  /** Answered 2xx. */
  answered: number;
  lost: number;
  lostByKind: Record<string, number>;
  /** Latency of answered requests. */
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  byInstance: Record<string, { answered: number; lost: number }>;
}

export function summarizeLedger(entries: readonly LedgerEntry[]): LedgerSummary {
  const lostByKind: Record<string, number> = {};
  const byInstance: LedgerSummary['byInstance'] = {};
  const durations: number[] = [];
  let lost = 0;
  for (const entry of entries) {
    const name = entry.backend ?? unknownInstance;
    const instance = byInstance[name] ?? { answered: 0, lost: 0 };
    byInstance[name] = instance;
    if (isLost(entry)) {
      lost += 1;
      instance.lost += 1;
      const kind = lostKind(entry);
      lostByKind[kind] = (lostByKind[kind] ?? 0) + 1;
    } else {
      instance.answered += 1;
      if (entry.endedAt !== undefined) durations.push(entry.endedAt - entry.sentAt);
    }
  }
  return {
    sent: entries.length,
    answered: entries.length - lost,
    lost,
    lostByKind,
    p50Ms: percentile(durations, 0.5),
    p99Ms: percentile(durations, 0.99),
    maxMs: durations.length ? Math.max(...durations) : undefined,
    byInstance,
  };
}

/** Closed-loop load for throughput: `concurrency` workers, each sending its next request on an answer. */
export async function closedLoopThroughput(options: {
  host: string;
  port: number;
  path: string;
  concurrency: number;
  durationMs: number;
}): Promise<{ requests: number; failed: number; perSecond: number }> {
  const agent = keepAliveAgent(options.concurrency);
  const clock = () => performance.now();
  const startedAt = clock();
  const stopAt = startedAt + options.durationMs;
  let requests = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (clock() < stopAt) {
      const entry: LedgerEntry = { id: requests, sentAt: clock() };
      await sendLogged(entry, { ...options, agent, timeoutMs: 10_000, clock });
      requests += 1;
      if (isLost(entry)) failed += 1;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const elapsed = clock() - startedAt;
  agent.destroy();
  return { requests, failed, perSecond: (requests * 1000) / elapsed };
}

/** Nearest-rank percentile, q in [0, 1]. */
export function percentile(values: readonly number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}
