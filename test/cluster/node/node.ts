// One real node beside the kwok nodes: containerd (runc from Debian), kubelet and kube-proxy in
// nftables mode, on the pod bridge prepared by host.ts. Real-node pods are placed with
// `realNodePlacement` (a label and a taint), so kwok pods never land here and real pods never
// land on a kwok node. Images are imported (no registry can be reached), never pulled.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Toleration } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type Component, ComponentError, ProcessGroup } from '../processes.ts';
import type { NodeBinaries } from './build.ts';
import { claimDir, cniNetworkName, hostNetwork, sh } from './host.ts';

export const REAL_NODE_NAME = 'gso-real-node';
const realNodeLabel = 'gracefulshutdown.dev/real-node';

/** What a pod spec needs to run on the real node (and only there). */
export const realNodePlacement: { nodeSelector: Record<string, string>; tolerations: V1Toleration[] } = {
  nodeSelector: { [realNodeLabel]: 'true' },
  tolerations: [{ key: realNodeLabel, operator: 'Equal', value: 'true', effect: 'NoSchedule' }],
};

export interface RealNodeOptions {
  binaries: NodeBinaries;
  /** Image archives to import; `sandboxImage` must be one of them. */
  imageArchives: string[];
  sandboxImage: string;
  /** The node's own directory (containerd and kubelet state); removed by host cleanup. */
  workDir: string;
  logDir: string;
  kubeletKubeconfig: string;
  kubeProxyKubeconfig: string;
  admin: KubeConfig;
  progress: (line: string) => void;
  readyTimeoutMs: number;
}

/** containerd refuses a shim socket_dir longer than 42 characters: a short, fixed host path. */
const shimSocketDir = join(claimDir, 's');

/** Where nothing listens: an image pull that slips through fails here, with no DNS lookup. */
const noRegistry = 'http://127.0.0.1:9';

function containerdConfig(o: RealNodeOptions, dirs: NodeDirs): string {
  const q = (s: string) => `'${s}'`;
  return `# containerd for the test cluster's real node; every path lives under ${o.workDir}
version = 4
root = ${q(join(dirs.containerd, 'root'))}
state = ${q(join(dirs.containerd, 'state'))}
disabled_plugins = [
  'io.containerd.nri.v1.nri',
  'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs',
  'io.containerd.image-verifier.v1.bindir',
  'io.containerd.internal.v1.opt',
]

[plugins]
  # Version 4 ignores top-level [grpc] and [ttrpc]: the servers are plugins.
  [plugins.'io.containerd.server.v1.grpc']
    address = ${q(dirs.socket)}
  [plugins.'io.containerd.server.v1.ttrpc']
    address = ${q(`${dirs.socket}.ttrpc`)}

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = ${q(o.sandboxImage)}
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = ${q(dirs.registryHosts)}

  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    # This VM lacks CAP_SYS_RESOURCE: runc may not lower oom_score_adj below containerd's own.
    restrict_oom_score_adj = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '/usr/sbin/runc'
          SystemdCgroup = false
          Root = ${q(join(dirs.containerd, 'runc'))}
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [${q(o.binaries.cniBinDir)}]
      conf_dir = ${q(dirs.cniConf)}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = ${q(shimSocketDir)}
`;
}

function cniConfig(dirs: NodeDirs): string {
  const n = hostNetwork;
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: cniNetworkName,
      plugins: [
        {
          type: 'bridge',
          bridge: n.bridge,
          isGateway: true,
          // No NAT: nothing from a pod is meant to leave this machine (the guard drops it).
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: join(dirs.root, 'cni-ipam'),
            ranges: [[{ subnet: n.podCidr, gateway: n.nodeIp, rangeStart: '10.88.0.10' }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        { type: 'portmap', backend: 'nftables', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(dirs: NodeDirs): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // kubelet 1.35+ refuses cgroup v1 by default; this machine kind has a v1 hierarchy.
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    containerRuntimeEndpoint: `unix://${dirs.socket}`,
    address: hostNetwork.nodeIp,
    port: 20250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 20248,
    failSwapOn: false,
    // kube-apiserver reaches logs and exec with no client certificate of its own.
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
    authorization: { mode: 'AlwaysAllow' },
    podCIDR: hostNetwork.podCidr,
    // Pods get no upstream resolver: no DNS lookup may leave the machine.
    resolvConf: '',
    podLogsDir: dirs.podLogs,
    volumePluginDir: join(dirs.root, 'volume-plugins'),
    serializeImagePulls: false,
    // Imported images must never be collected: they cannot be pulled again.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    nodeStatusReportFrequency: '10s',
    nodeStatusUpdateFrequency: '10s',
    syncFrequency: '10s',
    staticPodPath: '',
    registerNode: true,
    registerWithTaints: realNodePlacement.tolerations.map((t) => ({
      key: t.key,
      value: t.value,
      effect: t.effect,
    })),
  });
}

/** kube-proxy's nftables mode is alpha, behind its feature gate, before 1.31 (beta, on by default). */
export function kubeProxyFeatureGates(kubernetesVersion: string): Record<string, boolean> | undefined {
  const minor = Number(/^v?1\.(\d+)\./.exec(kubernetesVersion)?.[1]);
  return minor < 31 ? { NFTablesProxyMode: true } : undefined;
}

function kubeProxyConfig(kubeconfig: string, kubernetesVersion: string): string {
  const n = hostNetwork;
  const featureGates = kubeProxyFeatureGates(kubernetesVersion);
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    ...(featureGates ? { featureGates } : {}),
    clientConnection: { kubeconfig },
    hostnameOverride: REAL_NODE_NAME,
    mode: 'nftables',
    clusterCIDR: n.podCidr,
    healthzBindAddress: '127.0.0.1:20256',
    metricsBindAddress: '127.0.0.1:20249',
    nodePortAddresses: [`${n.nodeIp}/32`],
    oomScoreAdj: 0,
    // 0: leave the host's conntrack sysctls alone.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    // kube-proxy's own default minSyncPeriod (1 s): rule updates are batched as on a real
    // node, so an endpoint removed just after another change reaches the rules up to 1 s
    // later. That propagation delay is what a preStop sleep covers; with 0 s it was a race
    // of a few ms, and the e2e control (no preStop) lost requests only sometimes.
    nftables: { syncPeriod: '30s', minSyncPeriod: '1s' },
  });
}

interface NodeDirs {
  root: string;
  containerd: string;
  socket: string;
  cniConf: string;
  registryHosts: string;
  kubelet: string;
  podLogs: string;
  /** PATH entries: nft only (portmap's nftables backend), never iptables. */
  sbin: string;
}

export class RealNode {
  readonly workDir: string;
  private readonly processes = new ProcessGroup();
  private readonly dirs: NodeDirs;
  private readonly binaries: NodeBinaries;

  private constructor(opts: RealNodeOptions, dirs: NodeDirs) {
    this.workDir = opts.workDir;
    this.dirs = dirs;
    this.binaries = opts.binaries;
  }

  get componentLogs(): Record<string, string> {
    return Object.fromEntries(this.processes.components.map((c) => [c.name, c.logPath]));
  }

  get pids(): number[] {
    return this.processes.components.filter((c) => !c.exit).map((c) => c.pid);
  }

  /** containerd's socket, for crictl and ctr. */
  get containerdSocket(): string {
    return this.dirs.socket;
  }

  /**
   * containerd's registry hosts directory (read at each pull): `<host:port>/hosts.toml` there
   * lets the node pull from a registry on this machine; every other registry goes to a closed port.
   */
  get registryHosts(): string {
    return this.dirs.registryHosts;
  }

  /**
   * Starts containerd, imports the images, starts kubelet and kube-proxy and waits for the node
   * to be Ready. The host must be prepared (host.ts) and kube-apiserver running. On failure the
   * started processes are stopped; the caller cleans the host.
   */
  static async start(o: RealNodeOptions): Promise<RealNode> {
    const t0 = Date.now();
    const root = o.workDir;
    const dirs: NodeDirs = {
      root,
      containerd: join(root, 'containerd'),
      socket: join(root, 'containerd.sock'),
      cniConf: join(root, 'cni-conf'),
      registryHosts: join(root, 'registry-hosts'),
      kubelet: join(root, 'kubelet'),
      podLogs: join(root, 'pod-logs'),
      sbin: join(root, 'sbin'),
    };
    for (const d of [
      dirs.containerd,
      dirs.cniConf,
      join(dirs.registryHosts, '_default'),
      dirs.kubelet,
      dirs.podLogs,
      dirs.sbin,
    ])
      await mkdir(d, { recursive: true });
    await writeFile(join(dirs.cniConf, '10-gso-pods.conflist'), cniConfig(dirs));
    await writeFile(join(dirs.registryHosts, '_default', 'hosts.toml'), `server = "${noRegistry}"\n`);
    await sh('ln', ['-sf', '/usr/sbin/nft', join(dirs.sbin, 'nft')]);
    const files = {
      containerd: join(root, 'containerd.toml'),
      kubelet: join(root, 'kubelet.yaml'),
      kubeProxy: join(root, 'kube-proxy.yaml'),
    };
    await writeFile(files.containerd, containerdConfig(o, dirs));
    await writeFile(files.kubelet, kubeletConfig(dirs));
    await writeFile(files.kubeProxy, kubeProxyConfig(o.kubeProxyKubeconfig, o.binaries.kubernetesVersion));

    const node = new RealNode(o, dirs);
    const { processes } = node;
    // No /usr/sbin on PATH: kubelet and kube-proxy then find no iptables and add no chains.
    const path = (...first: string[]) => ({
      ...process.env,
      PATH: [...first, '/usr/local/bin', '/usr/bin', '/bin'].join(':'),
    });
    try {
      const containerd = processes.start(
        'containerd',
        o.binaries.containerd,
        ['--config', files.containerd, '--log-level', 'warn'],
        join(o.logDir, 'containerd.log'),
        path(o.binaries.dir, dirs.sbin),
      );
      // Ready when the CRI answers; a CRI plugin that failed to load fails the start at once.
      await processes.waitReady(
        containerd,
        async () => {
          const log = await readFile(containerd.logPath, 'utf8');
          const failed = /.*failed to load plugin.*id=io\.containerd\.grpc\.v1\.cri .*/.exec(log);
          if (failed) {
            throw new ComponentError(
              'containerd',
              `its CRI plugin did not load: ${failed[0]}`,
              containerd.logPath,
            );
          }
          return (await node.crictl(['version'])).includes('RuntimeName');
        },
        o.readyTimeoutMs,
      );
      for (const archive of o.imageArchives) await node.importImage(archive);
      o.progress(`[node] containerd ready, ${o.imageArchives.length} images imported (${elapsed(t0)})`);

      const kubelet = processes.start(
        'kubelet',
        o.binaries.kubelet,
        [
          `--config=${files.kubelet}`,
          `--kubeconfig=${o.kubeletKubeconfig}`,
          `--root-dir=${dirs.kubelet}`,
          `--cert-dir=${join(dirs.kubelet, 'pki')}`,
          `--hostname-override=${REAL_NODE_NAME}`,
          `--node-ip=${hostNetwork.nodeIp}`,
          `--node-labels=${realNodeLabel}=true`,
          '--v=1',
        ],
        join(o.logDir, 'kubelet.log'),
        path(),
      );
      const kubeProxy = processes.start(
        'kube-proxy',
        o.binaries.kubeProxy,
        [`--config=${files.kubeProxy}`, '--v=1'],
        join(o.logDir, 'kube-proxy.log'),
        path(dirs.sbin),
      );
      const core = o.admin.makeApiClient(CoreV1Api);
      await processes.waitReady(
        kubelet,
        async () => {
          const n = await core.readNode({ name: REAL_NODE_NAME });
          return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
        },
        o.readyTimeoutMs,
      );
      await processes.waitReady(
        kubeProxy,
        async () => (await fetch('http://127.0.0.1:20256/healthz')).ok,
        o.readyTimeoutMs,
      );
      o.progress(`[node] ${REAL_NODE_NAME} Ready at ${hostNetwork.nodeIp} (${elapsed(t0)})`);
      return node;
    } catch (err) {
      await node.stopProcesses();
      throw err;
    }
  }

  ctr(args: string[]): Promise<string> {
    return sh(this.binaries.ctr, ['--address', this.dirs.socket, '--namespace', 'k8s.io', ...args]);
  }

  crictl(args: string[]): Promise<string> {
    return sh(this.binaries.crictl, [
      '--runtime-endpoint',
      `unix://${this.dirs.socket}`,
      '--timeout',
      '30s',
      ...args,
    ]);
  }

  /** Imports an OCI or docker archive into the CRI namespace (the name comes from the archive). */
  async importImage(archive: string): Promise<void> {
    await this.ctr(['images', 'import', '--platform', 'linux/amd64', archive]);
  }

  /**
   * Stops kube-proxy and kubelet, removes every pod through CRI (CNI DEL releases IPs and
   * veths), then stops containerd. Shims, mounts and the rest are the host cleanup's job.
   */
  async stopProcesses(): Promise<void> {
    const byName = (name: string): Component | undefined =>
      this.processes.components.find((c) => c.name === name);
    for (const name of ['kube-proxy', 'kubelet']) {
      const c = byName(name);
      if (c) await this.processes.stop(c);
    }
    const containerd = byName('containerd');
    if (containerd && !containerd.exit) {
      await this.crictl(['rmp', '--all', '--force']).catch(() => undefined);
      await this.processes.stop(containerd, 15_000);
    }
  }
}

function elapsed(t0: number): string {
  return `${((Date.now() - t0) / 1000).toFixed(1)} s`;
}
