// The control plane's versions are pinned once, in the Go modules under go/: this file only
// reads them, so a version bump is a one-line go.mod change.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const clusterDir = dirname(fileURLToPath(import.meta.url));
export const k8sModuleDir = join(clusterDir, 'go', 'k8s');
export const kwokModuleDir = join(clusterDir, 'go', 'kwok');
export const nodeModuleDir = join(clusterDir, 'go', 'node');

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
    kubernetes: requiredVersion(join(k8sModuleDir, 'go.mod'), 'k8s.io/kubernetes'),
    etcd: requiredVersion(join(k8sModuleDir, 'go.mod'), 'go.etcd.io/etcd/server/v3'),
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
