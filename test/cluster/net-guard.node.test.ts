// A cluster without a real node keeps kwok pod and Service traffic on this machine: its own nft
// table drops what the default route would carry, the table of a killed run goes at the next
// start, and stop() or a failed start removes it. Runs alone (the real-node project): with the
// real node's guard installed, that one would drop the packets first.
import { execFileSync, spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { describe, expect, test } from 'vitest';
import { LocalCluster } from './cluster.ts';
import { guardTable, netGuardOwner, nftTables, sh } from './node/host.ts';
import { ComponentError } from './processes.ts';

/** A TCP connect bounded by timeoutMs; resolves with how it ended. */
function tryConnect(host: string, port: number, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const done = (how: string) => {
      socket.destroy();
      resolve(how);
    };
    socket.once('connect', () => done('connected'));
    socket.once('timeout', () => done('timeout'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

/** Packets the guard's drop rule counted. */
async function dropped(table: string): Promise<number> {
  const out = await sh('nft', ['list', 'table', 'inet', table]);
  const packets = /counter packets (\d+) bytes \d+ drop/.exec(out)?.[1];
  if (packets === undefined) throw new Error(`no drop counter in:\n${out}`);
  return Number(packets);
}

/** This process's guard tables. */
async function ownGuards(): Promise<string[]> {
  return (await nftTables()).filter((t) => netGuardOwner(t) === process.pid);
}

describe('cluster without a real node', () => {
  test('guards kwok pod and Service addresses while it runs, and removes a dead run’s guard', async () => {
    expect(await nftTables()).not.toContain(`inet ${guardTable}`);
    // A killed run's table (owner dead) and one whose owner lives (PID 1).
    const deadPid = spawnSync('true').pid;
    const stale = `gso_net_guard_${deadPid}_1`;
    const live = 'gso_net_guard_1_0';
    for (const t of [stale, live]) await sh('nft', ['add', 'table', 'inet', t]);
    const cluster = await LocalCluster.start({ nodes: 1, progress: () => {} });
    try {
      const tables = await nftTables();
      expect(tables).not.toContain(`inet ${stale}`);
      expect(tables).toContain(`inet ${live}`);
      const [guard] = await ownGuards();
      expect(guard).toMatch(/^inet gso_net_guard_\d+_\d+$/);
      const table = (guard as string).split(' ')[1] as string;

      const before = await dropped(table);
      for (const [ip, port] of [
        ['10.244.0.7', 8080],
        ['10.0.0.10', 80],
      ] as const) {
        const route = await sh('ip', ['route', 'get', ip]);
        const t0 = Date.now();
        const result = await tryConnect(ip, port);
        const ms = Date.now() - t0;
        console.log(`${ip}:${port} (route: ${route.trim()}): ${result} after ${ms} ms`);
        expect(result).not.toBe('connected');
        expect(ms).toBeLessThan(2000);
      }
      const after = await dropped(table);
      console.log(`drop counter of ${table}: ${before} -> ${after}`);
      expect(after).toBeGreaterThanOrEqual(before + 2);
    } finally {
      await cluster.stop();
      await sh('nft', ['delete', 'table', 'inet', live]);
    }
    expect(await ownGuards()).toEqual([]);
  });

  test('a failed start removes its guard', async () => {
    // The failed start's health checks may connect to the squatter: cut them to close it.
    const sockets = new Set<Socket>();
    const squatter = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const address = squatter.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    try {
      // kube-apiserver cannot listen; etcd is up by then, and so is the guard.
      let tablesWhileStarting = '';
      const err = await LocalCluster.start({
        nodes: 1,
        ports: { apiserver: address.port },
        progress: (line) => {
          if (line.includes('etcd ready'))
            tablesWhileStarting = execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
        },
        readyTimeoutMs: 30_000,
      }).then(
        async (c) => {
          await c.stop();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ComponentError);
      expect((err as ComponentError).component).toBe('kube-apiserver');
      expect(tablesWhileStarting).toMatch(new RegExp(`table inet gso_net_guard_${process.pid}_\\d+`));
      // The failed start keeps its logs for people; not needed here.
      await rm(dirname(dirname((err as ComponentError).logPath)), { recursive: true, force: true });
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
    expect(await ownGuards()).toEqual([]);
  });
});
