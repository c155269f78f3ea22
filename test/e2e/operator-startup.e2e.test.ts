// `npm start` as a person runs it outside the cluster: with its kubeconfig split over two files
// in KUBECONFIG (merged as kubectl merges them) it starts; with no kubeconfig, or an apiserver
// that does not answer, it says so in one line and exits 1, without a stack trace.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { serviceAccountKubeconfig } from '../cluster/cluster.ts';
import { freePort } from '../cluster/processes.ts';
import { adminKubeConfig as harnessAdmin } from '../operator/harness.ts';
import {
  installOperatorPrerequisites,
  OPERATOR_NAMESPACE,
  OPERATOR_SERVICE_ACCOUNT,
  repoRoot,
} from '../operator/install.ts';
import { clusterInfo } from './support.ts';

const main = join(repoRoot, 'operator', 'src', 'main.ts');
/** Off the shared cluster's toes: no webhook, loopback ports of their own, a Lease of its own. */
const QUIET = ['--webhook=false', '--probe-address', '127.0.0.1:0', '--metrics-address', '127.0.0.1:0'];

let dir: string;
const children: ChildProcess[] = [];

/** Runs the operator until it exits or `until` matches its output (then stops it by its PID). */
function operator(
  args: string[],
  env: NodeJS.ProcessEnv,
  until?: RegExp,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [main, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  return new Promise((resolve) => {
    const check = () => {
      if (until?.test(stdout)) child.kill('SIGTERM');
    };
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
      check();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  const cluster = clusterInfo();
  await installOperatorPrerequisites(cluster.kubectl, cluster.kubeconfig);
  dir = await mkdtemp(join(tmpdir(), 'gso-startup-'));
  const whole = parse(
    await readFile(
      await serviceAccountKubeconfig(
        harnessAdmin(cluster),
        OPERATOR_NAMESPACE,
        OPERATOR_SERVICE_ACCOUNT,
        dir,
      ),
      'utf8',
    ),
  ) as Record<string, unknown>;
  // Two files as people keep them: the clusters and contexts in one, the credentials in another.
  const { users, ...rest } = whole;
  await writeFile(join(dir, 'clusters.yaml'), stringify(rest));
  await writeFile(join(dir, 'users.yaml'), stringify({ apiVersion: 'v1', kind: 'Config', users }));
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the operator started by hand', () => {
  test('with its kubeconfig split over two files in KUBECONFIG, it passes its checks and starts', async () => {
    const { HOME, PATH } = process.env;
    const run = await operator(
      [...QUIET, '--lease-name', 'gso-startup-test'],
      {
        HOME,
        PATH,
        KUBECONFIG: `${join(dir, 'clusters.yaml')}:${join(dir, 'missing.yaml')}:${join(dir, 'users.yaml')}`,
      },
      /"msg":"starting"/,
    );
    const starting = run.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; server?: string; user?: string })
      .find((l) => l.msg === 'starting');
    // The server from the first file, the credentials from the third: merged as kubectl would.
    expect(starting, run.stdout + run.stderr).toMatchObject({
      server: expect.stringMatching(/^v1\.\d+/),
      user: `system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_SERVICE_ACCOUNT}`,
    });
    expect(run.stderr).not.toMatch(/^error:/m);
  });

  test('with no kubeconfig at all: one line, exit 1', async () => {
    const run = await operator(QUIET, { HOME: dir, PATH: process.env.PATH });
    expect(run).toMatchObject({
      code: 1,
      stdout: '',
      stderr:
        'error: no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account\n',
    });
  });

  test('with an apiserver that does not answer: one line naming the URL and the cause, exit 1', async () => {
    const closed = await freePort(); // nothing listens there: the connection is refused
    const clusters = parse(await readFile(join(dir, 'clusters.yaml'), 'utf8')) as {
      clusters: { cluster: { server: string } }[];
    };
    for (const c of clusters.clusters) c.cluster.server = `https://127.0.0.1:${closed}`;
    await writeFile(join(dir, 'unreachable.yaml'), stringify(clusters));
    const run = await operator(QUIET, {
      HOME: dir,
      PATH: process.env.PATH,
      KUBECONFIG: `${join(dir, 'unreachable.yaml')}:${join(dir, 'users.yaml')}`,
    });
    expect(run).toMatchObject({
      code: 1,
      stdout: '',
      stderr: `error: cannot reach the Kubernetes API at https://127.0.0.1:${closed}: connect ECONNREFUSED 127.0.0.1:${closed}\n`,
    });
  });
});
