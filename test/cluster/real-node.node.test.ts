// The real node's life cycle on this host: it starts beside the kwok nodes behind its guard,
// runs a pod, and leaves the host as it found it, whether stopped cleanly, by Ctrl-C, or after
// its owner was killed (the next start cleans up).
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { LocalCluster } from './cluster.ts';
import { buildImages, imageConfig, imageFiles } from './images.ts';
import { buildNode } from './node/build.ts';
import { hostNetwork, hostSnapshot, listGuard, pidsOfBinariesIn, stopPid } from './node/host.ts';
import { REAL_NODE_NAME, realNodePlacement } from './node/node.ts';
import { clusterDir } from './versions.ts';
import { waitFor } from './wait.ts';

/** Runs `npm run cluster -- --real-node` as a user would; resolves once it says it is up. */
function startCli(): { child: ChildProcess; up: Promise<string>; exit: Promise<number | null> } {
  const child = spawn(
    process.execPath,
    [join(clusterDir, 'cli.ts'), 'start', '--nodes', '1', '--real-node'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const up = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('Press Ctrl-C to stop.')) resolve(out);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`cluster CLI exited with ${code} before it was up:\n${out}`)),
    );
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, up, exit };
}

/** PIDs whose command line mentions text (the components of a cluster, by its work dir). */
async function pidsMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text)) pids.push(Number(entry));
  }
  return pids;
}

describe('images built from the Dockerfile', () => {
  test("keep its contract: node as PID 1 with the target's entry point, uid 65532, no shell", async () => {
    const node = await buildNode({ progress: () => {} });
    const images = await buildImages({ pauseBinary: node.pause, progress: () => {} });
    for (const [image, main] of [
      [images.operator, 'dist/operator/src/main.js'],
      [images.demoService, 'dist/demo-service/src/main.js'],
    ] as const) {
      const config = await imageConfig(image.archive);
      expect(config.entrypoint).toEqual(['/nodejs/bin/node', main]);
      expect(config.user).toBe('65532:65532');
      const files = await imageFiles(image.archive);
      expect(files.some((f) => /(^|\/)app\/dist\//.test(f))).toBe(true);
      expect(files.filter((f) => /(^|\/)bin\/(sh|bash|dash)$/.test(f))).toEqual([]);
      expect(files.filter((f) => /(^|\/)bin\/npm$/.test(f))).toEqual([]);
    }
    expect((await imageConfig(images.pause.archive)).entrypoint).toEqual(['/pause']);
    // The operator says what it is: OCI labels, and its build info beside the code.
    const operator = await imageConfig(images.operator.archive);
    expect(operator.labels).toMatchObject({
      'org.opencontainers.image.title': 'graceful-shutdown-operator',
      'org.opencontainers.image.licenses': 'Apache-2.0',
      'org.opencontainers.image.source':
        'https://github.com/graceful-shutdown-operator/graceful-shutdown-operator',
    });
    const operatorFiles = await imageFiles(images.operator.archive);
    expect(operatorFiles.some((f) => /(^|\/)app\/dist\/operator\/src\/build-info\.json$/.test(f))).toBe(true);
    // The OpenTelemetry SDK is demo-service's alone (its opentelemetry-otlp shape loads it).
    const sdk = /(^|\/)app\/node_modules\/@opentelemetry\/sdk-metrics\/package\.json$/;
    expect(operatorFiles.filter((f) => sdk.test(f))).toEqual([]);
    expect((await imageFiles(images.demoService.archive)).filter((f) => sdk.test(f))).toHaveLength(1);
  });
});

describe('real node', () => {
  test('runs a pod beside the kwok nodes behind the guard, and a stop leaves the host as found', async () => {
    const before = await hostSnapshot();
    const cluster = await LocalCluster.start({ nodes: 1, realNode: true, progress: () => {} });
    try {
      const guard = await listGuard();
      expect(guard).toContain(`iifname "${hostNetwork.bridge}" oifname != "${hostNetwork.bridge}"`);
      expect(guard).toMatch(/drop/);

      const core = cluster.adminKubeConfig().makeApiClient(CoreV1Api);
      // The node lifecycle controller lifts its not-ready taint shortly after the node turns Ready.
      const node = await waitFor('the real node without the not-ready taint', async () => {
        const read = await core.readNode({ name: REAL_NODE_NAME });
        return read.spec?.taints?.some((t) => t.key === 'node.kubernetes.io/not-ready') ? undefined : read;
      });
      expect(node.spec?.taints?.map((t) => t.key)).toEqual(realNodePlacement.tolerations.map((t) => t.key));
      expect(node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address).toBe(hostNetwork.nodeIp);

      const image = cluster.images?.demoService.ref as string;
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: 'hello' },
          spec: {
            ...realNodePlacement,
            containers: [
              {
                name: 'hello',
                image,
                imagePullPolicy: 'Never',
                command: [
                  '/nodejs/bin/node',
                  '-e',
                  "require('http').createServer((q,s)=>s.end('hi')).listen(8080)",
                ],
                readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
              },
            ],
          },
        },
      });
      let ip: string | undefined;
      for (let i = 0; i < 300 && !ip; i++) {
        const pod = await core.readNamespacedPod({ name: 'hello', namespace: 'default' });
        if (pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
          ip = pod.status.podIP;
        else await sleep(100);
      }
      expect(ip).toMatch(/^10\.88\.0\./);
      expect(await (await fetch(`http://${ip}:8080/`)).text()).toBe('hi');
    } finally {
      await cluster.stop();
    }
    expect(await hostSnapshot()).toEqual(before);
  });

  test('Ctrl-C on `npm run cluster -- --real-node` stops everything and leaves the host as found', async () => {
    const before = await hostSnapshot();
    const cli = startCli();
    const out = await cli.up;
    expect(out).toContain(`the real node ${REAL_NODE_NAME}`);
    expect(await listGuard()).toBeDefined();
    cli.child.kill('SIGINT');
    expect(await cli.exit).toBe(0);
    expect(await hostSnapshot()).toEqual(before);
  });

  test('a node whose owner was killed (kill -9) is cleaned up by the next start', async () => {
    const before = await hostSnapshot();
    const nodeBinDir = (await buildNode({ progress: () => {} })).dir;
    const cli = startCli();
    const out = await cli.up;
    const workDir = /Component logs: (\S+)\/logs/.exec(out)?.[1];
    expect(workDir).toMatch(/gso-cluster-/);
    cli.child.kill('SIGKILL');
    await cli.exit;
    try {
      // Its kubelet, containerd and pods outlive it: the host is not clean yet.
      expect((await pidsOfBinariesIn(nodeBinDir)).length).toBeGreaterThan(0);
      expect(await hostSnapshot()).not.toEqual(before);
      const cluster = await LocalCluster.start({ nodes: 1, realNode: true, progress: () => {} });
      await cluster.stop();
      expect(await pidsOfBinariesIn(nodeBinDir)).toEqual([]);
      expect(await hostSnapshot()).toEqual(before);
    } finally {
      // The dead CLI's control plane is not the node's to clean: stop it by PID here.
      for (const pid of await pidsMentioning(workDir as string)) await stopPid(pid);
      await rm(workDir as string, { recursive: true, force: true });
    }
  });
});
