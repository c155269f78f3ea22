/**
 * Drain for any node:http (or https) server: stop taking work without losing any.
 *
 * Sequence once `drain()` is called (see docs/design/drain.md for the why):
 * 1. `propagating`: readiness should now fail (check `controller.draining`); the server keeps
 *    accepting for `propagationDelayMs`, because load balancers keep sending new connections
 *    until they have seen the endpoint go away. Every response written from now on carries
 *    `Connection: close`, so each keep-alive connection retires itself after its next response.
 * 2. `draining`: the listener closes (no new connections). Idle keep-alive sockets are NOT cut:
 *    they expire on the keep-alive timeout the client was told in `Keep-Alive: timeout=N`, which
 *    honouring clients (Node's agent, undici) act on first, so no request races a server close.
 *    In-flight requests finish and their connections close behind them.
 * 3. `drained` once no connection is left, or `forced` at the deadline: remaining connections are
 *    destroyed, those with a request still running are counted as forced closes.
 *
 * Create the controller before the server starts listening so that every connection is tracked.
 * On a node:https server requests arrive on the TLS socket of 'secureConnection', not on the TCP
 * socket of 'connection': requests are counted per TLS socket there.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';

/** Exit code for a forced drain, as timeout(1) uses for "timed out"; a clean drain exits 0. */
export const FORCED_EXIT_CODE = 124;

/** Phases in order; the number is what `http_server_drain_phase` exports. */
export const drainPhases = { serving: 0, propagating: 1, draining: 2, drained: 3, forced: 4 } as const;
export type DrainPhase = keyof typeof drainPhases;

export interface DrainResult {
  outcome: 'drained' | 'forced';
  /** From `drain()` to the last connection gone (or to the deadline when forced). */
  durationMs: number;
  /** Connections destroyed at the deadline while a request on them was still running. */
  forcedCloses: number;
  /**
   * Connections destroyed at the deadline with no request running: idle keep-alive ones, and ones
   * whose client never finished sending a request (no response lost with them).
   */
  idleClosesAtDeadline: number;
}

/** Minimal logger shape; a pino logger fits. */
export interface DrainLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface DrainOptions {
  /** Time to keep accepting after drain starts, for endpoint removal to propagate. 0 when a preStop sleep covers it. */
  propagationDelayMs?: number;
  /** Hard limit from drain start; remaining connections are destroyed then. */
  deadlineMs: number;
  onPhase?: (phase: DrainPhase) => void;
  logger?: DrainLogger;
}

export interface DrainController {
  readonly phase: DrainPhase;
  /** True from the moment `drain()` is called: answer readiness with 503 from then on. */
  readonly draining: boolean;
  /** Requests received and not yet answered (or aborted). */
  readonly inFlight: number;
  /** Connections with a request running: those a deadline would cut (forced closes). */
  readonly activeConnections: number;
  /** Starts the drain; idempotent, every call returns the same result. */
  drain(reason?: string): Promise<DrainResult>;
}

/** Deadline after SIGTERM: the grace countdown starts before preStop runs, so subtract it and a margin. */
export function drainDeadlineMs(input: {
  terminationGracePeriodSeconds: number;
  preStopSeconds?: number;
  marginSeconds: number;
}): number {
  const seconds = input.terminationGracePeriodSeconds - (input.preStopSeconds ?? 0) - input.marginSeconds;
  // Never 0: a deadline of 0 would cut every in-flight request at once.
  return Math.max(0.5, seconds) * 1000;
}

export function createDrain(server: Server, options: DrainOptions): DrainController {
  // Every TCP connection, until it closes: what the drain waits for and the deadline destroys.
  const connections = new Set<Socket>();
  // Requests running per connection, keyed by the socket requests arrive on (`req.socket`): the
  // TCP socket for http, the TLS socket for https. A TCP connection still in its TLS handshake
  // has no entry yet.
  const activeRequests = new Map<Socket, number>();
  const pendingResponses = new Set<ServerResponse>();
  let phase: DrainPhase = 'serving';
  let inFlight = 0;
  let result: Promise<DrainResult> | undefined;

  const setPhase = (next: DrainPhase): void => {
    phase = next;
    options.onPhase?.(next);
  };

  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket) => {
    activeRequests.set(socket, 0);
    socket.once('close', () => activeRequests.delete(socket));
  });
  const addActive = (socket: Socket, delta: number): void => {
    const count = activeRequests.get(socket);
    if (count !== undefined) activeRequests.set(socket, count + delta);
  };

  // prependListener: runs before the application's handler writes anything.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    inFlight += 1;
    const socket = req.socket;
    addActive(socket, 1);
    pendingResponses.add(res);
    if (phase !== 'serving') res.setHeader('Connection', 'close');
    res.once('close', () => {
      inFlight -= 1;
      addActive(socket, -1);
      pendingResponses.delete(res);
    });
  });

  const run = async (reason: string): Promise<DrainResult> => {
    const startedAt = performance.now();
    const log = options.logger;
    setPhase('propagating');
    // Responses whose handler started before the drain but has not written headers yet.
    for (const res of pendingResponses) {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    }
    log?.info(
      {
        reason,
        inFlight,
        connections: connections.size,
        propagationDelayMs: options.propagationDelayMs ?? 0,
      },
      'drain started',
    );

    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      deadlineTimer = setTimeout(() => resolve('deadline'), options.deadlineMs);
    });

    let finished = false;
    const afterPropagation = async (): Promise<'drained'> => {
      if (options.propagationDelayMs) {
        // unref: the listener keeps the process alive meanwhile; a forced exit need not wait for it.
        await new Promise((r) => setTimeout(r, options.propagationDelayMs).unref());
      }
      if (finished) return 'drained';
      setPhase('draining');
      log?.info({ inFlight, connections: connections.size }, 'listener closed, waiting for connections');
      // net.Server#close, not http.Server#close: the latter also closes idle keep-alive sockets
      // at once, which races with clients reusing them (ECONNRESET). Its callback fires once the
      // last connection is gone.
      await new Promise<void>((resolve) => {
        if (!server.listening) {
          if (connections.size === 0) return resolve();
          const check = (): void => {
            if (connections.size === 0) resolve();
            else setTimeout(check, 50).unref();
          };
          return check();
        }
        NetServer.prototype.close.call(server, () => resolve());
      });
      return 'drained';
    };

    const outcome = await Promise.race([afterPropagation(), deadline]);
    finished = true;
    clearTimeout(deadlineTimer);
    let forcedCloses = 0;
    let idleClosesAtDeadline = 0;
    if (outcome === 'deadline') {
      for (const [socket, active] of activeRequests) {
        if (active > 0) forcedCloses += 1;
        else idleClosesAtDeadline += 1;
        socket.destroy();
      }
      // Destroying a TLS socket destroys its TCP socket at once: what is left was mid-handshake.
      for (const socket of connections) {
        if (socket.destroyed) continue;
        idleClosesAtDeadline += 1;
        socket.destroy();
      }
      if (server.listening) server.close();
    }
    // Only cut requests make a drain forced; idle sockets closed at the deadline lose nothing.
    const final: DrainResult = {
      outcome: forcedCloses > 0 ? 'forced' : 'drained',
      durationMs: Math.round(performance.now() - startedAt),
      forcedCloses,
      idleClosesAtDeadline,
    };
    setPhase(final.outcome);
    if (final.outcome === 'forced') log?.warn({ ...final }, 'drain forced at deadline');
    else log?.info({ ...final }, 'drain finished');
    return final;
  };

  return {
    get phase() {
      return phase;
    },
    get draining() {
      return phase !== 'serving';
    },
    get inFlight() {
      return inFlight;
    },
    get activeConnections() {
      let count = 0;
      for (const active of activeRequests.values()) if (active > 0) count += 1;
      return count;
    },
    drain(reason = 'requested') {
      result ??= run(reason);
      return result;
    },
  };
}
