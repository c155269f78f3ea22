import { Agent, createServer, request, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { freePort } from '../cluster/processes.ts';
import { EndpointProxy } from './proxy.ts';

/** A backend answering with its own name. */
async function backend(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end(name));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

function get(port: number, agent: Agent | false): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('EndpointProxy', () => {
  test('a terminated backend gets new connections during the lag only, and keeps its established ones', async () => {
    const a = await backend('a');
    const b = await backend('b');
    const proxy = new EndpointProxy({ propagationDelayMs: 300 });
    cleanups.push(
      () => proxy.close(),
      () => {
        a.server.closeAllConnections();
        a.server.close();
        b.server.closeAllConnections();
        b.server.close();
      },
    );
    const port = await proxy.listen();
    proxy.addBackend('a', a.port);
    proxy.addBackend('b', b.port);

    // Round-robin over new connections.
    const first = await Promise.all([get(port, false), get(port, false), get(port, false), get(port, false)]);
    expect(first.sort()).toEqual(['a', 'a', 'b', 'b']);

    // A keep-alive connection pinned to "a" (round-robin: one of two fresh connections lands there).
    let pinned = new Agent({ keepAlive: true, maxSockets: 1 });
    while ((await get(port, pinned)) !== 'a') {
      pinned.destroy();
      pinned = new Agent({ keepAlive: true, maxSockets: 1 });
    }

    proxy.terminate('a');
    const during = await Promise.all([
      get(port, false),
      get(port, false),
      get(port, false),
      get(port, false),
    ]);
    expect(during).toContain('a');
    await new Promise((r) => setTimeout(r, 400));
    const after = await Promise.all([get(port, false), get(port, false), get(port, false), get(port, false)]);
    expect(after).toEqual(['b', 'b', 'b', 'b']);
    expect(await get(port, pinned)).toBe('a');
    pinned.destroy();
  });

  test('a connection to a backend that is gone is reset, as a DNAT to a dead pod', async () => {
    const a = await backend('a');
    a.server.close();
    const proxy = new EndpointProxy({ propagationDelayMs: 1000 });
    cleanups.push(() => proxy.close());
    const port = await proxy.listen();
    proxy.addBackend('a', a.port);
    await expect(get(port, false)).rejects.toMatchObject({ code: 'ECONNRESET' });
  });
});

describe('EndpointProxy connection attribution', () => {
  /** A TCP backend that writes its name on every connection. */
  async function namedTcp(name: string): Promise<number> {
    const server = createTcpServer((socket) => {
      socket.on('error', () => {});
      socket.write(name);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return (server.address() as AddressInfo).port;
  }

  /** A connection from a fixed local port; resolves with the socket once connected. */
  function connectFrom(port: number, localPort: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, localPort });
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    });
  }

  const firstData = (socket: Socket): Promise<string> =>
    new Promise((resolve) => socket.once('data', (chunk: Buffer) => resolve(chunk.toString())));

  /** Closed with a reset, so that no TIME_WAIT keeps the local port from being used again. */
  const reset = (socket: Socket): Promise<void> =>
    new Promise((resolve) => {
      socket.once('close', () => resolve());
      socket.resetAndDestroy();
    });

  test('connections from the same local port, one after the other, each get the backend they reached', async () => {
    const proxy = new EndpointProxy({ propagationDelayMs: 0 });
    cleanups.push(() => proxy.close());
    const port = await proxy.listen();
    proxy.addBackend('a', await namedTcp('a'));
    proxy.addBackend('b', await namedTcp('b'));
    const localPort = await freePort();

    // A first connection whose client never asks: it must not be handed to a later one.
    const unasked = await connectFrom(port, localPort);
    const unaskedReached = await firstData(unasked);
    await reset(unasked);

    const reached: string[] = [];
    const attributed: (string | undefined)[] = [];
    for (let round = 0; round < 4; round++) {
      const since = performance.now();
      const socket = await connectFrom(port, localPort);
      attributed.push(await proxy.backendOfConnection(localPort, since));
      reached.push(await firstData(socket));
      await reset(socket);
    }
    expect(attributed).toEqual(reached);
    // Round-robin: the same port went to both backends, so a lookup by port after the fact
    // would have charged every request to whichever came last.
    expect(new Set(reached)).toEqual(new Set(['a', 'b']));
    expect(reached[0]).not.toBe(unaskedReached);
  });

  test('a client that asks before the proxy has accepted its connection gets the answer once it has', async () => {
    const proxy = new EndpointProxy({ propagationDelayMs: 0 });
    cleanups.push(() => proxy.close());
    const port = await proxy.listen();
    proxy.addBackend('a', await namedTcp('a'));
    const localPort = await freePort();
    const answer = proxy.backendOfConnection(localPort, performance.now());
    const socket = await connectFrom(port, localPort);
    expect(await answer).toBe('a');
    await reset(socket);
    // Nobody connects: the question times out instead of hanging.
    expect(await proxy.backendOfConnection(localPort, performance.now(), 50)).toBeUndefined();
  });
});
