// Build failures name the component and the log; they are checked without building anything.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { buildControlPlane, ControlPlaneBuildError } from './build.ts';

let cacheDir: string;
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'gso-build-test-'));
  vi.stubEnv('GSO_CACHE_DIR', cacheDir);
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(cacheDir, { recursive: true, force: true });
});

test('a missing Go toolchain is reported as such', async () => {
  vi.stubEnv('PATH', '/nonexistent');
  const err = await buildControlPlane({ progress: () => {} }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ControlPlaneBuildError);
  expect((err as Error).message).toMatch(
    /building go toolchain: "go" was not found on PATH\. Install the Go toolchain/,
  );
});

test('a failed module download names the component and points to its log', async () => {
  // An empty module cache and no proxy: the first module fetch fails at once.
  vi.stubEnv('GOMODCACHE', join(cacheDir, 'modcache'));
  vi.stubEnv('GOPROXY', 'off');
  vi.stubEnv('GOFLAGS', '-mod=mod');
  const err = (await buildControlPlane({ progress: () => {} }).catch(
    (e: unknown) => e,
  )) as ControlPlaneBuildError;
  expect(err).toBeInstanceOf(ControlPlaneBuildError);
  expect(err.component).toBe('etcd');
  expect(err.logPath).toBe(join(cacheDir, 'build-logs', 'etcd.log'));
  expect(err.message).toContain('GOPROXY=off');
  expect(err.message).toContain(`(full log: ${err.logPath})`);
}, 60_000);
