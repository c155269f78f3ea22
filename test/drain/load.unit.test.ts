import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import {
  keepAliveAgent,
  type LedgerEntry,
  loadStoppedEarly,
  sendLogged,
  summarizeLedger,
  unknownInstance,
} from './load.ts';
import { EndpointProxy } from './proxy.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

describe('loadStoppedEarly', () => {
  test('a load still sending when the rollout ended covers it', () => {
    const end = { what: 'the rollout ended', at: 5000 };
    expect(loadStoppedEarly({ stoppedBy: 'stop', stoppedAt: 6000, sent: 600 }, end)).toBeUndefined();
    // Ran out during the cooldown, after the rollout: the rollout was covered.
    expect(loadStoppedEarly({ stoppedBy: 'maxRequests', stoppedAt: 5500, sent: 550 }, end)).toBeUndefined();
  });

  test('a load that ran out before the rollout ended is named, with its bound and the times', () => {
    const end = { what: 'the rollout ended', at: 5000 };
    expect(loadStoppedEarly({ stoppedBy: 'maxRequests', stoppedAt: 2000, sent: 200 }, end)).toBe(
      'load stopped by its request bound (200 sent) at 2.0 s, before the rollout ended at 5.0 s: ' +
        'requests from then on were never sent, so its loss count does not cover the rest',
    );
    expect(loadStoppedEarly({ stoppedBy: 'maxDuration', stoppedAt: 3000, sent: 300 }, end)).toContain(
      'load stopped by its time bound at 3.0 s, before the rollout ended at 5.0 s',
    );
  });

  test('without an end time, only stopping by the until condition covers it', () => {
    const end = { what: 'the rollout finished' };
    expect(loadStoppedEarly({ stoppedBy: 'until', stoppedAt: 9000, sent: 900 }, end)).toBeUndefined();
    expect(loadStoppedEarly({ stoppedBy: 'maxDuration', stoppedAt: 9000, sent: 900 }, end)).toContain(
      'before the rollout finished',
    );
    expect(loadStoppedEarly({ stoppedBy: 'stop', stoppedAt: 9000, sent: 900 }, end)).toContain('stop()');
  });
});

describe('summarizeLedger', () => {
  test('counts, kinds, latency of answered requests and per-instance figures', () => {
    const entries: LedgerEntry[] = [
      { id: 0, sentAt: 0, endedAt: 10, status: 200, backend: 'a' },
      { id: 1, sentAt: 0, endedAt: 30, status: 200, backend: 'b' },
      { id: 2, sentAt: 0, endedAt: 5, error: 'ECONNRESET (reused socket)', backend: 'a' },
      { id: 3, sentAt: 0, endedAt: 5, status: 503 },
      { id: 4, sentAt: 0, endedAt: 1, error: 'ECONNREFUSED' },
    ];
    expect(summarizeLedger(entries)).toEqual({
      sent: 5,
      answered: 2,
      lost: 3,
      lostByKind: { 'ECONNRESET (reused socket)': 1, 'HTTP 503': 1, ECONNREFUSED: 1 },
      p50Ms: 10,
      p99Ms: 30,
      maxMs: 30,
      byInstance: {
        a: { answered: 1, lost: 1 },
        b: { answered: 1, lost: 0 },
        [unknownInstance]: { answered: 0, lost: 2 },
      },
    });
  });
});

describe('instance attribution', () => {
  test('through the proxy, each request is charged to the backend its connection was routed to when made', async () => {
    // Each backend records the request ids it served.
    const served = new Map<string, string>();
    const backend = async (name: string) =>
      listen(
        createServer((req, res) => {
          served.set(new URL(req.url ?? '/', 'http://x').searchParams.get('id') ?? '', name);
          res.end();
        }),
      );
    const proxy = new EndpointProxy({ propagationDelayMs: 0 });
    cleanups.push(() => proxy.close());
    const port = await proxy.listen();
    proxy.addBackend('a', await backend('a'));
    proxy.addBackend('b', await backend('b'));
    proxy.addBackend('c', await backend('c'));

    const clock = () => performance.now();
    const agent = keepAliveAgent(6);
    cleanups.push(() => agent.destroy());
    // Concurrent requests on a keep-alive pool: several connections, each reused.
    const entries: LedgerEntry[] = Array.from({ length: 60 }, (_, id) => ({ id, sentAt: clock() }));
    await Promise.all(
      entries.map((entry) =>
        sendLogged(entry, {
          host: '127.0.0.1',
          port,
          path: `/?id=${entry.id}`,
          agent,
          timeoutMs: 2000,
          clock,
          identifyConnection: ({ localPort, since }) => proxy.backendOfConnection(localPort, since),
        }),
      ),
    );
    for (const entry of entries) expect(entry.backend).toBe(served.get(String(entry.id)));
    expect(new Set(entries.map((e) => e.backend))).toEqual(new Set(['a', 'b', 'c']));
  });
});
