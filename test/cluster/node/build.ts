// Builds the real node's binaries from Go modules, once, into a cache beside the control plane's,
// keyed by every version that shapes them: kubelet and kube-proxy from the control plane's
// k8s.io/kubernetes module graph, containerd, the CNI plugins, crictl and pause from go/node.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BuildOptions,
  buildGoTargets,
  cacheRoot,
  defaultProgress,
  type GoTarget,
  goVersion,
  kubernetesLdflags,
} from '../build.ts';
import { k8sModuleDir, nodeModuleDir, nodeVersions } from '../versions.ts';

export interface NodeBinaries {
  dir: string;
  /** kubelet's and kube-proxy's release: v1.37.2. */
  kubernetesVersion: string;
  kubelet: string;
  kubeProxy: string;
  containerd: string;
  containerdShim: string;
  ctr: string;
  crictl: string;
  /** The pod sandbox's process, packed into the pause image. */
  pause: string;
  /** bridge, host-local, loopback, portmap. */
  cniBinDir: string;
}

/** containerd's own release tags: no storage drivers this node does not use, no tracing. */
const containerdTags = 'no_btrfs,no_devmapper,no_zfs,no_tracing';
const cniPlugins = ['main/bridge', 'main/loopback', 'ipam/host-local', 'meta/portmap'];

function nodeTargets(kubernetes: string): GoTarget[] {
  const plain = { moduleDir: nodeModuleDir, ldflags: '-s -w', tags: '' };
  return [
    ...['kubelet', 'kube-proxy'].map((name) => ({
      name,
      moduleDir: k8sModuleDir(),
      pkg: `k8s.io/kubernetes/cmd/${name}`,
      ldflags: kubernetesLdflags(kubernetes),
    })),
    ...['containerd', 'containerd-shim-runc-v2', 'ctr'].map((name) => ({
      ...plain,
      name,
      pkg: `github.com/containerd/containerd/v2/cmd/${name}`,
      tags: containerdTags,
    })),
    ...cniPlugins.map((p) => ({
      ...plain,
      name: `cni/${p.split('/')[1]}`,
      pkg: `github.com/containernetworking/plugins/plugins/${p}`,
    })),
    { ...plain, name: 'crictl', pkg: 'sigs.k8s.io/cri-tools/cmd/crictl' },
    { ...plain, name: 'pause', pkg: './pause' },
  ];
}

/** Returns the cached node binaries, building what is missing. */
export async function buildNode(opts: BuildOptions = {}): Promise<NodeBinaries> {
  const progress = opts.progress ?? defaultProgress;
  const v = nodeVersions();
  const go = await goVersion();
  const key = `k8s-${v.kubernetes}_containerd-${v.containerd}_cni-${v.cniPlugins}_crictl-${v.crictl}_${go}`;
  const dir = join(cacheRoot(), 'node', key);
  await mkdir(dir, { recursive: true });
  await buildGoTargets({
    label: 'node build',
    dir,
    targets: nodeTargets(v.kubernetes),
    intro: `kubelet and kube-proxy ${v.kubernetes}, containerd ${v.containerd}, CNI plugins ${v.cniPlugins}, crictl ${v.crictl} with ${go} (a cold build takes about 8 minutes on 2 cores)`,
    progress,
  });
  const bin = (name: string) => join(dir, name);
  return {
    dir,
    kubernetesVersion: v.kubernetes,
    kubelet: bin('kubelet'),
    kubeProxy: bin('kube-proxy'),
    containerd: bin('containerd'),
    containerdShim: bin('containerd-shim-runc-v2'),
    ctr: bin('ctr'),
    crictl: bin('crictl'),
    pause: bin('pause'),
    cniBinDir: bin('cni'),
  };
}
