/**
 * Load with a per-request ledger: every request sent is one entry that ends answered (with its
 * status) or failed (with an error kind). No retries, so every failure is visible.
 */
import { Agent, request } from 'node:http';

export interface LedgerEntry {
  id: number;
  /** ms on the harness clock */
  sentAt: number;
  endedAt?: number;
  status?: number;
  /** ECONNRESET, ECONNREFUSED, socket hang up, timeout, ... ; reused socket noted. */
  error?: string;
  /** Local port of the client socket, to find the backend through the proxy. */
  localPort?: number;
  backend?: string;
  /** Sent straight to an instance, bypassing the proxy (long requests). */
  direct?: boolean;
}

export const isLost = (entry: LedgerEntry): boolean =>
  entry.error !== undefined || entry.status === undefined || entry.status < 200 || entry.status >= 300;

export interface SendOptions {
  host: string;
  port: number;
  path: string;
  agent: Agent | false;
  timeoutMs: number;
  clock: () => number;
}

/** Sends one GET and fills `entry` in; resolves when the entry is complete, never rejects. */
export function sendLogged(entry: LedgerEntry, options: SendOptions): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (fields: Partial<LedgerEntry>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      Object.assign(entry, fields, { endedAt: options.clock() });
      resolve();
    };
    const req = request(
      { host: options.host, port: options.port, path: options.path, agent: options.agent },
      (res) => {
        res.on('data', () => {});
        res.on('end', () => finish({ status: res.statusCode }));
        res.on('error', (error) => finish({ error: errorKind(error, req.reusedSocket) }));
      },
    );
    req.on('socket', (socket) => {
      const record = (): void => {
        entry.localPort = socket.localPort;
      };
      if (socket.connecting) socket.once('connect', record);
      else record();
    });
    req.on('error', (error) => finish({ error: errorKind(error, req.reusedSocket) }));
    const timer = setTimeout(() => {
      finish({ error: 'timeout' });
      req.destroy();
    }, options.timeoutMs);
    req.end();
  });
}

function errorKind(error: Error & { code?: string }, reusedSocket: boolean): string {
  const kind = error.message === 'socket hang up' ? 'socket hang up' : (error.code ?? error.message);
  return reusedSocket ? `${kind} (reused socket)` : kind;
}

/** A keep-alive client pool like a Node service's: LIFO, and it honours the server's Keep-Alive timeout hint. */
export function keepAliveAgent(maxSockets: number): Agent {
  // `timeout` must be set: Node's agent only applies the server's hint when it is shorter than this.
  return new Agent({ keepAlive: true, maxSockets, scheduling: 'lifo', timeout: 5000 });
}

export interface OpenLoopOptions extends Omit<SendOptions, 'agent'> {
  ratePerSecond: number;
  maxSockets: number;
  maxRequests: number;
}

/**
 * Open-loop load: requests go out at a fixed rate whatever the answers do, as from many
 * independent users; a slow or dying server cannot slow the sender down and hide losses.
 */
export class OpenLoopLoad {
  readonly ledger: LedgerEntry[] = [];
  private readonly options: OpenLoopOptions;
  private readonly agent: Agent;
  private readonly pending = new Set<Promise<void>>();
  private ticker: NodeJS.Timeout | undefined;

  constructor(options: OpenLoopOptions) {
    this.options = options;
    this.agent = keepAliveAgent(options.maxSockets);
  }

  start(): void {
    const startedAt = this.options.clock();
    this.ticker = setInterval(() => {
      const due = Math.floor(((this.options.clock() - startedAt) * this.options.ratePerSecond) / 1000);
      while (this.ledger.length < Math.min(due, this.options.maxRequests)) this.sendOne();
    }, 5);
  }

  /** Stops sending and waits for every request still out to end (each is bounded by its timeout). */
  async stop(): Promise<void> {
    clearInterval(this.ticker);
    await Promise.all(this.pending);
    this.agent.destroy();
  }

  private sendOne(): void {
    const entry: LedgerEntry = { id: this.ledger.length, sentAt: this.options.clock() };
    this.ledger.push(entry);
    const sent = sendLogged(entry, { ...this.options, agent: this.agent });
    this.pending.add(sent);
    void sent.then(() => this.pending.delete(sent));
  }
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
