// The test cluster's Prometheus config, checked without running anything: the relabeling is
// applied here to the targets kubernetes_sd's pod role discovers (keep/drop/replace as Prometheus
// defines them) to show which pods become targets, at which address, with which labels, and
// which have their classic histograms also stored as NHCB. The real discovery and scrapes are
// checked on the e2e cluster (test/e2e/prometheus.e2e.test.ts).
import { createServer } from 'node:http';
import { isIP } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { PROMETHEUS_BUILD_TAGS, prometheusLdflags } from './build.ts';
import { hostNetwork } from './node/host.ts';
import { REAL_NODE_NAME } from './node/node.ts';
import {
  ipv4CidrRegex,
  NHCB_ANNOTATION,
  NHCB_ONLY,
  prometheusConfig,
  prometheusConfigYaml,
  queryNativeHistograms,
  queryPrometheus,
  SCRAPE_JOB,
  sampleValue,
  sanitizeLabelName,
} from './prometheus.ts';
import { prometheusRelease, prometheusVersions } from './versions.ts';

const input = {
  apiServer: 'https://127.0.0.1:40123',
  caFile: '/tmp/gso-cluster-x/prometheus/ca.crt',
  certFile: '/tmp/gso-cluster-x/prometheus/discovery.crt',
  keyFile: '/tmp/gso-cluster-x/prometheus/discovery.key',
  nodeName: REAL_NODE_NAME,
  podCidr: hostNetwork.podCidr,
};

interface RelabelConfig {
  source_labels?: string[];
  separator?: string;
  regex?: string;
  target_label?: string;
  replacement?: string;
  action?: string;
}

interface ScrapeConfig {
  job_name: string;
  scrape_native_histograms: boolean;
  convert_classic_histograms_to_nhcb: boolean;
  always_scrape_classic_histograms: boolean;
  kubernetes_sd_configs: Record<string, unknown>[];
  relabel_configs: RelabelConfig[];
}

function scrapeConfig(config: Record<string, unknown>): ScrapeConfig {
  const configs = config.scrape_configs as ScrapeConfig[];
  expect(configs).toHaveLength(1);
  return configs[0] as ScrapeConfig;
}

const NHCB_LABEL = '__convert_classic_histograms_to_nhcb__';
const CLASSIC_LABEL = '__always_scrape_classic_histograms__';

/**
 * Prometheus's relabeling for the actions the config uses: the joined source labels are matched
 * against the fully anchored regex (default `(.*)`); keep/drop filter, replace writes the expanded
 * replacement (default `$1`) to the target label, or nothing when the regex does not match.
 * Labels starting with `__` are dropped afterwards, but for the target's address, path and its
 * histogram setting (scrape/target.go reads those).
 */
function relabel(
  labels: Record<string, string>,
  configs: RelabelConfig[],
): Record<string, string> | undefined {
  const out = { ...labels };
  for (const c of configs) {
    const value = (c.source_labels ?? []).map((l) => out[l] ?? '').join(c.separator ?? ';');
    const regex = new RegExp(`^(?:${c.regex ?? '(.*)'})$`);
    const action = c.action ?? 'replace';
    if (action === 'keep' && !regex.test(value)) return undefined;
    if (action === 'drop' && regex.test(value)) return undefined;
    if (action === 'replace' && regex.test(value)) {
      const result = value.replace(regex, c.replacement ?? '$1');
      if (result === '') delete out[c.target_label as string];
      else out[c.target_label as string] = result;
    }
    if (action === 'labelmap')
      for (const [name, v] of Object.entries(labels))
        if (regex.test(name)) out[name.replace(regex, c.replacement ?? '$1')] = v;
    if (!['keep', 'drop', 'replace', 'labelmap'].includes(action))
      throw new Error(`action ${action} not simulated`);
  }
  return Object.fromEntries(
    Object.entries(out).filter(
      ([k]) =>
        !k.startsWith('__') || ['__address__', '__metrics_path__', NHCB_LABEL, CLASSIC_LABEL].includes(k),
    ),
  );
}

const meta = '__meta_kubernetes_';

/**
 * The targets kubernetes_sd's pod role discovers (discovery/kubernetes/pod.go in Prometheus
 * 3.16, the labels this config reads and a few more): none for a pod without an IP; per
 * container, one per declared port (podIP:port) or, with no ports, one at the bare pod IP.
 */
function podRoleTargets(pods: readonly V1Pod[]): Record<string, string>[] {
  const targets: Record<string, string>[] = [];
  for (const pod of pods) {
    const ip = pod.status?.podIP;
    if (!ip) continue;
    const common: Record<string, string> = {
      [`${meta}namespace`]: pod.metadata?.namespace ?? '',
      [`${meta}pod_name`]: pod.metadata?.name ?? '',
      [`${meta}pod_ip`]: ip,
      [`${meta}pod_phase`]: pod.status?.phase ?? '',
      [`${meta}pod_node_name`]: pod.spec?.nodeName ?? '',
    };
    for (const [key, value] of Object.entries(pod.metadata?.labels ?? {})) {
      common[`${meta}pod_label_${sanitizeLabelName(key)}`] = value;
    }
    for (const [key, value] of Object.entries(pod.metadata?.annotations ?? {})) {
      common[`${meta}pod_annotation_${sanitizeLabelName(key)}`] = value;
    }
    for (const container of pod.spec?.containers ?? []) {
      const ports = container.ports ?? [];
      if (ports.length === 0) targets.push({ ...common, __address__: ip });
      for (const port of ports) {
        targets.push({
          ...common,
          __address__: `${ip}:${port.containerPort}`,
          [`${meta}pod_container_port_number`]: String(port.containerPort),
        });
      }
    }
  }
  return targets;
}

/** The scrape targets Prometheus would derive from these pods under this job. */
function targets(pods: readonly V1Pod[], job: ScrapeConfig): Record<string, string>[] {
  return podRoleTargets(pods).flatMap((t): Record<string, string>[] => {
    // Before relabeling, a target carries its job's histogram setting (scrape/target.go).
    const labels = relabel(
      {
        ...t,
        [NHCB_LABEL]: String(job.convert_classic_histograms_to_nhcb),
        [CLASSIC_LABEL]: String(job.always_scrape_classic_histograms),
      },
      job.relabel_configs,
    );
    return labels ? [labels] : [];
  });
}

const scrapeAnnotations = {
  'prometheus.io/scrape': 'true',
  'prometheus.io/port': '8080',
  'prometheus.io/path': '/metrics',
};

function pod(
  name: string,
  opts: {
    node?: string;
    ip?: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    phase?: string;
    ports?: number[];
  } = {},
): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'ns1',
      uid: `uid-${name}`,
      labels: opts.labels ?? { app: 'demo' },
      annotations: opts.annotations ?? scrapeAnnotations,
    },
    spec: {
      nodeName: opts.node ?? REAL_NODE_NAME,
      containers: [
        {
          name: 'app',
          image: 'demo-service:dev',
          ports: (opts.ports ?? [8080]).map((containerPort) => ({
            name: 'http',
            containerPort,
            protocol: 'TCP',
          })),
        },
      ],
    },
    status: {
      phase: opts.phase ?? 'Running',
      ...(opts.ip === '' ? {} : { podIP: opts.ip ?? '10.88.0.12' }),
      hostIP: '10.88.0.1',
    },
  };
}

describe('the Prometheus config', () => {
  test("one job over kubernetes_sd's pod role, scraping every 2 s unless told otherwise", () => {
    const config = prometheusConfig(input);
    expect(config.global).toEqual({ scrape_interval: '2s', evaluation_interval: '2s' });
    const job = scrapeConfig(config);
    expect(job.job_name).toBe(SCRAPE_JOB);
    expect(job.job_name).toBe('kubernetes-pods');
    expect(job.kubernetes_sd_configs).toEqual([
      {
        role: 'pod',
        api_server: 'https://127.0.0.1:40123',
        tls_config: { ca_file: input.caFile, cert_file: input.certFile, key_file: input.keyFile },
      },
    ]);
    const slower = prometheusConfig({ ...input, scrapeInterval: '15s' });
    expect(slower.global).toEqual({ scrape_interval: '15s', evaluation_interval: '15s' });
    expect(() => prometheusConfig({ ...input, scrapeInterval: '2 seconds' })).toThrow(
      /not a Prometheus duration/,
    );
  });

  test('classic histograms stay classic series: none scraped native, none converted, classic kept', () => {
    const job = scrapeConfig(prometheusConfig(input));
    expect(job.scrape_native_histograms).toBe(false);
    expect(job.convert_classic_histograms_to_nhcb).toBe(false);
    expect(job.always_scrape_classic_histograms).toBe(true);
  });

  test("Linkerd's relabeling: the pod label linkerd.io/proxy-deployment becomes `deployment`", () => {
    const job = scrapeConfig(prometheusConfig(input));
    const [meshed] = targets(
      [pod('web-5d9f-abcde', { labels: { app: 'web', 'linkerd.io/proxy-deployment': 'web' } })],
      job,
    );
    expect(meshed).toMatchObject({ app: 'web', deployment: 'web' });
    // Negative control: other pod labels are not copied.
    expect(
      targets([pod('demo-5d9f-abcde', { labels: { app: 'demo', tier: 'x' } })], job)[0],
    ).not.toHaveProperty('tier');
  });

  test('the standard relabeling: annotated pods, their path and port, namespace/pod/app labels', () => {
    const job = scrapeConfig(prometheusConfig(input));
    expect(job.relabel_configs).toContainEqual({
      source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scrape'],
      regex: 'true',
      action: 'keep',
    });
    for (const [from, to] of [
      ['__meta_kubernetes_namespace', 'namespace'],
      ['__meta_kubernetes_pod_name', 'pod'],
      ['__meta_kubernetes_pod_label_app', 'app'],
    ]) {
      expect(job.relabel_configs).toContainEqual({
        source_labels: [from],
        target_label: to,
        action: 'replace',
      });
    }
    expect(targets([pod('demo-5d9f-abcde')], job)).toEqual([
      {
        __address__: '10.88.0.12:8080',
        __metrics_path__: '/metrics',
        [NHCB_LABEL]: 'false',
        [CLASSIC_LABEL]: 'true',
        namespace: 'ns1',
        pod: 'demo-5d9f-abcde',
        app: 'demo',
      },
    ]);
    // The port annotation wins over the declared container port; the path annotation is optional.
    const other = targets(
      [
        pod('other', {
          ports: [9000],
          labels: {},
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9100' },
        }),
      ],
      job,
    );
    expect(other).toEqual([
      {
        __address__: '10.88.0.12:9100',
        [NHCB_LABEL]: 'false',
        [CLASSIC_LABEL]: 'true',
        namespace: 'ns1',
        pod: 'other',
      },
    ]);
  });

  test(`a pod annotated ${NHCB_ANNOTATION}: "true" has its classic histograms also stored as NHCB, "only" as NHCB alone`, () => {
    const job = scrapeConfig(prometheusConfig(input));
    const nhcb = (value: string) => ({ annotations: { ...scrapeAnnotations, [NHCB_ANNOTATION]: value } });
    const found = targets(
      [
        pod('twin', nhcb('true')),
        pod('plain'),
        pod('other-value', nhcb('yes')),
        pod('native', nhcb(NHCB_ONLY)),
      ],
      job,
    );
    // The classic series are kept beside the NHCB by the job's always_scrape_classic_histograms,
    // except for a pod annotated "only".
    expect(found.map((t) => [t.pod, t[NHCB_LABEL], t[CLASSIC_LABEL]])).toEqual([
      ['twin', 'true', 'true'],
      ['plain', 'false', 'true'],
      ['other-value', 'false', 'true'],
      ['native', 'true', 'false'],
    ]);
  });

  test("the OTLP receiver's promoted resource attributes: the OpenTelemetry preset's workload labels", () => {
    expect(prometheusConfig(input).otlp).toEqual({
      promote_resource_attributes: ['k8s.namespace.name', 'k8s.deployment.name'],
    });
  });

  test('only running, annotated pods on the real node with a pod-bridge address are scraped', () => {
    const job = scrapeConfig(prometheusConfig(input));
    expect(job.relabel_configs[0]).toEqual({
      source_labels: ['__meta_kubernetes_pod_node_name'],
      regex: REAL_NODE_NAME,
      action: 'keep',
    });
    const pods = [
      pod('real'),
      // kwok: a fake IP on a fake node; no packet may go there.
      pod('kwok', { node: 'kwok-node-0', ip: '10.244.0.7' }),
      // On the real node but with an address off the bridge (cannot happen; still never sent).
      pod('off-bridge', { ip: '192.0.2.10' }),
      pod('not-annotated', { annotations: {} }),
      pod('opted-out', { annotations: { ...scrapeAnnotations, 'prometheus.io/scrape': 'false' } }),
      pod('pending', { phase: 'Pending' }),
      pod('succeeded', { phase: 'Succeeded' }),
      pod('no-ip', { ip: '' }),
    ];
    expect(targets(pods, job).map((t) => t.pod)).toEqual(['real']);
  });

  test('IP addresses only: the apiserver URL must be https to an IP, and the config holds no host name', () => {
    const strings: string[] = [];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') strings.push(v);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') Object.values(v).forEach(walk);
    };
    walk(prometheusConfig(input));
    const urls = strings.filter((s) => /^[a-z]+:\/\//.test(s));
    expect(urls).toEqual([input.apiServer]);
    for (const url of urls) expect(isIP(new URL(url).hostname)).toBe(4);
    for (const bad of [
      'https://localhost:40123',
      'https://kubernetes.default.svc:443',
      'http://127.0.0.1:40123',
      'https://127.0.0.1:40123/api',
    ]) {
      expect(() => prometheusConfig({ ...input, apiServer: bad }), bad).toThrow(/no host names/);
    }
  });

  test('the YAML is the config (regex "true" stays a string)', () => {
    const yaml = prometheusConfigYaml(input);
    expect(parse(yaml)).toEqual(prometheusConfig(input));
    expect(yaml).toContain('regex: "true"');
    expect(yaml).toContain('replacement: "true"');
  });

  test('the pod CIDR becomes an anchored address pattern', () => {
    expect(ipv4CidrRegex('10.88.0.0/24')).toBe('10\\.88\\.0\\.\\d{1,3}');
    expect(ipv4CidrRegex('10.244.0.0/16')).toBe('10\\.244\\.\\d{1,3}\\.\\d{1,3}');
    const re = new RegExp(`^(?:${ipv4CidrRegex(hostNetwork.podCidr)})$`);
    expect(re.test('10.88.0.12')).toBe(true);
    expect(re.test('10.88.1.12')).toBe(false);
    expect(re.test('10.88.0.1')).toBe(true);
    expect(() => ipv4CidrRegex('10.88.0.0/20')).toThrow(/prefix of 8, 16, 24 or 32/);
    expect(() => ipv4CidrRegex('fd00::/64')).toThrow();
  });
});

describe('the Prometheus build', () => {
  test('the release of a module version: v0.3MM.P is 3.MM.P', () => {
    expect(prometheusRelease('v0.316.0')).toBe('3.16.0');
    expect(prometheusRelease('v0.300.1')).toBe('3.0.1');
    expect(prometheusRelease('v0.301.0-rc.1')).toBe('3.1.0-rc.1');
    expect(() => prometheusRelease('v2.53.0')).toThrow(/not a Prometheus module version/);
    expect(prometheusVersions()).toEqual({ module: 'v0.316.0', release: '3.16.0' });
  });

  test('--version names the release; only Kubernetes discovery is compiled in', () => {
    expect(prometheusLdflags('3.16.0', 'v0.316.0')).toContain(
      '-X github.com/prometheus/common/version.Version=3.16.0',
    );
    expect(PROMETHEUS_BUILD_TAGS.split(',')).toEqual(['remove_all_sd', 'enable_kubernetes_sd']);
  });
});

/** An NHCB sample as Prometheus 3.16 answers it (bounds 0.1, 0.5, +Inf). */
const nhcbSample = {
  metric: { app: 'twin' },
  histogram: [
    1700000000.5,
    {
      count: '6',
      sum: '1.2',
      buckets: [
        [3, '0', '0.1', '2'],
        [0, '0.1', '0.5', '3'],
        [0, '0.5', '+Inf', '1'],
      ],
    },
  ],
};

describe('queryPrometheus', () => {
  let url = '';
  let lastQuery: URLSearchParams | undefined;
  const server = createServer((req, res) => {
    const params = new URL(req.url ?? '/', 'http://x').searchParams;
    lastQuery = params;
    res.setHeader('Content-Type', 'application/json');
    if (params.get('query') === 'bad(') {
      res.statusCode = 400;
      res.end(JSON.stringify({ status: 'error', errorType: 'bad_data', error: 'parse error' }));
      return;
    }
    if (params.get('query') === 'sum(rate(m[1m]))') {
      res.end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [nhcbSample] } }));
      return;
    }
    res.end(
      JSON.stringify({
        status: 'success',
        data: { resultType: 'vector', result: [{ metric: { le: '+Inf' }, value: [1700000000.5, '12'] }] },
      }),
    );
  });
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('returns the parsed instant-query result, at the time asked', async () => {
    const result = await queryPrometheus(url, 'up', { time: 1700000000.5 });
    expect(lastQuery?.get('query')).toBe('up');
    expect(lastQuery?.get('time')).toBe('1700000000.5');
    expect(result).toEqual({
      resultType: 'vector',
      result: [{ metric: { le: '+Inf' }, value: [1700000000.5, '12'] }],
    });
  });

  test("throws with Prometheus's message on an error", async () => {
    await expect(queryPrometheus(url, 'bad(')).rejects.toThrow(/HTTP 400: bad_data: parse error/);
  });

  test('native histograms: read by queryNativeHistograms, refused by queryPrometheus', async () => {
    expect(await queryNativeHistograms(url, 'sum(rate(m[1m]))')).toEqual([
      { metric: { app: 'twin' }, time: 1700000000.5, histogram: nhcbSample.histogram[1] },
    ]);
    await expect(queryPrometheus(url, 'sum(rate(m[1m]))')).rejects.toThrow(
      /returned native histograms: read them with queryNativeHistograms/,
    );
    await expect(queryNativeHistograms(url, 'up')).rejects.toThrow(/float samples, not native histograms/);
  });

  test('sample values as the API writes them', () => {
    expect(sampleValue('+Inf')).toBe(Number.POSITIVE_INFINITY);
    expect(sampleValue('-Inf')).toBe(Number.NEGATIVE_INFINITY);
    expect(sampleValue('0.25')).toBe(0.25);
    expect(sampleValue('NaN')).toBeNaN();
  });
});
