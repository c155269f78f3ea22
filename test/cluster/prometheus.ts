// A real Prometheus in the test cluster: Debian's `prometheus` as one more component of
// LocalCluster (with the real node), scraping the real node's pods that carry the prometheus.io
// annotations, so the operator's Prometheus source can be tested against the labels a real pod
// scrape attaches (`namespace`, `pod`, `app`).
//
// Discovery. Debian builds Prometheus without kubernetes_sd_configs (NEWS.Debian, 1.5.0+ds-1:
// "Kubernetes support has been completely removed, due to the insane amount of dependencies in
// their client library"; `promtool check config` rejects the field). So Prometheus discovers pods
// with http_sd_configs from a small endpoint in this process, which lists pods with a dedicated
// identity (RBAC: get/list/watch pods, nothing else) and answers with the target groups that
// kubernetes_sd's pod role builds: the same __meta_kubernetes_* labels, one target per container
// port, none for a pod without an IP. The relabeling is the standard kubernetes-pods one and works
// unchanged under kubernetes_sd_configs.
//
// Nothing leaves the machine: Prometheus listens on 127.0.0.1, discovery answers on 127.0.0.1,
// the relabeling keeps only pods on the real node whose address is on the pod bridge (kwok pods
// have fake IPs), and every address in the config is an IP literal, so nothing is resolved.
// Prometheus runs under `setpriv --pdeathsig SIGKILL`: should the cluster's owner be killed
// (kill -9, no cleanup), Prometheus dies with it instead of scraping pod addresses whose bridge
// and guard the next start removes.
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, type V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { z } from 'zod';
import { type Component, freePort, type ProcessGroup } from './processes.ts';

/** Debian packages Prometheus needs (installed with ensureDebianPackages). */
export const prometheusPackages = ['prometheus'] as const;
export const PROMETHEUS_BINARY = '/usr/bin/prometheus';
/** Same package: checks and unit-tests rule files. */
export const PROMTOOL_BINARY = '/usr/bin/promtool';
/** util-linux (Essential): execs Prometheus with a parent-death signal. */
const SETPRIV = '/usr/bin/setpriv';

export const DEFAULT_SCRAPE_INTERVAL = '2s';
export const SCRAPE_JOB = 'kubernetes-pods';
/** Path of the discovery endpoint (http_sd). */
const DISCOVERY_PATH = '/pods';

// --- discovery: the target groups of kubernetes_sd's pod role ----------------------------------

/** One http_sd / file_sd target group. */
export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

const meta = '__meta_kubernetes_';

/** Prometheus's strutil.SanitizeLabelName: every character outside [a-zA-Z0-9_] becomes `_`. */
export function sanitizeLabelName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, '_');
}

/** The pod-level labels kubernetes_sd's pod role attaches (discovery/kubernetes/pod.go, podLabels). */
function podMetaLabels(pod: V1Pod): Record<string, string> {
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown';
  const labels: Record<string, string> = {
    [`${meta}namespace`]: pod.metadata?.namespace ?? '',
    [`${meta}pod_name`]: pod.metadata?.name ?? '',
    [`${meta}pod_ip`]: pod.status?.podIP ?? '',
    [`${meta}pod_ready`]: ready.toLowerCase(),
    [`${meta}pod_phase`]: pod.status?.phase ?? '',
    [`${meta}pod_node_name`]: pod.spec?.nodeName ?? '',
    [`${meta}pod_host_ip`]: pod.status?.hostIP ?? '',
    [`${meta}pod_uid`]: pod.metadata?.uid ?? '',
  };
  const controller = pod.metadata?.ownerReferences?.find((r) => r.controller);
  if (controller?.kind) labels[`${meta}pod_controller_kind`] = controller.kind;
  if (controller?.name) labels[`${meta}pod_controller_name`] = controller.name;
  for (const [key, value] of Object.entries(pod.metadata?.labels ?? {})) {
    labels[`${meta}pod_label_${sanitizeLabelName(key)}`] = value;
    labels[`${meta}pod_labelpresent_${sanitizeLabelName(key)}`] = 'true';
  }
  for (const [key, value] of Object.entries(pod.metadata?.annotations ?? {})) {
    labels[`${meta}pod_annotation_${sanitizeLabelName(key)}`] = value;
    labels[`${meta}pod_annotationpresent_${sanitizeLabelName(key)}`] = 'true';
  }
  return labels;
}

/**
 * The targets kubernetes_sd's pod role builds (pod.go, buildPod), one group per target since
 * http_sd has no per-target labels: none for a pod without an IP; per container, one target per
 * declared port (podIP:port) or, with no ports, one target at the bare pod IP.
 */
export function podTargetGroups(pods: readonly V1Pod[]): TargetGroup[] {
  const groups: TargetGroup[] = [];
  for (const pod of pods) {
    const ip = pod.status?.podIP;
    if (!ip) continue;
    const host = isIP(ip) === 6 ? `[${ip}]` : ip;
    const common = podMetaLabels(pod);
    for (const container of pod.spec?.containers ?? []) {
      const containerLabels = {
        ...common,
        [`${meta}pod_container_name`]: container.name,
        [`${meta}pod_container_image`]: container.image ?? '',
      };
      const ports = container.ports ?? [];
      if (ports.length === 0) groups.push({ targets: [ip], labels: containerLabels });
      for (const port of ports) {
        groups.push({
          targets: [`${host}:${port.containerPort}`],
          labels: {
            ...containerLabels,
            [`${meta}pod_container_port_name`]: port.name ?? '',
            [`${meta}pod_container_port_number`]: String(port.containerPort),
            [`${meta}pod_container_port_protocol`]: port.protocol ?? 'TCP',
          },
        });
      }
    }
  }
  return groups;
}

// --- the config ---------------------------------------------------------------------------------

export interface PrometheusConfigInput {
  /** The http_sd endpoint, http://<IP>:<port>/...: an IP literal, never a name. */
  discoveryUrl: string;
  /** Only pods on this node are scraped (the real node). */
  nodeName: string;
  /** Only pod addresses in this CIDR are scraped (the pod bridge); octet-aligned (/8../32). */
  podCidr: string;
  /** global.scrape_interval, also the discovery refresh; default 2s (tests need fast data). */
  scrapeInterval?: string;
}

/** RE2 literal, as Go's regexp.QuoteMeta. */
function quoteMeta(text: string): string {
  return text.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/** An RE2 pattern (fully anchored, as relabel regexes are) for the IPv4 addresses of a CIDR. */
export function ipv4CidrRegex(cidr: string): string {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const bits = Number(match?.[5]);
  if (!match || isIP(cidr.split('/')[0] as string) !== 4 || bits % 8 !== 0 || bits < 8 || bits > 32) {
    throw new Error(`pod CIDR ${cidr}: want an IPv4 CIDR with a prefix of 8, 16, 24 or 32 bits`);
  }
  const fixed = match.slice(1, 1 + bits / 8);
  const free = Array.from({ length: 4 - bits / 8 }, () => '\\d{1,3}');
  return [...fixed.map(quoteMeta), ...free].join('\\.');
}

const durationPattern = /^(\d+(ms|s|m|h|d|w|y))+$/;

/**
 * prometheus.yml for the test cluster: one job, `kubernetes-pods`, over the discovery endpoint,
 * with the standard relabeling of annotated pods (keep prometheus.io/scrape: "true", path and port
 * from prometheus.io/path and prometheus.io/port, address podIP:port) and the labels the operator's
 * queries select on (namespace, pod) plus app. Pure: the input is validated, nothing is resolved.
 */
export function prometheusConfig(input: PrometheusConfigInput): Record<string, unknown> {
  const scrapeInterval = input.scrapeInterval ?? DEFAULT_SCRAPE_INTERVAL;
  if (!durationPattern.test(scrapeInterval)) {
    throw new Error(`scrape interval "${scrapeInterval}" is not a Prometheus duration (2s, 500ms, 1m)`);
  }
  const discovery = new URL(input.discoveryUrl);
  const discoveryHost = discovery.hostname.replace(/^\[|\]$/g, '');
  if (discovery.protocol !== 'http:' || isIP(discoveryHost) === 0) {
    throw new Error(
      `discovery URL ${input.discoveryUrl}: want http://<IP address>:<port>/..., no host names`,
    );
  }
  return {
    global: { scrape_interval: scrapeInterval, evaluation_interval: scrapeInterval },
    scrape_configs: [
      {
        job_name: SCRAPE_JOB,
        http_sd_configs: [{ url: discovery.toString(), refresh_interval: scrapeInterval }],
        relabel_configs: [
          // Only the real node: kwok pods have fake IPs no packet may be sent to.
          {
            source_labels: [`${meta}pod_node_name`],
            regex: quoteMeta(input.nodeName),
            action: 'keep',
          },
          // And only addresses on the pod bridge (a hostNetwork pod has the node IP, also there).
          { source_labels: [`${meta}pod_ip`], regex: ipv4CidrRegex(input.podCidr), action: 'keep' },
          {
            source_labels: [`${meta}pod_annotation_prometheus_io_scrape`],
            regex: 'true',
            action: 'keep',
          },
          // A pod not (or no longer) running has nothing to scrape.
          {
            source_labels: [`${meta}pod_phase`],
            regex: 'Pending|Succeeded|Failed|Completed',
            action: 'drop',
          },
          {
            source_labels: [`${meta}pod_annotation_prometheus_io_path`],
            regex: '(.+)',
            target_label: '__metrics_path__',
            replacement: '$1',
            action: 'replace',
          },
          {
            source_labels: [`${meta}pod_ip`, `${meta}pod_annotation_prometheus_io_port`],
            regex: '(.+);(\\d+)',
            target_label: '__address__',
            replacement: '$1:$2',
            action: 'replace',
          },
          { source_labels: [`${meta}namespace`], target_label: 'namespace', action: 'replace' },
          { source_labels: [`${meta}pod_name`], target_label: 'pod', action: 'replace' },
          { source_labels: [`${meta}pod_label_app`], target_label: 'app', action: 'replace' },
        ],
      },
    ],
  };
}

export function prometheusConfigYaml(input: PrometheusConfigInput): string {
  return `# Generated by test/cluster/prometheus.ts for the test cluster; IP addresses only.\n${stringify(prometheusConfig(input))}`;
}

// --- the component ------------------------------------------------------------------------------

export interface PrometheusStartOptions {
  processes: ProcessGroup;
  /** Config and TSDB go here (created). */
  dir: string;
  logPath: string;
  /** Kubeconfig of the identity discovery lists pods with; granted get/list/watch pods. */
  discoveryKubeconfig: string;
  /** Grants the discovery identity its RBAC. */
  admin: KubeConfig;
  discoveryUser: string;
  nodeName: string;
  podCidr: string;
  scrapeInterval?: string;
  readyTimeoutMs: number;
}

const discoveryRole = 'gso-test:prometheus-discovery';

/** A ClusterRole that reads pods, bound to the discovery user: all that discovery needs. */
async function grantPodDiscovery(admin: KubeConfig, user: string): Promise<void> {
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createClusterRole({
    body: {
      metadata: { name: discoveryRole },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }],
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: discoveryRole },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: discoveryRole },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
    },
  });
}

/** The http_sd endpoint on 127.0.0.1: every pod in the cluster, as kubernetes_sd's pod role. */
async function startDiscoveryServer(kubeconfig: KubeConfig): Promise<{ server: Server; url: string }> {
  const core = kubeconfig.makeApiClient(CoreV1Api);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== DISCOVERY_PATH) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    core.listPodForAllNamespaces().then(
      (list) => {
        res
          .writeHead(200, { 'Content-Type': 'application/json' })
          .end(JSON.stringify(podTargetGroups(list.items)));
      },
      // Prometheus keeps the targets of its last successful refresh.
      (err: unknown) => {
        res.writeHead(503, { 'Content-Type': 'text/plain' }).end(`listing pods failed: ${String(err)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('discovery server has no port');
  return { server, url: `http://127.0.0.1:${address.port}${DISCOVERY_PATH}` };
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // Prometheus keeps its discovery connection alive: close() alone would wait for it.
  server.closeAllConnections();
  await closed;
}

export class LocalPrometheus {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly component: Component;
  readonly configPath: string;
  private readonly processes: ProcessGroup;
  private readonly discovery: Server;

  private constructor(init: {
    url: string;
    component: Component;
    configPath: string;
    processes: ProcessGroup;
    discovery: Server;
  }) {
    this.url = init.url;
    this.component = init.component;
    this.configPath = init.configPath;
    this.processes = init.processes;
    this.discovery = init.discovery;
  }

  /**
   * Grants discovery its RBAC, starts the discovery endpoint and Prometheus (through the
   * cluster's ProcessGroup, so a failed cluster start or stop ends it by PID) and waits for
   * GET /-/ready. On failure the endpoint is closed; the process is the ProcessGroup's to stop.
   */
  static async start(opts: PrometheusStartOptions): Promise<LocalPrometheus> {
    await grantPodDiscovery(opts.admin, opts.discoveryUser);
    const discoveryKc = new KubeConfig();
    discoveryKc.loadFromFile(opts.discoveryKubeconfig);
    const { server, url: discoveryUrl } = await startDiscoveryServer(discoveryKc);
    try {
      const dataDir = join(opts.dir, 'data');
      await mkdir(dataDir, { recursive: true });
      const configPath = join(opts.dir, 'prometheus.yml');
      await writeFile(
        configPath,
        prometheusConfigYaml({
          discoveryUrl,
          nodeName: opts.nodeName,
          podCidr: opts.podCidr,
          scrapeInterval: opts.scrapeInterval,
        }),
      );
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const component = opts.processes.start(
        'prometheus',
        SETPRIV,
        [
          '--pdeathsig',
          'SIGKILL',
          '--',
          PROMETHEUS_BINARY,
          `--config.file=${configPath}`,
          `--web.listen-address=127.0.0.1:${port}`,
          // Otherwise derived from the host name.
          `--web.external-url=${url}/`,
          `--storage.tsdb.path=${dataDir}`,
          '--storage.tsdb.retention.time=1h',
          '--log.level=info',
        ],
        opts.logPath,
      );
      await opts.processes.waitReady(
        component,
        async () => (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) })).status === 200,
        opts.readyTimeoutMs,
      );
      return new LocalPrometheus({
        url,
        component,
        configPath,
        processes: opts.processes,
        discovery: server,
      });
    } catch (err) {
      await closeServer(server);
      throw err;
    }
  }

  /** Stops Prometheus by PID, then the discovery endpoint. */
  async stop(): Promise<void> {
    await this.processes.stop(this.component);
    if (this.discovery.listening) await closeServer(this.discovery);
  }
}

// --- queries, for tests --------------------------------------------------------------------------

const PairSchema = z.tuple([z.number(), z.string()]);
const MetricSchema = z.record(z.string(), z.string());
const InstantResultSchema = z.discriminatedUnion('resultType', [
  z.object({
    resultType: z.literal('vector'),
    result: z.array(z.object({ metric: MetricSchema, value: PairSchema })),
  }),
  z.object({
    resultType: z.literal('matrix'),
    result: z.array(z.object({ metric: MetricSchema, values: z.array(PairSchema) })),
  }),
  z.object({ resultType: z.literal('scalar'), result: PairSchema }),
  z.object({ resultType: z.literal('string'), result: PairSchema }),
]);
const QueryResponseSchema = z.object({
  status: z.enum(['success', 'error']),
  data: z.unknown().optional(),
  errorType: z.string().optional(),
  error: z.string().optional(),
});

/** The `data` of an instant query: `vector` for most queries, values as Prometheus writes them. */
export type InstantQueryResult = z.infer<typeof InstantResultSchema>;

/** A sample value as the API writes it ("1.5", "+Inf", "NaN") as a number. */
export function sampleValue(text: string): number {
  if (/^\+?inf$/i.test(text)) return Number.POSITIVE_INFINITY;
  if (/^-inf$/i.test(text)) return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/**
 * GET <url>/api/v1/query: the parsed result of an instant query, at `time` (Unix seconds) or now.
 * Throws on an HTTP or PromQL error, with Prometheus's message.
 */
export async function queryPrometheus(
  url: string,
  promql: string,
  opts: { time?: number; timeoutMs?: number } = {},
): Promise<InstantQueryResult> {
  const endpoint = new URL(`${url.replace(/\/+$/, '')}/api/v1/query`);
  endpoint.searchParams.set('query', promql);
  if (opts.time !== undefined) endpoint.searchParams.set('time', String(opts.time));
  const response = await fetch(endpoint, { signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000) });
  const text = await response.text();
  let body: z.infer<typeof QueryResponseSchema>;
  try {
    body = QueryResponseSchema.parse(JSON.parse(text));
  } catch {
    throw new Error(
      `Prometheus answered HTTP ${response.status}, not an API response: ${text.slice(0, 200)}`,
    );
  }
  if (body.status === 'error' || !response.ok) {
    throw new Error(
      `Prometheus answered HTTP ${response.status}: ${body.errorType ?? 'error'}: ${body.error ?? '(no message)'} (query ${promql})`,
    );
  }
  return InstantResultSchema.parse(body.data);
}
