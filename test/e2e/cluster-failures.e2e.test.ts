// Starting a control plane that cannot run fails with the component's name and log, and
// leaves no process behind.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { buildControlPlane } from '../cluster/build.ts';
import { LocalCluster } from '../cluster/cluster.ts';
import { ComponentError } from '../cluster/processes.ts';

function childPids(): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter(([, comm]) => comm !== undefined && comm !== 'ps')
      .map(([pid]) => Number(pid));
  } catch {
    return []; // ps exits 1 when there are none
  }
}

/** Work directories of the failed starts: their logs are kept for people, not for this test. */
const failedStarts: string[] = [];
afterAll(async () => {
  for (const dir of failedStarts) await rm(dir, { recursive: true, force: true });
});

let occupied: Server | undefined;
const sockets = new Set<Socket>();
afterEach(async () => {
  // Health checks of the failed start may have connected to the squatter: cut them.
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await new Promise<void>((resolve) => (occupied ? occupied.close(() => resolve()) : resolve()));
  occupied = undefined;
});

async function occupyPort(): Promise<number> {
  occupied = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => occupied?.listen(0, '127.0.0.1', resolve));
  const address = occupied.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function startFailure(ports: Parameters<typeof LocalCluster.start>[0]): Promise<ComponentError> {
  const binaries = await buildControlPlane({ progress: () => {} });
  const err = await LocalCluster.start({
    ...ports,
    binaries,
    progress: () => {},
    readyTimeoutMs: 30_000,
  }).then(
    () => {
      throw new Error('start should have failed');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ComponentError);
  failedStarts.push(dirname(dirname((err as ComponentError).logPath)));
  return err as ComponentError;
}

describe('local control plane start failures', () => {
  test('etcd on a port in use: error names etcd and its log; nothing left running', async () => {
    const before = childPids();
    const err = await startFailure({ ports: { etcdClient: await occupyPort() } });
    expect(err.component).toBe('etcd');
    expect(err.message).toContain('etcd: exited with');
    expect(err.message).toContain('a port it needs is already in use');
    expect(existsSync(err.logPath)).toBe(true);
    expect(childPids()).toEqual(before);
  });

  test('kube-apiserver exiting early: error names it and its log; etcd is stopped too', async () => {
    const before = childPids();
    const err = await startFailure({ ports: { apiserver: await occupyPort() } });
    expect(err.component).toBe('kube-apiserver');
    expect(err.message).toMatch(/kube-apiserver: exited with code \d+ before it was ready/);
    expect(err.message).toContain(`log: ${err.logPath}`);
    expect(childPids()).toEqual(before);
  });
});
