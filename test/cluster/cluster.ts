// A real, throwaway Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC on),
// kube-controller-manager, kube-scheduler and kwok with fake nodes and, with `realNode`, one real
// node (node/) that runs the project's images. Used by the e2e tests, `npm run cluster` and
// `npm run demo`.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Node } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { PooledKubeConfig } from '../../operator/src/kube/client.ts';
import { buildControlPlane, buildPrometheus, type ControlPlaneBinaries } from './build.ts';
import { buildImages, type ProjectImages } from './images.ts';
import { buildNode } from './node/build.ts';
import { cleanHost, hostNetwork, installNetGuard, prepareHost, removeNetGuard } from './node/host.ts';
import { REAL_NODE_NAME, RealNode } from './node/node.ts';
import { ensureDebianPackages } from './node/packages.ts';
import { type ClusterPki, generatePki, type PemPair } from './pki.ts';
import { type Component, ComponentError, freePort, ProcessGroup } from './processes.ts';
import { LocalPrometheus } from './prometheus.ts';

export interface StartOptions {
  /** Fake (kwok) nodes to create. */
  nodes?: number;
  /** Prebuilt binaries; built (or taken from the cache) when absent. */
  binaries?: ControlPlaneBinaries;
  /** Fixed ports instead of free ones (mainly to test the port-in-use error). */
  ports?: Partial<Ports>;
  /** Progress lines; default: stderr. */
  progress?: (line: string) => void;
  /** How long each component may take to become ready. */
  readyTimeoutMs?: number;
  /** One real node (containerd, kubelet, kube-proxy) beside the kwok nodes; needs root. */
  realNode?: boolean;
  /**
   * Prometheus 3 (built from go/prometheus) on 127.0.0.1, scraping the real node's pods
   * annotated prometheus.io/scrape: "true" (prometheus.ts); needs `realNode`.
   */
  prometheus?: boolean;
  /** Prometheus's scrape interval; default 2s. */
  prometheusScrapeInterval?: string;
  /**
   * Extra kube-controller-manager flags, e.g. a higher --kube-api-qps (default 20, which lets
   * it take in about 7 new Deployments a second: 25 min for 10,000).
   */
  controllerManagerArgs?: string[];
}

/** Debian packages the real node runs with. */
export const realNodePackages = ['runc', 'nftables', 'iproute2'] as const;

interface Ports {
  etcdClient: number;
  etcdPeer: number;
  apiserver: number;
  controllerManager: number;
  scheduler: number;
  kwok: number;
}

const adminUser = 'admin';
const nodeUser = `system:node:${REAL_NODE_NAME}`;
const kubeProxyUser = 'system:kube-proxy';
/** Prometheus's pod discovery: RBAC gives it get/list/watch on pods only (prometheus.ts). */
const prometheusUser = 'gso-prometheus';
const componentUsers = [
  'system:kube-controller-manager',
  'system:kube-scheduler',
  'kwok-controller',
  nodeUser,
  kubeProxyUser,
];

// Deployment writes are recorded so tests can count what the operator wrote, and every
// request of the operator's ServiceAccounts so the benchmark can count its load on the apiserver.
export const OPERATOR_SERVICE_ACCOUNTS_GROUP = 'system:serviceaccounts:graceful-shutdown-system';
const auditPolicy = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    { level: 'Metadata', userGroups: [OPERATOR_SERVICE_ACCOUNTS_GROUP] },
    {
      level: 'Metadata',
      verbs: ['create', 'update', 'patch', 'delete'],
      resources: [{ group: 'apps', resources: ['deployments'] }],
    },
    { level: 'None' },
  ],
};

export function kubeconfigYaml(
  server: string,
  ca: string,
  user: { cert: string; key: string } | { token: string },
): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const credentials =
    'token' in user
      ? { token: user.token }
      : { 'client-certificate-data': b64(user.cert), 'client-key-data': b64(user.key) };
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server, 'certificate-authority-data': b64(ca) } }],
    users: [{ name: 'user', user: credentials }],
    contexts: [{ name: 'local', context: { cluster: 'local', user: 'user' } }],
    'current-context': 'local',
  });
}

function httpGet(
  url: string,
  tls?: { ca?: string; client?: PemPair },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = {
      timeout: 2000,
      ...(tls
        ? {
            ca: tls.ca,
            cert: tls.client?.cert,
            key: tls.client?.key,
            rejectUnauthorized: tls.ca !== undefined,
          }
        : {}),
    };
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, options, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout GET ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * A client for the cluster as its admin, whose calls share keep-alive connections as client-go's
 * do (the operator's PooledKubeConfig): with client-node's own, every call opens a TLS connection,
 * which costs both sides CPU and would slow the benchmark's bare client, its limit, unfairly.
 */
export function loadAdminKubeConfig(path: string): KubeConfig {
  const kc = new PooledKubeConfig();
  kc.loadFromFile(path);
  return kc;
}

export class LocalCluster {
  readonly workDir: string;
  readonly binaries: ControlPlaneBinaries;
  readonly server: string;
  readonly kubeconfigPath: string;
  /** JSON-lines audit log of Deployment writes. */
  readonly auditLogPath: string;
  private readonly pki: ClusterPki;
  private readonly processes: ProcessGroup;
  private readonly apiserverStart: { args: string[]; logPath: string };
  private apiserver: Component;
  private stopped = false;
  /** The real node and the images imported into it, when started with `realNode`. */
  node: RealNode | undefined;
  images: ProjectImages | undefined;
  private prometheus: LocalPrometheus | undefined;
  /** The nft table that keeps kwok pod and Service traffic on this machine, without a real node. */
  private netGuard: string | undefined;

  private constructor(init: {
    workDir: string;
    binaries: ControlPlaneBinaries;
    server: string;
    pki: ClusterPki;
    processes: ProcessGroup;
    apiserver: Component;
    apiserverStart: { args: string[]; logPath: string };
  }) {
    this.workDir = init.workDir;
    this.binaries = init.binaries;
    this.server = init.server;
    this.pki = init.pki;
    this.processes = init.processes;
    this.apiserver = init.apiserver;
    this.apiserverStart = init.apiserverStart;
    this.kubeconfigPath = join(init.workDir, 'admin.kubeconfig');
    this.auditLogPath = join(init.workDir, 'logs', 'audit.log');
  }

  /** http://127.0.0.1:PORT of the cluster's Prometheus, when started with `prometheus`. */
  get prometheusUrl(): string | undefined {
    return this.prometheus?.url;
  }

  /** The OTLP metrics endpoint of the cluster's Prometheus for pods on the real node. */
  get prometheusOtlpUrl(): string | undefined {
    return this.prometheus?.otlpUrl;
  }

  get kubernetesVersion(): string {
    return this.binaries.kubernetesVersion;
  }

  /** Log file of each component, by name. */
  get componentLogs(): Record<string, string> {
    return {
      ...Object.fromEntries(this.processes.components.map((c) => [c.name, c.logPath])),
      ...this.node?.componentLogs,
    };
  }

  /** PIDs of the running components (for tests that check nothing is left behind). */
  get pids(): number[] {
    return [
      ...this.processes.components.filter((c) => !c.exit).map((c) => c.pid),
      ...(this.node?.pids ?? []),
    ];
  }

  adminKubeConfig(): KubeConfig {
    return loadAdminKubeConfig(this.kubeconfigPath);
  }

  static async start(opts: StartOptions = {}): Promise<LocalCluster> {
    const progress = opts.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
    if (opts.prometheus && !opts.realNode) {
      throw new Error(
        'LocalCluster.start: `prometheus: true` needs `realNode: true` (Prometheus scrapes pods on the real node; kwok pods have no real address)',
      );
    }
    const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
    const binaries = opts.binaries ?? (await buildControlPlane({ progress }));
    let nodeBuild: { binaries: Awaited<ReturnType<typeof buildNode>>; images: ProjectImages } | undefined;
    if (opts.realNode) {
      await ensureDebianPackages(realNodePackages, progress);
      const nodeBinaries = await buildNode({ progress });
      nodeBuild = {
        binaries: nodeBinaries,
        images: await buildImages({ pauseBinary: nodeBinaries.pause, progress }),
      };
    }
    const prometheusBinaries = opts.prometheus ? await buildPrometheus({ progress }) : undefined;
    const workDir = await mkdtemp(join(tmpdir(), 'gso-cluster-'));
    const logs = join(workDir, 'logs');
    const pkiDir = join(workDir, 'pki');
    const dataDir = join(workDir, 'etcd');
    await Promise.all([mkdir(logs), mkdir(pkiDir), mkdir(dataDir)]);
    const processes = new ProcessGroup();
    const t0 = Date.now();
    const nodeDir = join(workDir, 'node');
    let cluster: LocalCluster | undefined;
    let netGuard: string | undefined;
    try {
      // Before any component runs: the real node's guard, or one of the cluster's own.
      if (nodeBuild) await prepareHost({ workDir: nodeDir, binDir: nodeBuild.binaries.dir });
      else netGuard = await installNetGuard(progress);
      const pki = await generatePki([
        { user: adminUser, groups: ['system:masters'] },
        // The components run with full rights, as envtest and kwokctl run them.
        ...componentUsers.map((user) => ({ user, groups: ['system:masters'] })),
        ...(opts.prometheus ? [{ user: prometheusUser, groups: [] }] : []),
      ]);
      const file = async (name: string, content: string) => {
        const path = join(pkiDir, name);
        await writeFile(path, content, { mode: 0o600 });
        return path;
      };
      const caFile = await file('ca.crt', pki.ca.cert);
      const apiserverCert = await file('apiserver.crt', pki.apiserver.cert);
      const apiserverKey = await file('apiserver.key', pki.apiserver.key);
      const saPub = await file('sa.pub', pki.serviceAccount.publicKey);
      const saKey = await file('sa.key', pki.serviceAccount.privateKey);
      const auditPolicyFile = await file('audit-policy.yaml', stringify(auditPolicy));

      const ports: Ports = {
        etcdClient: opts.ports?.etcdClient ?? (await freePort()),
        etcdPeer: opts.ports?.etcdPeer ?? (await freePort()),
        apiserver: opts.ports?.apiserver ?? (await freePort()),
        controllerManager: opts.ports?.controllerManager ?? (await freePort()),
        scheduler: opts.ports?.scheduler ?? (await freePort()),
        kwok: opts.ports?.kwok ?? (await freePort()),
      };

      const etcdUrl = `http://127.0.0.1:${ports.etcdClient}`;
      const peerUrl = `http://127.0.0.1:${ports.etcdPeer}`;
      const etcd = processes.start(
        'etcd',
        binaries.etcd,
        [
          '--name=default',
          `--data-dir=${dataDir}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=default=${peerUrl}`,
          '--unsafe-no-fsync=true',
          '--log-level=warn',
        ],
        join(logs, 'etcd.log'),
      );
      await processes.waitReady(
        etcd,
        async () => (await httpGet(`${etcdUrl}/health`)).body.includes('"health":"true"'),
        readyTimeoutMs,
      );
      progress(`[cluster] etcd ready on ${etcdUrl}`);

      const server = `https://127.0.0.1:${ports.apiserver}`;
      // With a real node, pods reach the apiserver through the `kubernetes` Service, whose
      // endpoint is the node IP; kube-apiserver then listens there too and keeps that endpoint.
      const apiserverNetwork = nodeBuild
        ? [
            '--bind-address=0.0.0.0',
            `--advertise-address=${hostNetwork.nodeIp}`,
            '--endpoint-reconciler-type=lease',
            // The apiserver reaches kubelets by IP, never by a hostname (a DNS lookup).
            '--kubelet-preferred-address-types=InternalIP',
          ]
        : ['--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', '--endpoint-reconciler-type=none'];
      const apiserverArgs = [
        `--etcd-servers=${etcdUrl}`,
        ...apiserverNetwork,
        `--secure-port=${ports.apiserver}`,
        `--cert-dir=${pkiDir}`,
        `--tls-cert-file=${apiserverCert}`,
        `--tls-private-key-file=${apiserverKey}`,
        `--client-ca-file=${caFile}`,
        '--authorization-mode=RBAC',
        '--service-cluster-ip-range=10.0.0.0/24',
        '--allow-privileged=true',
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`,
        `--audit-policy-file=${auditPolicyFile}`,
        `--audit-log-path=${join(logs, 'audit.log')}`,
        '--audit-log-format=json',
        '--v=1',
      ];
      const apiserverLog = join(logs, 'kube-apiserver.log');
      const admin = pki.clients[adminUser] as PemPair;
      const apiserver = processes.start(
        'kube-apiserver',
        binaries.kubeApiserver,
        apiserverArgs,
        apiserverLog,
      );
      cluster = new LocalCluster({
        workDir,
        binaries,
        server,
        pki,
        processes,
        apiserver,
        apiserverStart: { args: apiserverArgs, logPath: apiserverLog },
      });
      cluster.netGuard = netGuard;
      await cluster.waitApiserverReady(readyTimeoutMs);
      progress(`[cluster] kube-apiserver ${binaries.kubernetesVersion} ready on ${server}`);

      await writeFile(cluster.kubeconfigPath, kubeconfigYaml(server, pki.ca.cert, admin), { mode: 0o600 });
      const componentKubeconfig = async (user: string) => {
        const path = join(workDir, `${user.replaceAll(':', '-')}.kubeconfig`);
        await writeFile(path, kubeconfigYaml(server, pki.ca.cert, pki.clients[user] as PemPair), {
          mode: 0o600,
        });
        return path;
      };

      const kcm = processes.start(
        'kube-controller-manager',
        binaries.kubeControllerManager,
        [
          `--kubeconfig=${await componentKubeconfig('system:kube-controller-manager')}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${ports.controllerManager}`,
          `--root-ca-file=${caFile}`,
          `--service-account-private-key-file=${saKey}`,
          '--leader-elect=false',
          '--v=1',
          ...(opts.controllerManagerArgs ?? []),
        ],
        join(logs, 'kube-controller-manager.log'),
      );
      const scheduler = processes.start(
        'kube-scheduler',
        binaries.kubeScheduler,
        [
          `--kubeconfig=${await componentKubeconfig('system:kube-scheduler')}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${ports.scheduler}`,
          '--leader-elect=false',
          '--v=1',
        ],
        join(logs, 'kube-scheduler.log'),
      );
      const kwok = processes.start(
        'kwok',
        binaries.kwok,
        [
          `--kubeconfig=${await componentKubeconfig('kwok-controller')}`,
          '--manage-all-nodes=false',
          '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
          '--cidr=10.244.0.0/16',
          '--node-ip=127.0.0.1',
          `--server-address=127.0.0.1:${ports.kwok}`,
          ...binaries.kwokStages.flatMap((s) => ['-c', s]),
        ],
        join(logs, 'kwok.log'),
      );
      const healthz =
        (port: number, scheme = 'https') =>
        async () =>
          (await httpGet(`${scheme}://127.0.0.1:${port}/healthz`, scheme === 'https' ? {} : undefined))
            .status === 200;
      await Promise.all([
        processes.waitReady(kcm, healthz(ports.controllerManager), readyTimeoutMs),
        processes.waitReady(scheduler, healthz(ports.scheduler), readyTimeoutMs),
        processes.waitReady(kwok, healthz(ports.kwok, 'http'), readyTimeoutMs),
      ]);
      progress('[cluster] kube-controller-manager, kube-scheduler and kwok ready');

      await cluster.createFakeNodes(opts.nodes ?? 3, kwok, readyTimeoutMs);
      await cluster.waitDefaultServiceAccount(kcm, readyTimeoutMs);
      if (nodeBuild) {
        const { images } = nodeBuild;
        cluster.images = images;
        cluster.node = await RealNode.start({
          binaries: nodeBuild.binaries,
          imageArchives: [images.pause, images.operator, images.demoService].map((i) => i.archive),
          sandboxImage: images.pause.ref,
          workDir: nodeDir,
          logDir: logs,
          kubeletKubeconfig: await componentKubeconfig(nodeUser),
          kubeProxyKubeconfig: await componentKubeconfig(kubeProxyUser),
          admin: cluster.adminKubeConfig(),
          progress,
          readyTimeoutMs,
        });
      }
      if (prometheusBinaries) {
        const tp = Date.now();
        cluster.prometheus = await LocalPrometheus.start({
          processes,
          binary: prometheusBinaries.prometheus,
          dir: join(workDir, 'prometheus'),
          logPath: join(logs, 'prometheus.log'),
          apiServer: server,
          caCert: pki.ca.cert,
          discoveryClient: pki.clients[prometheusUser] as PemPair,
          discoveryUser: prometheusUser,
          admin: cluster.adminKubeConfig(),
          nodeName: REAL_NODE_NAME,
          podCidr: hostNetwork.podCidr,
          podBridgeAddress: cluster.node ? hostNetwork.nodeIp : undefined,
          scrapeInterval: opts.prometheusScrapeInterval,
          readyTimeoutMs,
        });
        progress(
          `[cluster] prometheus ${prometheusBinaries.version} ready on ${cluster.prometheus.url} in ${((Date.now() - tp) / 1000).toFixed(1)} s`,
        );
      }
      progress(
        `[cluster] usable after ${((Date.now() - t0) / 1000).toFixed(1)} s; kubeconfig: ${cluster.kubeconfigPath}`,
      );
      return cluster;
    } catch (err) {
      await cluster?.prometheus?.stop();
      await processes.stopAll();
      if (nodeBuild) await cleanHost();
      if (netGuard) await removeNetGuard(netGuard);
      // The logs are what explains the failure: keep them, remove the rest.
      await rm(pkiDir, { recursive: true, force: true });
      await rm(dataDir, { recursive: true, force: true });
      await rm(join(workDir, 'prometheus'), { recursive: true, force: true });
      if (err instanceof ComponentError) throw err;
      throw new Error(
        `starting the local cluster failed (component logs kept in ${logs}): ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  private async waitApiserverReady(timeoutMs: number): Promise<void> {
    const admin = this.pki.clients[adminUser] as PemPair;
    await this.processes.waitReady(
      this.apiserver,
      async () =>
        (await httpGet(`${this.server}/readyz`, { ca: this.pki.ca.cert, client: admin })).status === 200,
      timeoutMs,
    );
  }

  private async createFakeNodes(count: number, kwok: Component, timeoutMs: number): Promise<void> {
    const core = this.adminKubeConfig().makeApiClient(CoreV1Api);
    for (let i = 0; i < count; i++) {
      const node: V1Node = {
        metadata: {
          name: `kwok-node-${i}`,
          annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
          labels: { type: 'kwok', 'kubernetes.io/hostname': `kwok-node-${i}`, 'kubernetes.io/os': 'linux' },
        },
        status: {
          allocatable: { cpu: '32', memory: '256Gi', pods: '110' },
          capacity: { cpu: '32', memory: '256Gi', pods: '110' },
        },
      };
      await core.createNode({ body: node });
    }
    await this.processes.waitReady(
      kwok,
      async () => {
        const nodes = await core.listNode({ labelSelector: 'type=kwok' });
        return (
          nodes.items.length === count &&
          nodes.items.every((n) =>
            n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
          )
        );
      },
      timeoutMs,
    );
  }

  private async waitDefaultServiceAccount(kcm: Component, timeoutMs: number): Promise<void> {
    const core = this.adminKubeConfig().makeApiClient(CoreV1Api);
    await this.processes.waitReady(
      kcm,
      async () => {
        await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
        return true;
      },
      timeoutMs,
    );
  }

  /** Writes a kubeconfig authenticating as a ServiceAccount (see serviceAccountKubeconfig). */
  serviceAccountKubeconfig(namespace: string, name: string, expirationSeconds = 3600): Promise<string> {
    return serviceAccountKubeconfig(this.adminKubeConfig(), namespace, name, this.workDir, expirationSeconds);
  }

  /** Stops kube-apiserver and starts it again on the same port and storage. */
  async restartApiserver(downMs = 0, readyTimeoutMs = 60_000): Promise<void> {
    await this.processes.stop(this.apiserver);
    if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
    this.apiserver = this.processes.start(
      'kube-apiserver',
      this.binaries.kubeApiserver,
      this.apiserverStart.args,
      this.apiserverStart.logPath,
    );
    await this.waitApiserverReady(readyTimeoutMs);
  }

  /** Apps client bound to the admin identity (convenience for tests). */
  appsApi(): AppsV1Api {
    return this.adminKubeConfig().makeApiClient(AppsV1Api);
  }

  /**
   * Stops every component by PID and removes the work directory; with keepLogs the component
   * logs stay (for a failed run) and their directory is returned.
   */
  async stop(opts: { keepLogs?: boolean } = {}): Promise<string | undefined> {
    if (this.stopped) return undefined;
    this.stopped = true;
    await this.prometheus?.stop();
    await this.node?.stopProcesses();
    await this.processes.stopAll();
    if (this.node) await cleanHost();
    if (this.netGuard) await removeNetGuard(this.netGuard);
    if (opts.keepLogs) {
      for (const sub of ['pki', 'etcd', 'prometheus'])
        await rm(join(this.workDir, sub), { recursive: true, force: true });
      return join(this.workDir, 'logs');
    }
    await rm(this.workDir, { recursive: true, force: true });
    return undefined;
  }
}

/**
 * Writes a kubeconfig that authenticates as a ServiceAccount with a token from the TokenRequest
 * API, so a process can run under that account's RBAC. Returns its path (in dir).
 */
export async function serviceAccountKubeconfig(
  admin: KubeConfig,
  namespace: string,
  name: string,
  dir: string,
  expirationSeconds = 3600,
): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const tokenRequest = await core.createNamespacedServiceAccountToken({
    namespace,
    name,
    body: { spec: { audiences: [], expirationSeconds } },
  });
  const token = tokenRequest.status?.token;
  if (!token) throw new Error(`TokenRequest for ${namespace}/${name} returned no token`);
  const cluster = admin.getCurrentCluster();
  if (!cluster?.caData) throw new Error('the admin kubeconfig has no embedded CA');
  const path = join(dir, `sa-${namespace}-${name}.kubeconfig`);
  await writeFile(
    path,
    kubeconfigYaml(cluster.server, Buffer.from(cluster.caData, 'base64').toString(), { token }),
    {
      mode: 0o600,
    },
  );
  return path;
}
