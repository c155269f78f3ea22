/**
 * runUrlLoad against local servers on 127.0.0.1: a healthy one, one that resets connections
 * (negative control), and one that models a server closing idle sockets at its advertised
 * keep-alive timeout, which only a client ignoring the hint runs into. A few dozen requests each.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { unknownInstance } from './load.ts';
import { runUrlLoad, type UrlLoadOptions } from './url-load.ts';

const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/** A server on 127.0.0.1 whose connections are named i0, i1, ... in `x-instance`, as pods behind a Service. */
async function serve(
  handle: (req: IncomingMessage, res: ServerResponse, connection: number) => void,
  keepAliveTimeoutMs = 5000,
): Promise<string> {
  const connectionIds = new WeakMap<Socket, number>();
  let connections = 0;
  const server = createServer({ keepAliveTimeout: keepAliveTimeoutMs }, (req, res) => {
    const connection = connectionIds.get(req.socket) ?? -1;
    res.setHeader('x-instance', `i${connection % 2}`);
    handle(req, res, connection);
  });
  server.on('connection', (socket) => connectionIds.set(socket, connections++));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/work?x=1`;
}

const base = {
  rps: 200,
  connections: 4,
  keepAliveMode: 'respect',
  maxRequests: 40,
  maxDurationMs: 5000,
  timeoutMs: 2000,
} satisfies Partial<UrlLoadOptions>;

describe('runUrlLoad', () => {
  test('a healthy server: every request answered, charged to the instance that answered, stopped by its count bound', async () => {
    const paths: string[] = [];
    const url = await serve((req, res) => {
      paths.push(req.url ?? '');
      res.end('ok');
    });
    const before = Date.now();
    const report = await runUrlLoad({ ...base, url }).done;
    expect(report).toMatchObject({ url, sent: 40, answered: 40, lost: 0, lostByKind: {} });
    expect(report.stoppedBy).toBe('maxRequests');
    // No until given: the bounds are the intended end.
    expect(report.stoppedEarly).toBeUndefined();
    expect(paths.every((p) => p === '/work?x=1')).toBe(true);
    const instances = Object.keys(report.byInstance);
    expect(instances.every((name) => /^i[01]$/.test(name))).toBe(true);
    expect(Object.values(report.byInstance).reduce((sum, i) => sum + i.answered, 0)).toBe(40);
    expect(report.p50Ms).toBeGreaterThanOrEqual(0);
    expect(report.p99Ms).toBeGreaterThanOrEqual(report.p50Ms ?? 0);
    expect(report.startedAt).toBeGreaterThanOrEqual(before);
    expect(report.endedAt).toBeGreaterThanOrEqual(report.startedAt);
    // Open loop at 200/s: 40 requests take about 200 ms to send.
    expect(report.stoppedAfterMs).toBeGreaterThan(150);
  });

  test('it stops on its until condition, a promise or a function, and then covers it', async () => {
    const url = await serve((_req, res) => res.end('ok'));
    const reached = new Promise<void>((resolve) => setTimeout(resolve, 150));
    const byPromise = await runUrlLoad({ ...base, url, rps: 100, maxRequests: 1000, until: reached }).done;
    expect(byPromise).toMatchObject({ stoppedBy: 'until', lost: 0 });
    expect(byPromise.stoppedEarly).toBeUndefined();
    expect(byPromise.sent).toBeGreaterThan(5);
    expect(byPromise.sent).toBeLessThan(40);

    const stopAt = performance.now() + 150;
    const byFunction = await runUrlLoad({
      ...base,
      url,
      rps: 100,
      maxRequests: 1000,
      until: () => performance.now() >= stopAt,
    }).done;
    expect(byFunction).toMatchObject({ stoppedBy: 'until', lost: 0 });
    expect(byFunction.stoppedEarly).toBeUndefined();
  });

  test('a load that runs out before its until condition says so: the rollout rule', async () => {
    const url = await serve((_req, res) => res.end('ok'));
    const never = new Promise<void>(() => {});
    const byCount = await runUrlLoad({ ...base, url, maxRequests: 10, until: never }).done;
    expect(byCount.stoppedBy).toBe('maxRequests');
    expect(byCount.lost).toBe(0);
    expect(byCount.stoppedEarly).toMatch(
      /^load stopped by its request bound \(10 sent\) at .* before its until/,
    );

    const byTime = await runUrlLoad({ ...base, url, maxRequests: 1000, maxDurationMs: 100, until: never })
      .done;
    expect(byTime.stoppedBy).toBe('maxDuration');
    expect(byTime.stoppedEarly).toMatch(/^load stopped by its time bound/);

    const stopped = runUrlLoad({ ...base, url, maxRequests: 1000, until: never });
    await new Promise((r) => setTimeout(r, 50));
    const report = await stopped.stop();
    expect(report.stoppedBy).toBe('stop');
    expect(report.stoppedEarly).toMatch(/^load stopped by stop\(\)/);
    expect(await stopped.done).toBe(report);
  });

  test('negative control: a server that resets connections shows lost requests, with their kind', async () => {
    let requests = 0;
    const url = await serve((req, res) => {
      requests += 1;
      if (requests % 4 === 0) req.socket.resetAndDestroy();
      else res.end('ok');
    });
    const report = await runUrlLoad({ ...base, url }).done;
    expect(report.sent).toBe(40);
    expect(report.lost).toBeGreaterThan(0);
    expect(report.answered + report.lost).toBe(40);
    expect(Object.keys(report.lostByKind).some((kind) => kind.startsWith('ECONNRESET'))).toBe(true);
    // A reset connection had answered before (requests 1-3 of every 4): its loss is charged to its instance.
    const charged = Object.entries(report.byInstance).filter(([name]) => name !== unknownInstance);
    expect(charged.reduce((sum, [, i]) => sum + i.lost, 0)).toBeGreaterThan(0);
  });

  test('bad options are refused with the option named', () => {
    expect(() => runUrlLoad({ ...base, url: 'https://127.0.0.1/' })).toThrow(/url must be http:\/\//);
    expect(() => runUrlLoad({ ...base, url: 'not a url' })).toThrow(/url is not a URL: "not a url"/);
    expect(() => runUrlLoad({ ...base, url: 'http://127.0.0.1/', rps: 0 })).toThrow(/rps wants a number > 0/);
    expect(() =>
      runUrlLoad({ ...base, url: 'http://127.0.0.1/', keepAliveMode: 'sometimes' as 'respect' }),
    ).toThrow(/keepAliveMode wants respect or ignore/);
  });
});

describe('keep-alive modes', () => {
  // The server advertises `Keep-Alive: timeout=2` and counts a connection idle for 2 s as closed
  // by itself. On loopback its FIN would reach the client at once; over a network it can cross
  // the client's next request, which is then reset: modelled here by resetting any request that
  // arrives on a connection idle for 2 s or more.
  async function closesIdleAtItsTimeout(): Promise<string> {
    const lastAnswer = new WeakMap<Socket, number>();
    return serve((req, res) => {
      const idleSince = lastAnswer.get(req.socket);
      if (idleSince !== undefined && performance.now() - idleSince >= 2000) {
        req.socket.resetAndDestroy();
        return;
      }
      res.on('finish', () => lastAnswer.set(req.socket, performance.now()));
      res.end('ok');
    }, 2000);
  }

  test('a client ignoring the hint reuses a socket past it and loses the request; one respecting it does not', async () => {
    const url = await closesIdleAtItsTimeout();
    // Two requests 2.5 s apart on a pool of one socket.
    const options = { ...base, url, rps: 0.4, connections: 1, maxRequests: 2 };
    const [respect, ignore] = await Promise.all([
      runUrlLoad({ ...options, keepAliveMode: 'respect' }).done,
      runUrlLoad({ ...options, keepAliveMode: 'ignore' }).done,
    ]);
    // Node's agent drops the idle socket 1 s before the hinted 2 s: the second request opens a new one.
    expect(respect).toMatchObject({ sent: 2, answered: 2, lost: 0 });
    expect(ignore).toMatchObject({ sent: 2, answered: 1, lost: 1 });
    expect(Object.keys(ignore.lostByKind)).toEqual([expect.stringMatching(/\(reused socket\)$/)]);
  });
});
