import { Agent, createServer, request, type Server } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { type AddressInfo, connect } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { generatePki, type PemPair } from '../../test/cluster/pki.ts';
import { createDrain, type DrainController, type DrainPhase, drainDeadlineMs } from './drain.ts';
import { destroyRawClients, rawClient, until } from './test-support.ts';

interface Answer {
  status?: number;
  connection?: string;
  error?: string;
}

function get(port: number, path: string, agent: Agent | false): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }));
    req.end();
  });
}

const servers: Server[] = [];
afterEach(() => {
  destroyRawClients();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/** A server whose /slow?ms=N answers after N ms, /fast at once. */
async function start(
  options: { propagationDelayMs?: number; deadlineMs?: number; keepAliveTimeoutMs?: number } = {},
) {
  const server = createServer({ keepAliveTimeout: options.keepAliveTimeoutMs ?? 2000 }, (req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    const timer = setTimeout(() => res.end('done'), ms);
    res.once('close', () => clearTimeout(timer));
  });
  servers.push(server);
  const phases: DrainPhase[] = [];
  const drain: DrainController = createDrain(server, {
    propagationDelayMs: options.propagationDelayMs ?? 0,
    deadlineMs: options.deadlineMs ?? 10_000,
    onPhase: (phase) => phases.push(phase),
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, drain, phases, port: (server.address() as AddressInfo).port };
}

describe('createDrain', () => {
  test('readiness flag, phases and Connection: close on every response written after the drain starts', async () => {
    const { drain, phases, port } = await start({ propagationDelayMs: 300 });
    const agent = new Agent({ keepAlive: true, timeout: 5000 });
    expect((await get(port, '/?ms=0', agent)).connection).toBe('keep-alive');
    // Started before the drain, answered after it: still told to close.
    const before = get(port, '/?ms=150', agent);
    await until(() => drain.inFlight === 1, 'the request is in flight');
    const result = drain.drain('test');
    expect(drain.draining).toBe(true);
    const during = await get(port, '/?ms=0', agent);
    expect(await before).toEqual({ status: 200, connection: 'close' });
    expect(during).toEqual({ status: 200, connection: 'close' });
    expect((await result).outcome).toBe('drained');
    expect(phases).toEqual(['propagating', 'draining', 'drained']);
    expect(drain.inFlight).toBe(0);
    agent.destroy();
  });

  test('requests sent on pooled keep-alive sockets in the same tick as the drain all succeed (no ECONNRESET race)', async () => {
    // keepAliveTimeout 2 s: Node's agent retires its idle sockets 1 s before the hinted timeout.
    const { drain, port } = await start({ keepAliveTimeoutMs: 2000 });
    const agent = new Agent({ keepAlive: true, maxSockets: 50, timeout: 5000 });
    const warm = await Promise.all(Array.from({ length: 50 }, () => get(port, '/?ms=20', agent)));
    expect(warm.every((a) => a.status === 200)).toBe(true);
    expect(Object.values(agent.freeSockets).flat().length).toBe(50);

    const result = drain.drain('test');
    const answers = await Promise.all(Array.from({ length: 50 }, () => get(port, '/?ms=0', agent)));
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(answers.every((a) => a.connection === 'close')).toBe(true);
    // No new connections once the listener is closed.
    expect((await get(port, '/', false)).error).toBe('ECONNREFUSED');
    expect(await result).toMatchObject({ outcome: 'drained', forcedCloses: 0 });
    agent.destroy();
  });

  test('an idle keep-alive socket is left to the client instead of being cut', async () => {
    const { server, drain, port } = await start({ keepAliveTimeoutMs: 2000 });
    // 'end' on the server's side of the socket means the client sent FIN: the client closed it.
    let clientClosedIt = false;
    server.on('connection', (socket) => socket.once('end', () => (clientClosedIt = true)));
    const agent = new Agent({ keepAlive: true, timeout: 5000 });
    await get(port, '/', agent);
    expect(await drain.drain('test')).toMatchObject({ outcome: 'drained', idleClosesAtDeadline: 0 });
    expect(clientClosedIt).toBe(true);
    agent.destroy();
  });

  test('at the deadline the running request is cut and counted as a forced close', async () => {
    const { drain, phases, port } = await start({ deadlineMs: 300 });
    const long = get(port, '/?ms=10000', false);
    await until(() => drain.inFlight === 1, 'the long request is in flight');
    expect(drain.activeConnections).toBe(1);
    const result = await drain.drain('test');
    expect(result).toMatchObject({ outcome: 'forced', forcedCloses: 1 });
    expect((await long).error).toBe('ECONNRESET');
    expect(phases.at(-1)).toBe('forced');
    // Idempotent: a second signal gets the same result.
    expect(await drain.drain('again')).toBe(result);
  });

  test('idle and slow clients are cut at the deadline without making it forced; a request in flight completes', async () => {
    // Node's default 60 s header timeout and a 60 s keep-alive: only the deadline bounds these clients.
    const { server, drain, port } = await start({ deadlineMs: 1500, keepAliveTimeoutMs: 60_000 });
    let accepted = 0;
    server.on('connection', () => (accepted += 1));
    const idle = await rawClient(port, 'GET /?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => idle.received.endsWith('done'), 'the idle client got its answer');
    const slow = await rawClient(port, 'GET /?ms=0 HTTP/1.1\r\nHost: x\r\n');
    const silent = await rawClient(port);
    const running = get(port, '/?ms=100', false);
    await until(() => accepted === 4 && drain.inFlight === 1, 'all four connections are accepted');
    const result = await drain.drain('test');
    expect(await running).toMatchObject({ status: 200, connection: 'close' });
    expect(result).toMatchObject({ outcome: 'drained', forcedCloses: 0, idleClosesAtDeadline: 3 });
    await Promise.all([idle.closed(), slow.closed(), silent.closed()]);
    // Nothing was answered to the clients that never finished a request.
    expect(slow.received + silent.received).toBe('');
  });

  test('an idle socket still open at the deadline is closed without making the drain forced', async () => {
    const { drain, port } = await start({ deadlineMs: 300, keepAliveTimeoutMs: 60_000 });
    const agent = new Agent({ keepAlive: true, timeout: 120_000 });
    await get(port, '/', agent);
    expect(await drain.drain('test')).toMatchObject({
      outcome: 'drained',
      forcedCloses: 0,
      idleClosesAtDeadline: 1,
    });
    agent.destroy();
  });
});

describe('createDrain on a node:https server', () => {
  // HTTP requests arrive on the TLS socket ('secureConnection'), not on the TCP socket of 'connection'.
  let pki: { ca: PemPair; apiserver: PemPair } | undefined;
  async function startHttps(deadlineMs: number) {
    pki ??= await generatePki([]);
    const server = createHttpsServer({ ...pki.apiserver, keepAliveTimeout: 2000 }, (req, res) => {
      const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
      const timer = setTimeout(() => res.end('done'), ms);
      res.once('close', () => clearTimeout(timer));
    });
    servers.push(server);
    const drain = createDrain(server, { propagationDelayMs: 0, deadlineMs });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const ca = pki.ca.cert;
    /** GET over TLS on a connection of its own; resolves with the answer and when it ended. */
    const get = (path: string): Promise<Answer & { endedAt: number }> =>
      new Promise((resolve) => {
        const req = httpsRequest({ host: '127.0.0.1', port, path, ca, agent: false }, (res) => {
          res.resume();
          res.on('end', () =>
            resolve({
              status: res.statusCode,
              connection: res.headers.connection,
              endedAt: performance.now(),
            }),
          );
        });
        req.on('error', (error: NodeJS.ErrnoException) =>
          resolve({ error: error.code ?? error.message, endedAt: performance.now() }),
        );
        req.end();
      });
    return { drain, get, port };
  }

  test('a request in flight on a TLS socket is counted, completes, and the drain waits for it', async () => {
    const { drain, get } = await startHttps(10_000);
    const inFlight = get('/?ms=300');
    await until(() => drain.inFlight === 1, 'the request is in flight');
    // Negative control: the request is seen on its connection, so the drain has something to wait for.
    expect(drain.activeConnections).toBe(1);
    const drained = drain.drain('test').then((result) => ({ ...result, endedAt: performance.now() }));
    const answer = await inFlight;
    expect(answer).toMatchObject({ status: 200, connection: 'close' });
    const result = await drained;
    expect(result).toMatchObject({ outcome: 'drained', forcedCloses: 0, idleClosesAtDeadline: 0 });
    expect(result.endedAt).toBeGreaterThanOrEqual(answer.endedAt);
    expect(result.durationMs).toBeGreaterThanOrEqual(200);
    expect(drain.inFlight).toBe(0);
    expect(drain.activeConnections).toBe(0);
  });

  test('at the deadline a request running on a TLS socket is cut and counted as forced, not idle', async () => {
    const { drain, get } = await startHttps(300);
    const long = get('/?ms=10000');
    await until(() => drain.inFlight === 1, 'the long request is in flight');
    expect(await drain.drain('test')).toMatchObject({
      outcome: 'forced',
      forcedCloses: 1,
      idleClosesAtDeadline: 0,
    });
    expect((await long).error).toBeDefined();
  });

  test('a TCP connection still in its TLS handshake at the deadline is closed as idle', async () => {
    const { drain, port } = await startHttps(300);
    const raw = connect({ host: '127.0.0.1', port });
    const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.on('error', () => {});
    await new Promise<void>((resolve) => raw.once('connect', () => resolve()));
    expect(await drain.drain('test')).toMatchObject({
      outcome: 'drained',
      forcedCloses: 0,
      idleClosesAtDeadline: 1,
    });
    await closed;
  });
});

describe('drainDeadlineMs', () => {
  test('grace period minus preStop minus margin, never below half a second', () => {
    expect(drainDeadlineMs({ terminationGracePeriodSeconds: 30, marginSeconds: 2 })).toBe(28_000);
    expect(drainDeadlineMs({ terminationGracePeriodSeconds: 30, preStopSeconds: 5, marginSeconds: 2 })).toBe(
      23_000,
    );
    expect(drainDeadlineMs({ terminationGracePeriodSeconds: 5, preStopSeconds: 5, marginSeconds: 2 })).toBe(
      500,
    );
  });
});
