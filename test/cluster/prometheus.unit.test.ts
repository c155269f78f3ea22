// The test cluster's Prometheus config and pod discovery, checked without running anything: the
// relabeling is applied here to discovered pods (keep/drop/replace as Prometheus defines them) to
// show which pods become targets, at which address, with which labels.
import { createServer } from 'node:http';
import { isIP } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { hostNetwork } from './node/host.ts';
import { REAL_NODE_NAME } from './node/node.ts';
import {
  ipv4CidrRegex,
  podTargetGroups,
  prometheusConfig,
  prometheusConfigYaml,
  queryPrometheus,
  SCRAPE_JOB,
  sampleValue,
  type TargetGroup,
} from './prometheus.ts';

const input = {
  discoveryUrl: 'http://127.0.0.1:40123/pods',
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
  http_sd_configs: { url: string; refresh_interval: string }[];
  relabel_configs: RelabelConfig[];
}

function scrapeConfig(config: Record<string, unknown>): ScrapeConfig {
  const configs = config.scrape_configs as ScrapeConfig[];
  expect(configs).toHaveLength(1);
  return configs[0] as ScrapeConfig;
}

/**
 * Prometheus's relabeling for the actions the config uses: the joined source labels are matched
 * against the fully anchored regex (default `(.*)`); keep/drop filter, replace writes the expanded
 * replacement (default `$1`) to the target label, or nothing when the regex does not match.
 * Labels starting with `__` other than __address__ and __metrics_path__ are dropped afterwards.
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
    if (!['keep', 'drop', 'replace'].includes(action)) throw new Error(`action ${action} not simulated`);
  }
  return Object.fromEntries(
    Object.entries(out).filter(
      ([k]) => !k.startsWith('__') || k === '__address__' || k === '__metrics_path__',
    ),
  );
}

/** The scrape targets Prometheus would derive from these discovered groups. */
function targets(groups: TargetGroup[], configs: RelabelConfig[]): Record<string, string>[] {
  return groups.flatMap((g) =>
    g.targets.flatMap((t): Record<string, string>[] => {
      const labels = relabel({ ...g.labels, __address__: t }, configs);
      return labels ? [labels] : [];
    }),
  );
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
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'demo-5d9f', uid: 'rs', controller: true },
      ],
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
      conditions: [{ type: 'Ready', status: 'True' }],
    },
  };
}

describe('the Prometheus config', () => {
  test('one job over the discovery endpoint, scraping every 2 s unless told otherwise', () => {
    const config = prometheusConfig(input);
    expect(config.global).toEqual({ scrape_interval: '2s', evaluation_interval: '2s' });
    const job = scrapeConfig(config);
    expect(job.job_name).toBe(SCRAPE_JOB);
    expect(job.job_name).toBe('kubernetes-pods');
    expect(job.http_sd_configs).toEqual([{ url: input.discoveryUrl, refresh_interval: '2s' }]);
    const slower = prometheusConfig({ ...input, scrapeInterval: '15s' });
    expect(slower.global).toEqual({ scrape_interval: '15s', evaluation_interval: '15s' });
    expect(scrapeConfig(slower).http_sd_configs[0]?.refresh_interval).toBe('15s');
    expect(() => prometheusConfig({ ...input, scrapeInterval: '2 seconds' })).toThrow(
      /not a Prometheus duration/,
    );
  });

  test('the standard relabeling: annotated pods, their path and port, namespace/pod/app labels', () => {
    const relabeling = scrapeConfig(prometheusConfig(input)).relabel_configs;
    expect(relabeling).toContainEqual({
      source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scrape'],
      regex: 'true',
      action: 'keep',
    });
    for (const [from, to] of [
      ['__meta_kubernetes_namespace', 'namespace'],
      ['__meta_kubernetes_pod_name', 'pod'],
      ['__meta_kubernetes_pod_label_app', 'app'],
    ]) {
      expect(relabeling).toContainEqual({ source_labels: [from], target_label: to, action: 'replace' });
    }
    const found = targets(podTargetGroups([pod('demo-5d9f-abcde')]), relabeling);
    expect(found).toEqual([
      {
        __address__: '10.88.0.12:8080',
        __metrics_path__: '/metrics',
        namespace: 'ns1',
        pod: 'demo-5d9f-abcde',
        app: 'demo',
      },
    ]);
    // The port annotation wins over the declared container port; the path annotation is optional.
    const other = targets(
      podTargetGroups([
        pod('other', {
          ports: [9000],
          labels: {},
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9100' },
        }),
      ]),
      relabeling,
    );
    expect(other).toEqual([{ __address__: '10.88.0.12:9100', namespace: 'ns1', pod: 'other' }]);
  });

  test('only running, annotated pods on the real node with a pod-bridge address are scraped', () => {
    const relabeling = scrapeConfig(prometheusConfig(input)).relabel_configs;
    expect(relabeling[0]).toEqual({
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
    expect(targets(podTargetGroups(pods), relabeling).map((t) => t.pod)).toEqual(['real']);
  });

  test('IP addresses only: the discovery URL must name an IP, and the config holds no host name', () => {
    const strings: string[] = [];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') strings.push(v);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') Object.values(v).forEach(walk);
    };
    walk(prometheusConfig(input));
    const urls = strings.filter((s) => /^[a-z]+:\/\//.test(s));
    expect(urls).toEqual([input.discoveryUrl]);
    for (const url of urls) expect(isIP(new URL(url).hostname)).toBe(4);
    for (const bad of [
      'http://localhost:40123/pods',
      'http://prometheus-sd:1/pods',
      'https://10.0.0.1/pods',
    ]) {
      expect(() => prometheusConfig({ ...input, discoveryUrl: bad })).toThrow(/no host names/);
    }
  });

  test('the YAML is the config (regex "true" stays a string)', () => {
    const yaml = prometheusConfigYaml(input);
    expect(parse(yaml)).toEqual(prometheusConfig(input));
    expect(yaml).toContain('regex: "true"');
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

describe('pod discovery', () => {
  test('labels as kubernetes_sd pod role builds them: sanitized names, presence, controller', () => {
    const p = pod('demo-5d9f-abcde', {
      labels: { app: 'demo', 'app.kubernetes.io/name': 'x' },
      annotations: { 'prometheus.io/scrape': 'true' },
    });
    const [group, ...rest] = podTargetGroups([p]);
    expect(rest).toEqual([]);
    expect(group?.targets).toEqual(['10.88.0.12:8080']);
    expect(group?.labels).toEqual({
      __meta_kubernetes_namespace: 'ns1',
      __meta_kubernetes_pod_name: 'demo-5d9f-abcde',
      __meta_kubernetes_pod_ip: '10.88.0.12',
      __meta_kubernetes_pod_ready: 'true',
      __meta_kubernetes_pod_phase: 'Running',
      __meta_kubernetes_pod_node_name: REAL_NODE_NAME,
      __meta_kubernetes_pod_host_ip: '10.88.0.1',
      __meta_kubernetes_pod_uid: 'uid-demo-5d9f-abcde',
      __meta_kubernetes_pod_controller_kind: 'ReplicaSet',
      __meta_kubernetes_pod_controller_name: 'demo-5d9f',
      __meta_kubernetes_pod_label_app: 'demo',
      __meta_kubernetes_pod_labelpresent_app: 'true',
      __meta_kubernetes_pod_label_app_kubernetes_io_name: 'x',
      __meta_kubernetes_pod_labelpresent_app_kubernetes_io_name: 'true',
      __meta_kubernetes_pod_annotation_prometheus_io_scrape: 'true',
      __meta_kubernetes_pod_annotationpresent_prometheus_io_scrape: 'true',
      __meta_kubernetes_pod_container_name: 'app',
      __meta_kubernetes_pod_container_image: 'demo-service:dev',
      __meta_kubernetes_pod_container_port_name: 'http',
      __meta_kubernetes_pod_container_port_number: '8080',
      __meta_kubernetes_pod_container_port_protocol: 'TCP',
    });
  });

  test('one target per container port, the bare pod IP for a container without ports, none without an IP', () => {
    const twoPorts = pod('two', { ports: [8080, 9090] });
    const noPorts = pod('none', { ports: [] });
    const groups = podTargetGroups([twoPorts, noPorts, pod('pending', { ip: '' })]);
    expect(groups.map((g) => g.targets[0])).toEqual(['10.88.0.12:8080', '10.88.0.12:9090', '10.88.0.12']);
    expect(groups[2]?.labels.__meta_kubernetes_pod_container_port_number).toBeUndefined();
  });
});

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

  test('sample values as the API writes them', () => {
    expect(sampleValue('+Inf')).toBe(Number.POSITIVE_INFINITY);
    expect(sampleValue('-Inf')).toBe(Number.NEGATIVE_INFINITY);
    expect(sampleValue('0.25')).toBe(0.25);
    expect(sampleValue('NaN')).toBeNaN();
  });
});
