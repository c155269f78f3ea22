// A large tree of public Kubernetes manifests nobody here wrote, for `gsp audit`'s tests and
// benchmark: the YAML and JSON files of well-known projects' Go modules (install bundles,
// kustomize bases and overlays with patches, samples, Helm chart templates, dashboards), fetched
// from the Go module proxy (the one source of public code this machine reaches) into the cache,
// never into the repository. Each module's hash is pinned: the proxy's zip must match it.
import { execFile } from 'node:child_process';
import { access, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from '../cluster/build.ts';
import { ensureDebianPackages } from '../cluster/node/packages.ts';

const run = promisify(execFile);

export interface CorpusModule {
  module: string;
  version: string;
  /** The module zip's hash as go.sum writes it (h1:...), as the checksum database gave it. */
  sum: string;
}

/** The projects, by the modules that carry their manifests. */
export const CORPUS: readonly CorpusModule[] = [
  {
    module: 'github.com/argoproj/argo-cd/v3',
    version: 'v3.6.2',
    sum: 'h1:t6RQrVV4hg9M0+lPMsUvi9e4RnYV9dE99/guXGxG6Lc=',
  },
  {
    module: 'github.com/argoproj/argo-rollouts',
    version: 'v1.10.2',
    sum: 'h1:sEPWsY+HUvnXj3Vh0ejb+GDTceQ/palqhFo2FVQJMk0=',
  },
  {
    module: 'istio.io/istio',
    version: 'v0.0.0-20260827124520-eed52ebb66ad',
    sum: 'h1:ui9TJjRMAV/hb5ehQaZDq7IUGxuQP6dra9lapT/VjHI=',
  },
  {
    module: 'github.com/prometheus-operator/prometheus-operator',
    version: 'v0.85.0',
    sum: 'h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=',
  },
  {
    module: 'k8s.io/kube-state-metrics/v2',
    version: 'v2.20.0',
    sum: 'h1:edO7hyGs1MqZhbUbzWW1YRTV3afZOIbvHNvOCaJjuU4=',
  },
  {
    module: 'knative.dev/serving',
    version: 'v0.51.0',
    sum: 'h1:yN2Q7eYqJgoPfZkATjoBZyGbZ2P1Qhns9HIMU4mF+to=',
  },
  {
    module: 'github.com/kubernetes-sigs/metrics-server',
    version: 'v0.7.2-0.20240405191304-ff2febb81ca8',
    sum: 'h1:a4Ss+3IKUpR6eI2qwphCXJjkk0zhEe/nYJ446nep8+0=',
  },
  {
    module: 'github.com/fluxcd/flux2/v2',
    version: 'v2.9.5',
    sum: 'h1:jwCccxvkD+2QnsjN+pl5QqM8KnFUwA8pIoQ1Lf0avkA=',
  },
  {
    module: 'github.com/cert-manager/cert-manager',
    version: 'v1.21.2',
    sum: 'h1:UWgoYM+KLNtRlqmoWOKjKBOBUPVHeepQ6/ac3ERJW68=',
  },
  {
    module: 'sigs.k8s.io/external-dns',
    version: 'v0.23.0',
    sum: 'h1:35KyAZtLN8o5nIE0aPKfyhILbf5HHkKPJby/4FowPJM=',
  },
  {
    module: 'github.com/kedacore/keda/v2',
    version: 'v2.21.1',
    sum: 'h1:AoPpnkEeuSYUb1dAqQO5Pud9BpCPiOqurnKtnKobl6Q=',
  },
];

/** Files of a module that are not manifests of the project: CI, vendored and tool configuration. */
const LEFT_OUT = [
  '*/.github/*',
  '*/vendor/*',
  '*/node_modules/*',
  '*/.golangci*',
  '*/.pre-commit*',
  '*/codecov.yml',
];

export const corpusDir = () => join(cacheRoot(), 'manifests', 'corpus-v1');

const dirName = (m: CorpusModule) => `${m.module.replaceAll('/', '_')}@${m.version}`;

/** The manifest files of one module, under the corpus directory; fetched and checked once. */
async function ensureModule(m: CorpusModule, progress: (line: string) => void): Promise<void> {
  const target = join(corpusDir(), dirName(m));
  if (
    await access(target).then(
      () => true,
      () => false,
    )
  )
    return;
  const t0 = Date.now();
  // `go mod download` checks the zip against the checksum database; a module whose go.mod wants a
  // newer Go than this machine's reports that as an error, after the zip is downloaded and checked.
  const { stdout } = await run('go', ['mod', 'download', '-json', `${m.module}@${m.version}`], {
    cwd: corpusDir(),
    env: { ...process.env, GOTOOLCHAIN: 'local' },
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
  const info = JSON.parse(stdout || '{}') as { Zip?: string; Sum?: string; Error?: string };
  if (!info.Zip || !info.Sum)
    throw new Error(`corpus: go mod download ${m.module}@${m.version}: ${info.Error ?? 'no zip'}`);
  if (info.Sum !== m.sum)
    throw new Error(`corpus: ${m.module}@${m.version} has hash ${info.Sum}, pinned ${m.sum}`);
  const partial = `${target}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  await run('unzip', ['-q', '-o', info.Zip, '*.yaml', '*.yml', '*.json', '-x', ...LEFT_OUT, '-d', partial], {
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { code?: number }) => {
    // 11: no file matched (a module without manifests); anything else is a failure.
    if (error.code !== 11) throw error;
  });
  await rename(partial, target);
  progress(`[corpus] ${m.module}@${m.version} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** The corpus directory, with every module in it (fetched the first time). */
export async function ensureCorpus(progress: (line: string) => void = console.log): Promise<string> {
  await mkdir(corpusDir(), { recursive: true });
  await ensureDebianPackages(['unzip'], progress);
  for (const m of CORPUS) await ensureModule(m, progress);
  return corpusDir();
}

/** Every file under dir, relative to it. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

if (import.meta.main) {
  const dir = await ensureCorpus();
  console.log(`corpus: ${(await filesUnder(dir)).length} files in ${dir}`);
}
