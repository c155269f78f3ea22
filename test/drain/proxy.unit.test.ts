import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
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
