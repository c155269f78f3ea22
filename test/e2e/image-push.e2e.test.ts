// The operator's image as a user makes it: `npm run image -- --tag REGISTRY/NAME:TAG --push`
// (hack/image.ts, here with buildah) builds the Dockerfile and pushes it to a registry, CNCF
// Distribution on 127.0.0.1 built from its Go module; the real node's containerd pulls it from
// there and runs it. The Dockerfile's base images are the tests' local stand-ins (no registry
// outside this machine can be reached), given as the --build-args a user may also pass.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildRegistry } from '../cluster/build.ts';
import { withImageStore } from '../cluster/images.ts';
import { LocalRegistry } from '../cluster/registry.ts';
import { realNodePodSpec, repoRoot, waitFor } from '../operator/harness.ts';
import { adminKubeConfig, clusterInfo, useNamespace } from './support.ts';

const REPOSITORY = 'gso/graceful-shutdown-operator';
const VERSION = '0.1.0-push-e2e';
const ns = useNamespace('image-push');
const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
let dir: string;
let registry: LocalRegistry;
let hostsDir: string | undefined;
let pushing: Promise<unknown> | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gso-registry-'));
  registry = await LocalRegistry.start({
    binary: (await buildRegistry({ progress: () => {} })).registry,
    dir,
  });
}, 240_000);

afterAll(async () => {
  await stopImage();
  // withImageStore's cleanup (mounts, the build lock) runs once the build it waited for has ended.
  await pushing?.catch(() => undefined);
  await registry?.stop();
  if (hostsDir) await rm(hostsDir, { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
});

/** The running `npm run image`, in a process group of its own (buildah under it): stopped in afterAll. */
let running: { child: ChildProcess; done: Promise<unknown> } | undefined;

/** `node hack/image.ts ...` with the project's Node; its exit code and output. */
function image(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  const child = spawn(process.execPath, [join(repoRoot, 'hack/image.ts'), ...args], {
    cwd: repoRoot,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output = `${output}${chunk}`.slice(-64 * 1024);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output = `${output}${chunk}`.slice(-64 * 1024);
  });
  const done = new Promise<{ code: number; output: string }>((resolve) => {
    child.once('error', (err) => resolve({ code: 1, output: `${output}${err.message}` }));
    child.once('close', (code, signal) => resolve({ code: code ?? 128, output: `${output}${signal ?? ''}` }));
  });
  running = { child, done };
  return done;
}

/** Stops what `image` started, its buildah included, if it is still running. */
async function stopImage(): Promise<void> {
  if (!running || running.child.exitCode !== null || running.child.pid === undefined) return;
  try {
    process.kill(-running.child.pid, 'SIGKILL');
  } catch {}
  await running.done;
}

interface Manifest {
  config: { digest: string };
}
interface ImageConfig {
  config: { Labels?: Record<string, string> };
}

describe('npm run image -- --push', () => {
  test('builds the operator image, pushes it to the registry, and the real node pulls and runs it', async () => {
    const tag = `${registry.host}/${REPOSITORY}:${VERSION}`;
    const push = withImageStore(
      () => {},
      async (store) => {
        // A registry on plain HTTP is marked insecure in registries.conf, as a user would.
        const registries = join(dir, 'registries.conf');
        await writeFile(registries, `[[registry]]\nlocation = "${registry.host}"\ninsecure = true\n`);
        try {
          return await image(
            [
              '--builder',
              'buildah',
              '--tag',
              tag,
              '--version',
              VERSION,
              '--push',
              ...store.buildArgs.flatMap((a) => ['--build-arg', a]),
            ],
            { ...store.env, CONTAINERS_REGISTRIES_CONF: registries },
          );
        } finally {
          // The tag names a registry that is gone after this file: not kept in the shared store.
          await new Promise((resolve) => execFile('buildah', ['rmi', tag], { env: store.env }, resolve));
        }
      },
    );
    pushing = push;
    const pushed = await push;
    expect(pushed.code, pushed.output.slice(-3000)).toBe(0);

    // In the registry, with the version in its OCI labels.
    const tags = await registry.get<{ tags: string[] }>(`/v2/${REPOSITORY}/tags/list`);
    expect(tags.tags).toEqual([VERSION]);
    const manifest = await registry.get<Manifest>(
      `/v2/${REPOSITORY}/manifests/${VERSION}`,
      'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json',
    );
    const config = await registry.get<ImageConfig>(`/v2/${REPOSITORY}/blobs/${manifest.config.digest}`);
    expect(config.config.Labels).toMatchObject({
      'org.opencontainers.image.version': VERSION,
      'org.opencontainers.image.title': 'graceful-shutdown-operator',
    });

    // The real node pulls it (containerd reads its hosts directory at each pull) and runs it.
    hostsDir = join(clusterInfo().realNode.registryHosts, registry.host);
    await mkdir(hostsDir, { recursive: true });
    await writeFile(
      join(hostsDir, 'hosts.toml'),
      `server = "http://${registry.host}"\n\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    await core().createNamespacedPod({
      namespace: ns.name,
      body: {
        metadata: { name: 'pulled' },
        spec: {
          ...realNodePodSpec(),
          restartPolicy: 'Never',
          containers: [{ name: 'operator', image: tag, imagePullPolicy: 'Always', args: ['--version'] }],
        },
      },
    });
    const pod = await waitFor(
      'the pulled image ran to completion',
      async () => {
        const p = await core().readNamespacedPod({ namespace: ns.name, name: 'pulled' });
        const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
        if (waiting?.reason === 'ErrImagePull' || waiting?.reason === 'ImagePullBackOff')
          throw new Error(`the node could not pull ${tag}: ${waiting.message}`);
        return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed' ? p : undefined;
      },
      { timeoutMs: 120_000 },
    );
    expect(pod.status?.phase).toBe('Succeeded');
    expect(pod.status?.containerStatuses?.[0]?.imageID).toContain(`${registry.host}/${REPOSITORY}@sha256:`);
    const logs = await core().readNamespacedPodLog({ namespace: ns.name, name: 'pulled' });
    expect(logs).toContain(VERSION);
    // A cold layer cache rebuilds both stages' npm ci: minutes on 2 busy cores.
  }, 600_000);
});
