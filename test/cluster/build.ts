// Builds the control-plane binaries from Go modules, once, into a cache outside the repo keyed
// by every version that shapes them. A warm run only checks that the files are there.
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { exists, formatDuration, runLogged, StepError } from './commands.ts';
import {
  clusterDir,
  controlPlaneVersions,
  helmModuleDir,
  helmVersion,
  k8sModuleDir,
  kwokModuleDir,
  prometheusModuleDir,
  prometheusVersions,
  registryModuleDir,
  registryVersion,
} from './versions.ts';

export interface ControlPlaneBinaries {
  dir: string;
  kubernetesVersion: string;
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubectl: string;
  kwok: string;
  /** kwok Stage definitions, passed to kwok with -c. */
  kwokStages: string[];
}

export class ControlPlaneBuildError extends StepError {
  constructor(component: string, message: string, logPath?: string) {
    super('building', component, message, logPath);
    this.name = 'ControlPlaneBuildError';
  }

  get component(): string {
    return this.step;
  }
}

export function cacheRoot(): string {
  return (
    process.env.GSO_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'graceful-shutdown-operator')
  );
}

export interface GoTarget {
  /** Path of the binary under the cache directory. */
  name: string;
  moduleDir: string;
  pkg: string;
  ldflags: string;
  /** Build tags; default selinux,notest (what Kubernetes' own build uses). */
  tags?: string;
}

/** ldflags that make `--version` and /version report the real release instead of v0.0.0. */
export function kubernetesLdflags(kubernetes: string): string {
  const [major, minor] = kubernetes.replace(/^v/, '').split('.');
  return [
    '-s -w',
    `-X k8s.io/component-base/version.gitVersion=${kubernetes}`,
    `-X k8s.io/component-base/version.gitMajor=${major}`,
    `-X k8s.io/component-base/version.gitMinor=${minor}`,
    '-X k8s.io/component-base/version.gitTreeState=clean',
    `-X k8s.io/client-go/pkg/version.gitVersion=${kubernetes}`,
  ].join(' ');
}

function goTargets(kubernetes: string): GoTarget[] {
  const k8sLdflags = kubernetesLdflags(kubernetes);
  const k8s = (name: string): GoTarget => ({
    name,
    moduleDir: k8sModuleDir(),
    pkg: `k8s.io/kubernetes/cmd/${name}`,
    ldflags: k8sLdflags,
  });
  return [
    { name: 'etcd', moduleDir: k8sModuleDir(), pkg: './etcd', ldflags: '-s -w' },
    k8s('kube-apiserver'),
    k8s('kube-controller-manager'),
    k8s('kube-scheduler'),
    k8s('kubectl'),
    { name: 'kwok', moduleDir: kwokModuleDir, pkg: 'sigs.k8s.io/kwok/cmd/kwok', ldflags: '-s -w' },
  ];
}

/** Runs a command with its output going to logPath; rejects naming the component on failure. */
function run(
  component: string,
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; logPath: string },
): Promise<string> {
  return runLogged(cmd, args, {
    ...opts,
    fail: (message, logPath) =>
      new ControlPlaneBuildError(
        component,
        message.endsWith('was not found on PATH')
          ? `${message}. Install the Go toolchain (go 1.26.8 or newer; an older go fetches the toolchain the go.mod files name) and make sure \`go\` is on PATH.`
          : message,
        logPath,
      ),
  });
}

export interface BuildOptions {
  /** Progress lines; defaults to stderr. */
  progress?: (line: string) => void;
}

export function defaultProgress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** The Go toolchain's version (part of every cache key: another Go builds other binaries). */
export async function goVersion(): Promise<string> {
  const logDir = join(cacheRoot(), 'build-logs');
  await mkdir(logDir, { recursive: true });
  return (
    await run('go toolchain', 'go', ['env', 'GOVERSION'], {
      cwd: clusterDir,
      logPath: join(logDir, 'go-env.log'),
    })
  ).trim();
}

/**
 * Builds the targets missing from `dir` (a target's name is its path under dir). Each binary
 * is built to a temporary name and renamed, so an interrupted build never leaves a truncated
 * binary in the cache. Returns how many were built.
 */
export async function buildGoTargets(opts: {
  label: string;
  dir: string;
  targets: readonly GoTarget[];
  /** Said once, before the first build: what is built and how long it takes. */
  intro: string;
  progress: (line: string) => void;
}): Promise<number> {
  const { label, dir, progress } = opts;
  const logDir = join(cacheRoot(), 'build-logs');
  await mkdir(logDir, { recursive: true });
  const started = Date.now();
  const missing: GoTarget[] = [];
  for (const t of opts.targets) if (!(await exists(join(dir, t.name)))) missing.push(t);
  if (missing.length > 0) {
    progress(`[${label}] ${opts.intro}; building ${missing.map((t) => t.name).join(', ')} into ${dir}`);
  }
  for (const target of missing) {
    const logPath = join(logDir, `${target.name.replaceAll('/', '_')}.log`);
    await rm(logPath, { force: true });
    const t0 = Date.now();
    const heartbeat = setInterval(
      () => progress(`[${label}]   ... still building ${target.name} (${formatDuration(Date.now() - t0)})`),
      60_000,
    );
    try {
      const out = join(dir, `${target.name}.partial`);
      await mkdir(dirname(out), { recursive: true });
      await run(
        target.name,
        'go',
        [
          'build',
          '-trimpath',
          '-buildvcs=false',
          '-tags',
          target.tags ?? 'selinux,notest',
          '-ldflags',
          target.ldflags,
          '-o',
          out,
          target.pkg,
        ],
        { cwd: target.moduleDir, env: { ...process.env, CGO_ENABLED: '0' }, logPath },
      );
      await rename(out, join(dir, target.name));
    } finally {
      clearInterval(heartbeat);
    }
    progress(
      `[${label}] ${target.name} built in ${formatDuration(Date.now() - t0)} (total ${formatDuration(Date.now() - started)})`,
    );
  }
  progress(
    missing.length > 0
      ? `[${label}] done in ${formatDuration(Date.now() - started)}`
      : `[${label}] cached: ${dir} (checked in ${Date.now() - started} ms)`,
  );
  return missing.length;
}

/** Returns the cached control-plane binaries, building what is missing. */
export async function buildControlPlane(opts: BuildOptions = {}): Promise<ControlPlaneBinaries> {
  const progress = opts.progress ?? defaultProgress;
  const versions = controlPlaneVersions();
  const go = await goVersion();
  const key = `k8s-${versions.kubernetes}_etcd-${versions.etcd}_kwok-${versions.kwok}_${go}`;
  const dir = join(cacheRoot(), 'control-plane', key);
  await mkdir(dir, { recursive: true });
  await buildGoTargets({
    label: 'cluster build',
    dir,
    targets: goTargets(versions.kubernetes),
    intro: `Kubernetes ${versions.kubernetes}, etcd ${versions.etcd}, kwok ${versions.kwok} with ${go} (a cold build takes about 8-15 minutes on 2 cores)`,
    progress,
  });
  const kwokStages = await installKwokStages(dir, join(cacheRoot(), 'build-logs'));
  return {
    dir,
    kubernetesVersion: versions.kubernetes,
    etcd: join(dir, 'etcd'),
    kubeApiserver: join(dir, 'kube-apiserver'),
    kubeControllerManager: join(dir, 'kube-controller-manager'),
    kubeScheduler: join(dir, 'kube-scheduler'),
    kubectl: join(dir, 'kubectl'),
    kwok: join(dir, 'kwok'),
    kwokStages,
  };
}

/**
 * kwok 0.8 ships no built-in stages. Nodes and pod completion use kwok's own "fast" stages from
 * its module. Two are ours (kwok-stages/): pod deletion, which honours the grace period, and pod
 * start-up, kwok's fast stage with a delay a pod may ask for by annotation.
 */
async function installKwokStages(dir: string, logDir: string): Promise<string[]> {
  const stagesDir = join(dir, 'kwok-stages');
  const fromKwok = [
    'node/fast/node-initialize.yaml',
    'node/heartbeat/node-heartbeat.yaml',
    'pod/fast/pod-complete.yaml',
  ];
  const ours = ['pod-ready.yaml', 'pod-delete.yaml'];
  const wanted = [
    ...fromKwok.map((p) => join(stagesDir, p.replaceAll('/', '_'))),
    ...ours.map((name) => join(stagesDir, name)),
  ];
  let have = true;
  for (const p of wanted) if (!(await exists(p))) have = false;
  if (!have) {
    const json = await run('kwok stages', 'go', ['list', '-m', '-json', 'sigs.k8s.io/kwok'], {
      cwd: kwokModuleDir,
      logPath: join(logDir, 'kwok-stages.log'),
    });
    const moduleDir = (JSON.parse(json) as { Dir?: string }).Dir;
    if (!moduleDir)
      throw new ControlPlaneBuildError('kwok stages', 'go list did not report the kwok module directory');
    await mkdir(stagesDir, { recursive: true });
    for (const p of fromKwok)
      await copyFile(join(moduleDir, 'kustomize', 'stage', p), join(stagesDir, p.replaceAll('/', '_')));
  }
  // Ours are always copied fresh: they live in the repo and may change without a version bump.
  await mkdir(stagesDir, { recursive: true });
  for (const name of ours) await copyFile(join(clusterDir, 'kwok-stages', name), join(stagesDir, name));
  return wanted;
}

export interface HelmBinary {
  /** The release, as `helm version` prints it: v4.3.2. */
  version: string;
  helm: string;
}

/** What Helm's own Makefile sets for a tagged release, so `helm version` names it. */
export function helmLdflags(release: string): string {
  return [
    '-s -w',
    `-X helm.sh/helm/v4/internal/version.version=${release}`,
    // A tagged build has no metadata; the module proxy gives no commit hash.
    '-X helm.sh/helm/v4/internal/version.metadata=',
    '-X helm.sh/helm/v4/internal/version.gitTreeState=clean',
  ].join(' ');
}

/**
 * One tool's binary from its own module (name = the binary's and the cache directory's name),
 * built with no tags into `<cache>/<name>/<name>-<version>_<go>/`, once.
 */
async function buildTool(
  opts: BuildOptions,
  tool: { name: string; title: string; version: string; moduleDir: string; pkg: string; ldflags: string },
): Promise<string> {
  const go = await goVersion();
  const dir = join(cacheRoot(), tool.name, `${tool.name}-${tool.version}_${go}`);
  await mkdir(dir, { recursive: true });
  await buildGoTargets({
    label: `${tool.name} build`,
    dir,
    targets: [{ name: tool.name, moduleDir: tool.moduleDir, pkg: tool.pkg, ldflags: tool.ldflags, tags: '' }],
    intro: `${tool.title} ${tool.version} with ${go}`,
    progress: opts.progress ?? defaultProgress,
  });
  return join(dir, tool.name);
}

/**
 * Returns the cached helm (go/helm pins the release), building it when missing: the chart's
 * lint, render and install tests run the Helm users run. Helm's release build sets no tags.
 */
export async function buildHelm(opts: BuildOptions = {}): Promise<HelmBinary> {
  const version = helmVersion();
  const helm = await buildTool(opts, {
    name: 'helm',
    title: 'Helm',
    version,
    moduleDir: helmModuleDir,
    pkg: 'helm.sh/helm/v4/cmd/helm',
    ldflags: helmLdflags(version),
  });
  return { version, helm };
}

export interface RegistryBinary {
  /** The release: v3.1.2. */
  version: string;
  registry: string;
}

/**
 * Returns the cached OCI registry (CNCF Distribution, what the `registry` image runs; go/registry
 * pins it), building it when missing: the image test pushes to it and the real node pulls from it.
 */
export async function buildRegistry(opts: BuildOptions = {}): Promise<RegistryBinary> {
  const version = registryVersion();
  const registry = await buildTool(opts, {
    name: 'registry',
    title: 'Distribution (registry)',
    version,
    moduleDir: registryModuleDir,
    pkg: 'github.com/distribution/distribution/v3/cmd/registry',
    // What its release build sets: `registry --version` prints it.
    ldflags: `-s -w -X github.com/distribution/distribution/v3/version.version=${version}`,
  });
  return { version, registry };
}

export interface PrometheusBinaries {
  dir: string;
  /** The release, as `prometheus --version` prints it: 3.16.0. */
  version: string;
  prometheus: string;
  promtool: string;
}

/**
 * Service discovery: only Kubernetes is compiled in (plugins/plugin_*.go in the Prometheus
 * source: `remove_all_sd` leaves every discovery out, `enable_<name>_sd` puts one back); no
 * `builtinassets`, so the web UI's assets are left out (the HTTP API, all the tests use, is
 * there); no `netgo` needed, CGO_ENABLED=0 already gives Go's own resolver.
 */
export const PROMETHEUS_BUILD_TAGS = 'remove_all_sd,enable_kubernetes_sd';

/** What Prometheus's own release build (.promu.yml) sets, so `--version` names the release. */
export function prometheusLdflags(release: string, moduleVersion: string): string {
  return [
    '-s -w',
    `-X github.com/prometheus/common/version.Version=${release}`,
    // The module proxy gives no commit hash; the module version names the source as exactly.
    `-X github.com/prometheus/common/version.Revision=${moduleVersion}`,
    '-X github.com/prometheus/common/version.Branch=HEAD',
    '-X github.com/prometheus/common/version.BuildUser=graceful-shutdown-operator',
  ].join(' ');
}

/**
 * Returns the cached prometheus and promtool (go/prometheus pins the release), building what is
 * missing. A cold build (empty Go caches) downloads about 1.1 GB of modules in under a minute
 * and compiles for about 5 minutes on 2 cores (peak RSS 1.3 GB); promtool then takes seconds.
 */
export async function buildPrometheus(opts: BuildOptions = {}): Promise<PrometheusBinaries> {
  const progress = opts.progress ?? defaultProgress;
  const v = prometheusVersions();
  const go = await goVersion();
  const dir = join(cacheRoot(), 'prometheus', `prometheus-${v.module}_${go}`);
  await mkdir(dir, { recursive: true });
  const target = (name: string): GoTarget => ({
    name,
    moduleDir: prometheusModuleDir,
    pkg: `github.com/prometheus/prometheus/cmd/${name}`,
    ldflags: prometheusLdflags(v.release, v.module),
    tags: PROMETHEUS_BUILD_TAGS,
  });
  await buildGoTargets({
    label: 'prometheus build',
    dir,
    targets: [target('prometheus'), target('promtool')],
    intro: `Prometheus ${v.release} (module ${v.module}) with ${go}, Kubernetes discovery only (a cold build takes about 5-6 minutes on 2 cores)`,
    progress,
  });
  return { dir, version: v.release, prometheus: join(dir, 'prometheus'), promtool: join(dir, 'promtool') };
}
