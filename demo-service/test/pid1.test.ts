/**
 * demo-service as PID 1, as in its container (node is the entrypoint, no init): run in a fresh
 * PID namespace with unshare(1). As PID 1 the kernel drops signals that have no handler, so a
 * server without one ignores SIGTERM (the control case); demo-service must drain and exit 0.
 * Needs util-linux's unshare and the right to make a PID namespace (root, as `npm test` runs on
 * the project's machines): without them these tests fail, saying which is missing, never skip.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { afterEach, describe, expect, test } from 'vitest';
import { freePort } from '../../test/cluster/processes.ts';

/** Why this machine cannot run a process as PID 1 of a new PID namespace, or undefined if it can. */
function whyNoPidNamespace(): string | undefined {
  const probe = spawnSync('unshare', ['--pid', '--fork', 'true'], { encoding: 'utf8' });
  if (probe.error)
    return `unshare(1) could not be run (${probe.error.message}): install util-linux so that unshare is on PATH`;
  if (probe.status !== 0)
    return `\`unshare --pid --fork true\` failed (exit ${probe.status}: ${probe.stderr.trim() || 'no message'}): making a PID namespace needs root (CAP_SYS_ADMIN); run the tests as root`;
  return undefined;
}

let pidNamespaceChecked = false;
/** Fails the test (each one: none is skipped) when this machine cannot make a PID namespace. */
function requirePidNamespace(): void {
  if (pidNamespaceChecked) return;
  const missing = whyNoPidNamespace();
  if (missing) throw new Error(`demo-service as PID 1 cannot be tested here: ${missing}`);
  pidNamespaceChecked = true;
}

const started: ChildProcess[] = [];

afterEach(() => {
  for (const child of started.splice(0)) {
    // --kill-child: SIGKILL to unshare takes its child (our PID 1) down with it.
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  }
});

/** The host PID of the process whose parent is `parentPid`. */
function childOf(parentPid: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parentPid) return Number(entry);
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}

function status(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

async function startAsPid1(
  script: string,
): Promise<{ unshare: ChildProcess; nodePid: number; exited: Promise<number | null> }> {
  requirePidNamespace();
  const port = await freePort();
  const unshare = spawn('unshare', ['--pid', '--fork', '--kill-child', process.execPath, script], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  started.push(unshare);
  const exited = new Promise<number | null>((resolve) => unshare.once('exit', (code) => resolve(code)));
  for (let i = 0; i < 200 && (await status(port)) !== 200; i++) await new Promise((r) => setTimeout(r, 50));
  const nodePid = childOf(unshare.pid as number);
  if (!nodePid) throw new Error('no PID 1 process found');
  return { unshare, nodePid, exited };
}

describe('as PID 1', () => {
  test('a server without a SIGTERM handler ignores SIGTERM (control)', async () => {
    const { nodePid, exited } = await startAsPid1('test/drain/servers/bare.ts');
    process.kill(nodePid, 'SIGTERM');
    const outcome = await Promise.race([
      exited,
      new Promise((r) => setTimeout(() => r('still running'), 1000)),
    ]);
    expect(outcome).toBe('still running');
  });

  test('demo-service drains on SIGTERM and exits 0', async () => {
    const { nodePid, exited } = await startAsPid1('demo-service/src/main.ts');
    process.kill(nodePid, 'SIGTERM');
    expect(await exited).toBe(0);
  });
});
