// The control plane's versions are pinned once, in the Go modules under go/: this file only
// reads them, so a version bump is a one-line go.mod change.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const clusterDir = dirname(fileURLToPath(import.meta.url));

/**
 * Which Kubernetes the clusters run: unset, the current release pinned in go/k8s; a minor such
 * as `1.30`, the module go/k8s-1.30 (the oldest supported, which `npm run test:compat` runs).
 */
export const KUBERNETES_LINE_ENV = 'GSO_KUBERNETES';

/** The control plane's (and kubelet's) module for a line: go/k8s, or go/k8s-<minor>. */
export function k8sModuleDir(line = process.env[KUBERNETES_LINE_ENV]): string {
  if (line === undefined || line === '') return join(clusterDir, 'go', 'k8s');
  const dir = join(clusterDir, 'go', `k8s-${line}`);
  if (/^1\.\d+$/.test(line) && existsSync(join(dir, 'go.mod'))) return dir;
  const lines = readdirSync(join(clusterDir, 'go')).flatMap((d) => /^k8s-(.+)$/.exec(d)?.[1] ?? []);
  throw new Error(
    `${KUBERNETES_LINE_ENV}=${line}: no module test/cluster/go/k8s-${line}; unset it for the current release, or name one of: ${lines.join(', ')}`,
  );
}
export const kwokModuleDir = join(clusterDir, 'go', 'kwok');
export const nodeModuleDir = join(clusterDir, 'go', 'node');
export const prometheusModuleDir = join(clusterDir, 'go', 'prometheus');
export const helmModuleDir = join(clusterDir, 'go', 'helm');
export const registryModuleDir = join(clusterDir, 'go', 'registry');

export interface ControlPlaneVersions {
  kubernetes: string;
  etcd: string;
  kwok: string;
}

function requiredVersion(goModPath: string, modulePath: string): string {
  const goMod = readFileSync(goModPath, 'utf8');
  const escaped = modulePath.replaceAll('.', '\\.').replaceAll('/', '\\/');
  const match = new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, 'm').exec(goMod);
  if (!match?.[1]) throw new Error(`${goModPath}: no requirement on ${modulePath}`);
  return match[1];
}

export function controlPlaneVersions(): ControlPlaneVersions {
  return {
    kubernetes: requiredVersion(join(k8sModuleDir(), 'go.mod'), 'k8s.io/kubernetes'),
    etcd: requiredVersion(join(k8sModuleDir(), 'go.mod'), 'go.etcd.io/etcd/server/v3'),
    kwok: requiredVersion(join(kwokModuleDir, 'go.mod'), 'sigs.k8s.io/kwok'),
  };
}

export interface NodeVersions {
  /** kubelet and kube-proxy: the control plane's Kubernetes version. */
  kubernetes: string;
  containerd: string;
  cniPlugins: string;
  crictl: string;
}

export function nodeVersions(): NodeVersions {
  const goMod = join(nodeModuleDir, 'go.mod');
  return {
    kubernetes: controlPlaneVersions().kubernetes,
    containerd: requiredVersion(goMod, 'github.com/containerd/containerd/v2'),
    cniPlugins: requiredVersion(goMod, 'github.com/containernetworking/plugins'),
    crictl: requiredVersion(goMod, 'sigs.k8s.io/cri-tools'),
  };
}

export interface PrometheusVersions {
  /** The Go module's version, as pinned: v0.316.0. */
  module: string;
  /** The Prometheus release it is: 3.16.0. */
  release: string;
}

/**
 * Prometheus 3 publishes its Go module as v0.3MM.P for release 3.MM.P (v0.316.0 is 3.16.0,
 * whose VERSION file says so): Go modules at v2 and up need a /vN path, which it does not use.
 */
export function prometheusRelease(moduleVersion: string): string {
  const match = /^v0\.([1-9])(\d\d)\.(\d+)(-[0-9A-Za-z.-]+)?$/.exec(moduleVersion);
  if (!match) throw new Error(`${moduleVersion}: not a Prometheus module version (v0.3MM.P for 3.MM.P)`);
  return `${match[1]}.${Number(match[2])}.${match[3]}${match[4] ?? ''}`;
}

export function prometheusVersions(): PrometheusVersions {
  const module = requiredVersion(join(prometheusModuleDir, 'go.mod'), 'github.com/prometheus/prometheus');
  return { module, release: prometheusRelease(module) };
}

/** Helm's release: its Go module's version (v4.3.2), pinned in go/helm. */
export function helmVersion(): string {
  return requiredVersion(join(helmModuleDir, 'go.mod'), 'helm.sh/helm/v4');
}

/** CNCF Distribution's release (v3.1.2), pinned in go/registry. */
export function registryVersion(): string {
  return requiredVersion(join(registryModuleDir, 'go.mod'), 'github.com/distribution/distribution/v3');
}
