// A real Prometheus in the test cluster: Prometheus 3, built from Go modules (go/prometheus,
// build.ts) as one more component of LocalCluster (with the real node), scraping the real node's
// pods that carry the prometheus.io annotations, so the operator's Prometheus source is tested
// against the labels a real pod scrape attaches (`namespace`, `pod`, `app`).
//
// Discovery is Prometheus's own `kubernetes_sd_configs` with `role: pod`, against the test
// apiserver by its IP literal URL, over TLS checked with the cluster CA, as an identity of its own
// (a client certificate for the user gso-prometheus, no groups) whose RBAC allows get, list and
// watch on pods and nothing else. The relabeling is the standard kubernetes-pods one.
//
// Histograms. The job keeps classic histograms classic (`_bucket{le}` series, which the
// operator's built-in queries read): no native histograms are scraped and none is converted. A pod
// annotated `test.gracefulshutdown.dev/prometheus-nhcb: "true"` has its classic histograms ALSO
// stored as native histograms with custom buckets (NHCB): the relabeling sets the target's
// `__convert_classic_histograms_to_nhcb__` label (Prometheus 3.16 reads these per-target
// overrides), and `always_scrape_classic_histograms: true` keeps the classic series beside the
// NHCB. Then `histogram_quantile(0.99, sum(rate(m_bucket[1m])) by (le))` (classic) and
// `histogram_quantile(0.99, sum(rate(m[1m])))` (the NHCB, under the metric's base name) read the
// same buckets. Prometheus 3 normalises `le` values of classic buckets when it scrapes them: a
// target's le="1" is stored as le="1.0" (compare bounds as numbers, not strings).
//
// OTLP. The OTLP receiver is on (`/api/v1/otlp/v1/metrics`), so an application instrumented with
// the OpenTelemetry SDK can push to it as to a production Prometheus: an exponential histogram
// arrives as a native histogram. The resource attributes k8s.namespace.name and
// k8s.deployment.name are promoted to labels (k8s_namespace_name, k8s_deployment_name), as the
// operator's OpenTelemetry preset documents. With a real node, Prometheus also listens on the pod
// bridge's host address so that pods can push (`otlpUrl`).
//
// Nothing leaves the machine: Prometheus listens on 127.0.0.1 (and the pod bridge's host address), discovery talks to the apiserver
// on an IP literal, the relabeling keeps only pods on the real node whose address is on the pod
// bridge (kwok pods have fake IPs), and every address in the config is an IP literal, so nothing
// is resolved. Prometheus has no update check or usage report to turn off; only Kubernetes
// discovery is compiled in. It runs under `setpriv --pdeathsig SIGKILL`: should the cluster's
// owner be killed (kill -9, no cleanup), Prometheus dies with it instead of scraping pod
// addresses whose bridge and guard the next start removes.
import { mkdir, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { type KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { z } from 'zod';
import type { PemPair } from './pki.ts';
import { type Component, freePort, type ProcessGroup } from './processes.ts';

/** util-linux (Essential): execs Prometheus with a parent-death signal. */
const SETPRIV = '/usr/bin/setpriv';

export const DEFAULT_SCRAPE_INTERVAL = '2s';
export const SCRAPE_JOB = 'kubernetes-pods';
/** A pod annotated with this, value "true", has its classic histograms also stored as NHCB. */
export const NHCB_ANNOTATION = 'test.gracefulshutdown.dev/prometheus-nhcb';
/** That annotation's value for a pod whose classic histograms are stored as NHCB only. */
export const NHCB_ONLY = 'only';
/** The resource attributes the OTLP receiver turns into labels. */
export const OTLP_PROMOTED = ['k8s.namespace.name', 'k8s.deployment.name'] as const;

const meta = '__meta_kubernetes_';

/** Prometheus's strutil.SanitizeLabelName: every character outside [a-zA-Z0-9_] becomes `_`. */
export function sanitizeLabelName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, '_');
}

// --- the config ---------------------------------------------------------------------------------

export interface PrometheusConfigInput {
  /** The apiserver, https://<IP>:<port>: an IP literal, never a name. */
  apiServer: string;
  /** PEM files: the cluster CA, and discovery's client certificate and key. */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Only pods on this node are scraped (the real node). */
  nodeName: string;
  /** Only pod addresses in this CIDR are scraped (the pod bridge); octet-aligned (/8../32). */
  podCidr: string;
  /** global.scrape_interval (and evaluation_interval); default 2s (tests need fast data). */
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
 * prometheus.yml for the test cluster: one job, `kubernetes-pods`, over kubernetes_sd's pod role,
 * with the standard relabeling of annotated pods (keep prometheus.io/scrape: "true", path and port
 * from prometheus.io/path and prometheus.io/port, address podIP:port), the labels the operator's
 * queries select on (namespace, pod) plus app, and the NHCB opt-in by annotation. Pure: the input
 * is validated, nothing is resolved.
 */
export function prometheusConfig(input: PrometheusConfigInput): Record<string, unknown> {
  const scrapeInterval = input.scrapeInterval ?? DEFAULT_SCRAPE_INTERVAL;
  if (!durationPattern.test(scrapeInterval)) {
    throw new Error(`scrape interval "${scrapeInterval}" is not a Prometheus duration (2s, 500ms, 1m)`);
  }
  const apiServer = new URL(input.apiServer);
  const apiServerHost = apiServer.hostname.replace(/^\[|\]$/g, '');
  if (apiServer.protocol !== 'https:' || isIP(apiServerHost) === 0 || apiServer.pathname !== '/') {
    throw new Error(`apiserver URL ${input.apiServer}: want https://<IP address>:<port>, no host names`);
  }
  return {
    global: { scrape_interval: scrapeInterval, evaluation_interval: scrapeInterval },
    otlp: { promote_resource_attributes: [...OTLP_PROMOTED] },
    scrape_configs: [
      {
        job_name: SCRAPE_JOB,
        // Classic histograms are stored as classic series, as Prometheus 2 did: no native
        // histograms scraped, none converted (a pod's annotation converts its own, see below),
        // and the classic series kept wherever a histogram is also stored as a native one.
        scrape_native_histograms: false,
        convert_classic_histograms_to_nhcb: false,
        always_scrape_classic_histograms: true,
        kubernetes_sd_configs: [
          {
            role: 'pod',
            api_server: apiServer.origin,
            tls_config: { ca_file: input.caFile, cert_file: input.certFile, key_file: input.keyFile },
          },
        ],
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
          // The NHCB opt-in: this target's classic histograms are also stored as NHCB ("true"),
          // or as NHCB only ("only": the classic series are not kept).
          {
            source_labels: [`${meta}pod_annotation_${sanitizeLabelName(NHCB_ANNOTATION)}`],
            regex: `true|${NHCB_ONLY}`,
            target_label: '__convert_classic_histograms_to_nhcb__',
            replacement: 'true',
            action: 'replace',
          },
          {
            source_labels: [`${meta}pod_annotation_${sanitizeLabelName(NHCB_ANNOTATION)}`],
            regex: NHCB_ONLY,
            target_label: '__always_scrape_classic_histograms__',
            replacement: 'false',
            action: 'replace',
          },
          { source_labels: [`${meta}namespace`], target_label: 'namespace', action: 'replace' },
          { source_labels: [`${meta}pod_name`], target_label: 'pod', action: 'replace' },
          { source_labels: [`${meta}pod_label_app`], target_label: 'app', action: 'replace' },
          // Linkerd's own scrape configuration (linkerd-viz, prometheus.yaml): the proxy's pod
          // labels linkerd.io/proxy-<kind> become <kind> (`deployment`), which its metrics and
          // the operator's Linkerd preset use to find a Deployment's series.
          { regex: `${meta}pod_label_linkerd_io_proxy_(.+)`, action: 'labelmap' },
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
  /** The prometheus binary (build.ts, buildPrometheus). */
  binary: string;
  /** Config, discovery's credentials and the TSDB go here (created). */
  dir: string;
  logPath: string;
  /** The apiserver, https://<IP>:<port>. */
  apiServer: string;
  /** The cluster CA (PEM), which signed the apiserver's certificate. */
  caCert: string;
  /** Discovery's client certificate, for discoveryUser; granted get/list/watch pods. */
  discoveryClient: PemPair;
  discoveryUser: string;
  /** Grants the discovery identity its RBAC. */
  admin: KubeConfig;
  nodeName: string;
  podCidr: string;
  /** The host's address on the pod bridge (an IP literal): Prometheus listens there too, for OTLP pushes. */
  podBridgeAddress?: string | undefined;
  scrapeInterval?: string;
  readyTimeoutMs: number;
}

const discoveryRole = 'gso-test:prometheus-discovery';

/** A ClusterRole that reads pods, bound to the discovery user: all that the pod role needs. */
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

export class LocalPrometheus {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** The OTLP metrics endpoint pods push to (on the pod bridge), when started with podBridgeAddress. */
  readonly otlpUrl: string | undefined;
  readonly component: Component;
  readonly configPath: string;
  private readonly processes: ProcessGroup;

  private constructor(init: {
    url: string;
    otlpUrl: string | undefined;
    component: Component;
    configPath: string;
    processes: ProcessGroup;
  }) {
    this.url = init.url;
    this.otlpUrl = init.otlpUrl;
    this.component = init.component;
    this.configPath = init.configPath;
    this.processes = init.processes;
  }

  /**
   * Grants discovery its RBAC, writes the config and discovery's credentials, starts Prometheus
   * (through the cluster's ProcessGroup, so a failed cluster start or stop ends it by PID) and
   * waits for GET /-/ready. On failure the process is the ProcessGroup's to stop.
   */
  static async start(opts: PrometheusStartOptions): Promise<LocalPrometheus> {
    await grantPodDiscovery(opts.admin, opts.discoveryUser);
    const dataDir = join(opts.dir, 'data');
    await mkdir(dataDir, { recursive: true });
    const secret = async (name: string, content: string) => {
      const path = join(opts.dir, name);
      await writeFile(path, content, { mode: 0o600 });
      return path;
    };
    const configPath = join(opts.dir, 'prometheus.yml');
    await writeFile(
      configPath,
      prometheusConfigYaml({
        apiServer: opts.apiServer,
        caFile: await secret('ca.crt', opts.caCert),
        certFile: await secret('discovery.crt', opts.discoveryClient.cert),
        keyFile: await secret('discovery.key', opts.discoveryClient.key),
        nodeName: opts.nodeName,
        podCidr: opts.podCidr,
        scrapeInterval: opts.scrapeInterval,
      }),
    );
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const bridge = opts.podBridgeAddress;
    if (bridge !== undefined && isIP(bridge) !== 4)
      throw new Error(`pod bridge address ${bridge}: want an IPv4 literal`);
    const component = opts.processes.start(
      'prometheus',
      SETPRIV,
      [
        '--pdeathsig',
        'SIGKILL',
        '--',
        opts.binary,
        `--config.file=${configPath}`,
        `--web.listen-address=127.0.0.1:${port}`,
        ...(bridge ? [`--web.listen-address=${bridge}:${port}`] : []),
        '--web.enable-otlp-receiver',
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
    const otlpUrl = bridge ? `http://${bridge}:${port}/api/v1/otlp/v1/metrics` : undefined;
    return new LocalPrometheus({ url, otlpUrl, component, configPath, processes: opts.processes });
  }

  /** Stops Prometheus by PID. */
  async stop(): Promise<void> {
    await this.processes.stop(this.component);
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

/** A native histogram as the API writes it: numbers as strings, buckets [rule, lower, upper, count]. */
const ApiHistogramSchema = z.object({
  count: z.string(),
  sum: z.string(),
  buckets: z.array(z.tuple([z.number(), z.string(), z.string(), z.string()])).optional(),
});
const HistogramVectorSchema = z.array(
  z.object({ metric: MetricSchema, histogram: z.tuple([z.number(), ApiHistogramSchema]) }),
);

/** One native-histogram sample of an instant query (an NHCB, say): its labels, time and value. */
export interface NativeHistogramSample {
  metric: Record<string, string>;
  time: number;
  histogram: z.infer<typeof ApiHistogramSchema>;
}

type QueryOptions = { time?: number; timeoutMs?: number };

/** A vector of float samples holds `value`s; one of native histograms holds `histogram`s. */
function holdsHistograms(data: unknown): boolean {
  const { resultType, result } = (data ?? {}) as { resultType?: unknown; result?: unknown };
  return (
    resultType === 'vector' &&
    Array.isArray(result) &&
    result.some((s) => typeof s === 'object' && s !== null && 'histogram' in s)
  );
}

/**
 * GET <url>/api/v1/query: the parsed result of an instant query of float samples, at `time`
 * (Unix seconds) or now. Throws on an HTTP or PromQL error, with Prometheus's message, and on
 * native-histogram samples (read those with queryNativeHistograms).
 */
export async function queryPrometheus(
  url: string,
  promql: string,
  opts: QueryOptions = {},
): Promise<InstantQueryResult> {
  const data = await instantQuery(url, promql, opts);
  if (holdsHistograms(data)) {
    throw new Error(`${promql} returned native histograms: read them with queryNativeHistograms`);
  }
  return InstantResultSchema.parse(data);
}

/**
 * An instant query whose answer is a vector of native histograms (e.g. the NHCB of a pod
 * annotated with NHCB_ANNOTATION, `sum(rate(m[1m]))`); an empty vector when nothing matched.
 * Throws when a sample is a float (query those with queryPrometheus).
 */
export async function queryNativeHistograms(
  url: string,
  promql: string,
  opts: QueryOptions = {},
): Promise<NativeHistogramSample[]> {
  const data = await instantQuery(url, promql, opts);
  const { resultType, result } = (data ?? {}) as { resultType?: unknown; result?: unknown[] };
  if (resultType !== 'vector') throw new Error(`${promql}: expected a vector, got ${String(resultType)}`);
  if ((result ?? []).some((s) => typeof s === 'object' && s !== null && 'value' in s)) {
    throw new Error(`${promql} returned float samples, not native histograms`);
  }
  return HistogramVectorSchema.parse(result).map((s) => ({
    metric: s.metric,
    time: s.histogram[0],
    histogram: s.histogram[1],
  }));
}

/** GET <url>/api/v1/query: the response's `data`, or Prometheus's error. */
async function instantQuery(url: string, promql: string, opts: QueryOptions): Promise<unknown> {
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
  return body.data;
}
