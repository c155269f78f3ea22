// The Prometheus latency source. Per workload it sends ONE instant query for the per-bucket
// increase of the request-duration histogram over the window, summed by `le`, and computes the
// quantile itself with bucketQuantile (histogram.ts, Prometheus's own BucketQuantile, identical to
// histogram_quantile). Asking for the buckets rather than for histogram_quantile(...) tells the
// operator the sample count (the +Inf bucket) and whether the percentile fell in the +Inf bucket,
// where histogram_quantile silently answers the largest finite bound.
//
// HTTP goes through node:http / node:https, not the global fetch: trusting an extra CA with fetch
// needs an undici Agent as its `dispatcher`, and Node does not export its bundled undici. The
// `undici` npm package would be a second copy whose version must track Node's bundled one (the
// copy in node_modules today is 8.x, pulled in by @kubernetes/client-node, while Node 24 bundles
// 7.x). An https.Agent with `ca` does the same with no dependency, and nock intercepts it.
//
// Credentials and answers cross a trust boundary (docs/design/prometheus-credentials.md): the
// bearer token goes only to the origin of --prometheus-url and to --prometheus-token-origins,
// only over https, and redirects are not followed (node:http never does). A policy may name any
// URL, and reasons end up in policy status and in namespaced PolicyReports, so nothing the
// server wrote (body, error message, headers, label values) is copied into a reason: reasons say
// what failed in the operator's own words, with the HTTP status, the content type when it is one
// of a short list and the Prometheus API's errorType when it is one of the API's own values.
//
// Pure parts (query building, template substitution, response interpretation) are exported for
// tests and for e2e tests against a real Prometheus; I/O (files, network) stays in the class and
// in createNodeHttpGet.
import { readFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { z } from 'zod';
import type { ObservedLatencyPolicy } from '../api/policy.ts';
import type { LatencyObservation } from '../policy/types.ts';
import { type Bucket, bucketQuantile } from './histogram.ts';
import { nativeHistogramQuantile, parseApiHistogram } from './native-histogram.ts';
import {
  DEFAULT_METRIC,
  escapeRegex,
  excludedRoutePattern,
  type HistogramSpec,
  histogramSpecs,
  type Identity,
  triedAs,
} from './presets.ts';
import type { LatencySource, Workload } from './source.ts';
import { secondsPerUnit } from './unit.ts';

export const NO_PROMETHEUS_URL = 'no Prometheus URL: set observedLatency.prometheus.url or --prometheus-url';

/** A query response larger than this is refused: a per-le vector is a few kilobytes. */
const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
/** The query as quoted in reasons: long templates are cut, so the error itself is never truncated. */
const MAX_QUERY_IN_REASON = 300;

// --- PromQL text ---------------------------------------------------------------------------------

/** A value escaped for a double-quoted PromQL string literal (backslash, quote, line breaks). */
export function escapePromQLString(value: string): string {
  return value.replace(/[\\"\n\r]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : `\\${c}`));
}

/**
 * kube-apiserver's generateName keeps at most 58 characters of the prefix before its 5 random
 * characters (names.SimpleNameGenerator): a pod of ReplicaSet `<deployment>-<hash>` is named
 * `<deployment>-<hash>-<5 chars>` only while that fits, and is cut to 63 characters otherwise.
 */
const GENERATED_PREFIX_MAX = 58;
const GENERATED_SUFFIX_LENGTH = 5;
/** The pod-template-hash: a uint32 in decimal, safe-encoded, so 1 to 10 characters. */
const MAX_HASH_LENGTH = 10;

/**
 * An RE2 pattern (fully anchored, as PromQL's =~ is) matching the names of the pods of a
 * Deployment: `<deployment>-<pod-template-hash>-<random>`. For names long enough that the
 * apiserver cuts the generated name, the cut form (exactly 63 characters) is an alternative.
 */
export function podNameRegex(deployment: string): string {
  const full = `${escapeRegex(deployment)}-[a-z0-9]+-[a-z0-9]+`;
  // `<deployment>-<hash>-` fits in 58 characters whatever the hash: no cut form exists.
  if (deployment.length + 1 + MAX_HASH_LENGTH + 1 <= GENERATED_PREFIX_MAX) return full;
  const suffix = `[a-z0-9]{${GENERATED_SUFFIX_LENGTH}}`;
  const cut =
    deployment.length >= GENERATED_PREFIX_MAX
      ? `${escapeRegex(deployment.slice(0, GENERATED_PREFIX_MAX))}${suffix}`
      : `${escapeRegex(deployment)}-[a-z0-9-]{${GENERATED_PREFIX_MAX - deployment.length - 1}}${suffix}`;
  return `${full}|${cut}`;
}

/** The paths whose requests are not the workload's: its probes', and Prometheus's own scrapes. */
export function excludedPaths(workload: Pick<Workload, 'probePaths'>): string[] {
  return [...new Set([...(workload.probePaths ?? []), DEFAULT_METRICS_PATH])].sort();
}
const DEFAULT_METRICS_PATH = '/metrics';

/** The matchers every series of the spec must satisfy: its fixed labels and its routes left out. */
function commonMatchers(spec: HistogramSpec, paths: readonly string[]): string[] {
  const matchers = [
    ...Object.entries(spec.matchers).map(([name, value]) => `${name}="${escapePromQLString(value)}"`),
    ...Object.entries(spec.excludedLabels ?? {}).map(
      ([name, value]) => `${name}!="${escapePromQLString(value)}"`,
    ),
  ];
  const excluded = excludedRoutePattern(spec, paths);
  if (excluded !== undefined)
    for (const label of spec.routeLabels) matchers.push(`${label}!~"${escapePromQLString(excluded)}"`);
  // A proxy's series count only when scraped from the proxies' own namespaces.
  if (spec.scrapedIn !== undefined)
    matchers.push(`namespace=~"${escapePromQLString(spec.scrapedIn.map(escapeRegex).join('|') || '$^')}"`);
  return matchers;
}

/**
 * The two forms a histogram is stored in: classic (`<metric>_bucket` series, one per `le`) and
 * native (one series under the metric's own name holding every bucket: an OpenTelemetry
 * exponential histogram pushed over OTLP, a client's native histogram scraped as protobuf, or a
 * classic one converted to native custom buckets). The classic form is asked for first, and the
 * native one only for the workloads it found nothing for: where Prometheus keeps both, the two
 * count the same requests, and a cluster with classic histograms sends no more queries.
 */
export type HistogramForm = 'classic' | 'native';
export const HISTOGRAM_FORMS: readonly HistogramForm[] = ['classic', 'native'];

/**
 * The series selector of one form. The native form is the metric's own name without `le` and
 * `quantile`: a summary's quantile series under that name are not histograms.
 */
function selector(metric: string, form: HistogramForm, matchers: readonly string[]): string {
  return form === 'classic'
    ? `${metric}_bucket{${matchers.join(', ')}}`
    : `${metric}{${[...matchers, 'le=""', 'quantile=""'].join(', ')}}`;
}

/**
 * Identities tried in order: the first that finds series wins (`or` alone would add the second's
 * buckets with other `le` values to the first's). `on` names the labels a result is keyed by.
 */
function firstFound(parts: readonly string[], on: string): string {
  return parts.reduce((found, next) => `${found} or (${next} unless on (${on}) ${found})`);
}

export interface BucketQueryInput {
  namespace: string;
  deployment: string;
  /** The Services that select its pods (a proxy's histogram names these). */
  services?: readonly string[] | undefined;
  spec: HistogramSpec;
  /** A Prometheus duration: 1h, 30m, 7d. */
  window: string;
  /** Routes left out (probes, the scrape path), where the spec has route labels. */
  excludedPaths: readonly string[];
  /** Default classic. */
  form?: HistogramForm;
}

/**
 * The built-in query: the increase of each bucket over the window, summed over the Deployment's
 * series by `le`. Series are found by the spec's identities: the `namespace` and `pod` labels a
 * kubernetes_sd_configs pod scrape (with the usual relabeling) and a Prometheus Operator
 * PodMonitor or ServiceMonitor attach, the workload labels a mesh writes, or, for a proxy's
 * histogram, the Services that select the pods; several identities are tried in order (`or`).
 * rate/increase comes before sum, so counter resets (restarted pods) are handled. Undefined when
 * no identity can name the workload (a proxy's histogram, and no Service selects its pods).
 */
export function buildBucketQuery({
  namespace,
  deployment,
  services = [],
  spec,
  window,
  excludedPaths,
  form = 'classic',
}: BucketQueryInput): string | undefined {
  const common = commonMatchers(spec, excludedPaths);
  const ns = escapePromQLString(namespace);
  const serviceNames = services.map(escapeRegex).join('|');
  const parts = spec.identities.flatMap((identity) => {
    let who: string[];
    switch (identity.by) {
      case 'pod':
        who = [
          `${identity.namespace}="${ns}"`,
          `${identity.pod}=~"${escapePromQLString(podNameRegex(deployment))}"`,
        ];
        break;
      case 'workload':
        who = [`${identity.namespace}="${ns}"`, `${identity.workload}="${escapePromQLString(deployment)}"`];
        if (identity.claimed) who.push(`${identity.claimed}="${ns}"`);
        break;
      case 'service':
        if (services.length === 0) return [];
        who = [`${identity.namespace}="${ns}"`, `${identity.service}=~"${escapePromQLString(serviceNames)}"`];
        break;
      case 'envoyCluster':
        if (services.length === 0) return [];
        who = [
          `${identity.cluster}=~"${escapePromQLString(`${escapeRegex(namespace)}_(?:${serviceNames})_[0-9]+`)}"`,
        ];
        break;
    }
    return [`sum by (le) (increase(${selector(spec.metric, form, [...who, ...common])}[${window}]))`];
  });
  return parts.length === 0 ? undefined : firstFound(parts, '');
}

/** Workloads a later attempt of a grouped query names (a regex of their names) rather than asking for the whole chunk. */
const MAX_NAMED_WORKLOADS = 100;

/** Workloads one grouped query answers at most: about a dozen series each, a few MB of JSON. */
export const MAX_WORKLOADS_PER_QUERY = 1000;

/** The pod-name suffix a Deployment's pods carry: `-<pod-template-hash>-<5 random characters>`. */
const POD_SUFFIX = `-[a-z0-9]{1,${MAX_HASH_LENGTH}}-[a-z0-9]{${GENERATED_SUFFIX_LENGTH}}`;

/**
 * A Deployment whose pods are always named `<deployment>-<hash>-<random>` (the apiserver never
 * cuts the generated name): its name can be read back from its pods' names.
 */
export function groupableName(deployment: string): boolean {
  return deployment.length + 1 + MAX_HASH_LENGTH + 1 <= GENERATED_PREFIX_MAX;
}

/**
 * The built-in query for many workloads at once: the per-bucket increase in the namespaces
 * given, summed by namespace, workload and le. Found by pod, the workload is read from the pod
 * name (the Deployment's name: what precedes `-<hash>-<random>`), and series of pods that are not
 * a Deployment's get none and are ignored; found by workload labels, they are copied to
 * `namespace` and `workload`. A proxy's histogram is summed by namespace, `service` and le
 * instead (an Envoy cluster name read as `<namespace>_<service>_<port>`): the caller gives each
 * Deployment the series of its Services. Several identities are tried in order (`or`).
 */
export function groupedBucketQuery({
  namespaces,
  deployments,
  spec,
  window,
  excludedPaths,
  form = 'classic',
}: {
  namespaces: readonly string[];
  /** Only these Deployments (a namespace split over several queries). */
  deployments?: readonly string[] | undefined;
  spec: HistogramSpec;
  window: string;
  excludedPaths: readonly string[];
  /** Default classic. */
  form?: HistogramForm;
}): string {
  const names = [...namespaces].sort().map(escapeRegex).join('|');
  const only = deployments?.map(escapeRegex).join('|');
  const common = commonMatchers(spec, excludedPaths);
  const replace = (series: string, target: string, source: string, regex: string) =>
    `label_replace(${series}, "${target}", "$1", "${source}", "${escapePromQLString(regex)}")`;
  const parts = spec.identities.map(groupedPart);
  return firstFound(parts, byService(spec) ? 'namespace, service' : 'namespace, workload');

  function groupedPart(identity: Identity): string {
    const increase = (who: string[]) =>
      `increase(${selector(spec.metric, form, [...who, ...common])}[${window}])`;
    const inNamespaces = (label: string) => `${label}=~"${escapePromQLString(names)}"`;
    const toNamespace = (series: string, label: string) =>
      label === 'namespace' ? series : replace(series, 'namespace', label, '(.*)');
    switch (identity.by) {
      case 'pod': {
        const who = [inNamespaces(identity.namespace)];
        if (only !== undefined)
          who.push(`${identity.pod}=~"${escapePromQLString(`(?:${only})${POD_SUFFIX}`)}"`);
        const series = toNamespace(increase(who), identity.namespace);
        return `sum by (namespace, workload, le) (${replace(series, 'workload', identity.pod, `(.+)${POD_SUFFIX}`)})`;
      }
      case 'workload': {
        const who = [inNamespaces(identity.namespace)];
        if (only !== undefined) who.push(`${identity.workload}=~"${escapePromQLString(only)}"`);
        const series = replace(
          toNamespace(increase(who), identity.namespace),
          'workload',
          identity.workload,
          '(.*)',
        );
        // The namespace the exporter claims, kept for the caller to check against the scrape's.
        if (identity.claimed)
          return `sum by (namespace, workload, ${CLAIMED}, le) (${replace(series, CLAIMED, identity.claimed, '(.*)')})`;
        return `sum by (namespace, workload, le) (${series})`;
      }
      case 'service': {
        const series = toNamespace(increase([inNamespaces(identity.namespace)]), identity.namespace);
        return `sum by (namespace, service, le) (${replace(series, 'service', identity.service, '(.*)')})`;
      }
    }
    // An Envoy cluster, `<namespace>_<service>_<port>`: neither name may hold an underscore.
    const who = [`${identity.cluster}=~"${escapePromQLString(`(?:${names})_[^_]+_[0-9]+`)}"`];
    const series = replace(
      replace(increase(who), 'namespace', identity.cluster, '([^_]+)_.*'),
      'service',
      identity.cluster,
      '[^_]+_([^_]+)_[0-9]+',
    );
    return `sum by (namespace, service, le) (${series})`;
  }
}

/** The label a grouped query keeps the exporter's claimed namespace in, checked by the caller. */
const CLAIMED = 'claimed_namespace';

/** The spec's series name Services (a proxy's), not workloads. */
function byService(spec: HistogramSpec): boolean {
  return spec.identities.some((i) => i.by === 'service' || i.by === 'envoyCluster');
}

export interface QueryChunk {
  workloads: Workload[];
  namespaces: string[];
  /** Set when one namespace holds more workloads than a query answers: these pods only. */
  deployments?: string[];
}

/**
 * Workloads in chunks of at most `limit`: whole namespaces together while they fit, and a
 * namespace with more than `limit` alone, split by Deployment name.
 */
export function queryChunks(workloads: readonly Workload[], limit: number): QueryChunk[] {
  const byNamespace = new Map<string, Workload[]>();
  for (const w of workloads) {
    const list = byNamespace.get(w.namespace) ?? [];
    list.push(w);
    byNamespace.set(w.namespace, list);
  }
  const chunks: QueryChunk[] = [];
  let current: QueryChunk = { workloads: [], namespaces: [] };
  for (const namespace of [...byNamespace.keys()].sort()) {
    const list = byNamespace.get(namespace) ?? [];
    if (list.length > limit) {
      for (let i = 0; i < list.length; i += limit) {
        const part = list.slice(i, i + limit);
        chunks.push({ workloads: part, namespaces: [namespace], deployments: part.map((w) => w.name) });
      }
      continue;
    }
    if (current.workloads.length + list.length > limit) {
      chunks.push(current);
      current = { workloads: [], namespaces: [] };
    }
    current.workloads.push(...list);
    current.namespaces.push(namespace);
  }
  if (current.workloads.length > 0) chunks.push(current);
  return chunks;
}

export const TEMPLATE_PLACEHOLDERS = ['namespace', 'deployment', 'metric', 'percentile', 'window'] as const;
export type TemplateValues = Record<(typeof TEMPLATE_PLACEHOLDERS)[number], string>;

/**
 * observedLatency.query with its placeholders ({{namespace}}, {{deployment}}, {{metric}},
 * {{percentile}}, {{window}}; spaces inside the braces allowed) replaced by the values escaped for
 * a PromQL string literal. An unknown placeholder is an error rather than text sent to Prometheus.
 */
export function renderQueryTemplate(
  template: string,
  values: TemplateValues,
): { ok: true; query: string } | { ok: false; reason: string } {
  const unknown = new Set<string>();
  const query = template.replace(/\{\{\s*([^{}\s]*)\s*\}\}/g, (match, name: string) => {
    if (!(TEMPLATE_PLACEHOLDERS as readonly string[]).includes(name)) {
      unknown.add(match);
      return match;
    }
    return escapePromQLString(values[name as keyof TemplateValues]);
  });
  if (unknown.size > 0) {
    const known = TEMPLATE_PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ');
    return {
      ok: false,
      reason: `observedLatency.query has unknown placeholder(s) ${[...unknown].join(', ')}; known: ${known}`,
    };
  }
  return { ok: true, query };
}

/** Whether the spec's series can name the workload: by pod or workload, or by a Service of it. */
export function canName(spec: HistogramSpec, workload: Pick<Workload, 'services'>): boolean {
  return spec.identities.some(
    (identity) => identity.by === 'pod' || identity.by === 'workload' || (workload.services?.length ?? 0) > 0,
  );
}

/** The query a policy asks for one workload: its template, or the built-in bucket query of a spec. */
export function queryFor(
  workload: Pick<Workload, 'namespace' | 'name' | 'probePaths' | 'services'>,
  policy: Pick<ObservedLatencyPolicy, 'metric' | 'window' | 'percentile' | 'query'>,
  spec: HistogramSpec,
  form: HistogramForm = 'classic',
): { ok: true; query: string } | { ok: false; reason: string } {
  if (policy.query === undefined) {
    const query = buildBucketQuery({
      form,
      namespace: workload.namespace,
      deployment: workload.name,
      services: workload.services,
      spec,
      window: policy.window,
      excludedPaths: excludedPaths(workload),
    });
    return query === undefined
      ? {
          ok: false,
          reason: `no Service selects the pods of ${workload.namespace}/${workload.name}: preset ${spec.preset} finds a proxy's series by the Services in front of the workload`,
        }
      : { ok: true, query };
  }
  return renderQueryTemplate(policy.query, {
    namespace: workload.namespace,
    deployment: workload.name,
    metric: policy.metric ?? DEFAULT_METRIC,
    percentile: String(policy.percentile),
    window: policy.window,
  });
}

/** `<base>/api/v1/query?query=...` (a path prefix in the base URL is kept). Throws on a bad URL. */
export function queryUrl(base: string, query: string): URL {
  const url = new URL(base);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`not http(s): ${base}`);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/api/v1/query`;
  url.searchParams.set('query', query);
  url.hash = '';
  return url;
}

/** The endpoint as written in reasons: no credentials, no query string. */
function displayEndpoint(url: URL): string {
  const shown = new URL(url);
  shown.username = '';
  shown.password = '';
  shown.search = '';
  return shown.toString();
}

function shorten(text: string, max: number): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

// --- the response ------------------------------------------------------------------------------

/**
 * The errorType values of the Prometheus HTTP API (web/api/v1/api.go), each with what it means
 * in the operator's words. Another errorType is called unrecognized, never quoted; the `error`
 * message is never copied (it is the server's text, and may quote the query).
 */
const PROMETHEUS_ERROR_TYPES: Readonly<Record<string, string>> = {
  bad_data: 'the query or a parameter is invalid (run the query in Prometheus to see why)',
  execution: 'the query could not be executed',
  timeout: 'the query timed out in Prometheus',
  canceled: 'the query was canceled in Prometheus',
  internal: 'an internal error of Prometheus',
  unavailable: 'Prometheus is unavailable',
  not_found: 'not found',
  not_acceptable: 'not acceptable',
};

/** The Prometheus API's result types; another is called unrecognized, never quoted. */
const RESULT_TYPES: ReadonlySet<string> = new Set(['matrix', 'vector', 'scalar', 'string']);

/** Keys of the response schemas: what a zod path may show besides array indexes. */
const SCHEMA_KEYS: ReadonlySet<string> = new Set([
  'status',
  'errorType',
  'data',
  'resultType',
  'result',
  'metric',
  'value',
]);

/** Media types named in reasons; any other is "another content type", never quoted. */
const CONTENT_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/problem+json',
  'application/xml',
  'application/octet-stream',
  'text/html',
  'text/plain',
  'text/xml',
]);

/** An API error object in the operator's words: its errorType when it is one of the API's. */
function apiError(errorType: unknown): string {
  if (typeof errorType === 'string' && Object.hasOwn(PROMETHEUS_ERROR_TYPES, errorType)) {
    return `a Prometheus API error ${errorType} (${PROMETHEUS_ERROR_TYPES[errorType]})`;
  }
  return 'a Prometheus API error of an unrecognized type';
}

/** `HTTP 502 Bad Gateway`: the code and Node's own name for it. */
function httpStatus(status: number): string {
  const name = http.STATUS_CODES[status];
  return name === undefined ? `HTTP ${status}` : `HTTP ${status} ${name}`;
}

/**
 * The response's Content-Type as shown in reasons: `content type text/html` for a media type of
 * CONTENT_TYPES (parameters dropped), and never the header's own text otherwise.
 */
export function describeContentType(header: string | undefined): string {
  if (header === undefined || header.trim() === '') return 'no content type';
  const media = header.split(';')[0]?.trim().toLowerCase() ?? '';
  return CONTENT_TYPES.has(media) ? `content type ${media}` : 'another content type';
}

const ErrorBodySchema = z.object({
  status: z.literal('error'),
  errorType: z.unknown().optional(),
});

const SuccessBodySchema = z.object({
  status: z.literal('success'),
  data: z.object({ resultType: z.string(), result: z.unknown() }),
});

const ApiBodySchema = z.discriminatedUnion('status', [SuccessBodySchema, ErrorBodySchema]);

/**
 * An instant vector: one sample per series, the value a string ("1.5", "+Inf", "NaN"), or a
 * native histogram (`histogram`: count, sum and buckets, read by native-histogram.ts).
 */
const VectorResultSchema = z.array(
  z.union([
    z.object({
      metric: z.record(z.string(), z.string()),
      value: z.tuple([z.number(), z.string()]),
    }),
    z.object({
      metric: z.record(z.string(), z.string()),
      histogram: z.tuple([z.number(), z.unknown()]),
    }),
  ]),
);

/** A Prometheus sample or `le` value as written in the API: decimal, exponent, ±Inf or NaN. */
function parsePromFloat(text: string): number {
  const t = text.trim();
  if (/^\+?inf$/i.test(t)) return Number.POSITIVE_INFINITY;
  if (/^-inf$/i.test(t)) return Number.NEGATIVE_INFINITY;
  if (/^nan$/i.test(t)) return Number.NaN;
  // Number('') is 0 and Number('0x10') is 16: only plain decimals count.
  if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) return Number.NaN;
  return Number(t);
}

/**
 * The first issue: zod's own message, and its path with only indexes and the schemas' own keys
 * (a record's keys come from the response, and are not shown).
 */
function zodSummary(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path
    .map((key) => (typeof key === 'number' || (typeof key === 'string' && SCHEMA_KEYS.has(key)) ? key : '…'))
    .join('.');
  return `${path === '' ? '' : `${path}: `}${issue.message}`;
}

export interface HttpResponse {
  status: number;
  body: string;
  /** The Content-Type header, if any. */
  contentType?: string | undefined;
}

/**
 * What a query carried: `token` the operator's bearer token; `withheld` nothing, a token being
 * configured but the URL not being one of its origins; `none` nothing, no token configured.
 */
export type QueryCredentials = 'token' | 'withheld' | 'none';

/** Said after a 401 or 403: what the query carried, so the reader knows what to fix. */
function credentialsNote(credentials: QueryCredentials | undefined): string {
  switch (credentials) {
    case 'token':
      return "; the query carried the operator's bearer token (--prometheus-bearer-token-file)";
    case 'withheld':
      return "; the query was sent without credentials: the operator's bearer token goes only to the origin of --prometheus-url and to --prometheus-token-origins, over https";
    case 'none':
      return '; the query was sent without credentials (no --prometheus-bearer-token-file)';
    case undefined:
      return '';
  }
}

export interface QueryContext {
  workload: Pick<Workload, 'namespace' | 'name' | 'probePaths'>;
  policy: Pick<ObservedLatencyPolicy, 'window' | 'percentile' | 'query'>;
  /** The histogram asked for: its unit, its preset, what its series leave out. */
  spec: HistogramSpec;
  /** The endpoint queried (credentials are never shown). */
  url: URL;
  query: string;
  /** What the query carried; said when Prometheus answers 401 or 403. */
  credentials?: QueryCredentials | undefined;
  /**
   * How reasons name the query instead of quoting it: a grouped query names other namespaces
   * and Deployments, and a reason lands in each workload's namespaced PolicyReport.
   */
  shown?: string;
}

/** `(Prometheus <endpoint>, query <query>)`, appended to every reason about one query. */
function where(context: QueryContext): string {
  const query = context.shown ?? `query ${shorten(context.query, MAX_QUERY_IN_REASON)}`;
  return `(Prometheus ${displayEndpoint(context.url)}, ${query})`;
}

/**
 * What one query response says about the workload's latency. unavailable when Prometheus did
 * not answer the question (HTTP error status, an error body, a body that is not a Prometheus API
 * response); a plain unknown when it answered but the answer holds no quantile (no series, no
 * +Inf bucket, no requests, a result that is not a per-le vector).
 */
export function interpretQueryResponse(response: HttpResponse, context: QueryContext): LatencyObservation {
  const vector = parseVectorResponse(response, context);
  return 'observation' in vector ? vector.observation : observationOf(vector.series, context);
}

type VectorSeries = z.infer<typeof VectorResultSchema>;

/**
 * The instant vector a query response holds, or the observation that says why there is none:
 * unavailable when Prometheus did not answer the question (HTTP error status, an error body, a
 * body that is not a Prometheus API response), unknown when the answer is not a vector.
 */
export function parseVectorResponse(
  response: HttpResponse,
  context: QueryContext,
): { series: VectorSeries } | { observation: LatencyObservation } {
  const source = 'Prometheus' as const;
  const at = where(context);
  const unavailable = (reason: string) => ({
    observation: { known: false, unavailable: true, source, reason: `${reason} ${at}` } as LatencyObservation,
  });
  const unknown = (reason: string) => ({
    observation: { known: false, source, reason: `${reason} ${at}` } as LatencyObservation,
  });

  // Nothing the server wrote is quoted (see the top of this file): its status code, a listed
  // content type and the API's own errorType values say what went wrong.
  const answered = `Prometheus answered ${httpStatus(response.status)}`;
  const body = `a body (${describeContentType(response.contentType)})`;
  let json: unknown;
  let isJson = true;
  try {
    json = JSON.parse(response.body);
  } catch {
    // The SyntaxError quotes the body: not kept.
    isJson = false;
  }
  const ok = response.status >= 200 && response.status < 300;
  if (!ok) {
    const error = isJson ? ErrorBodySchema.safeParse(json) : undefined;
    const detail =
      response.status >= 300 && response.status < 400
        ? 'a redirect, which the operator does not follow'
        : error?.success
          ? apiError(error.data.errorType)
          : `${body} that is not a Prometheus API response`;
    const credentials =
      response.status === 401 || response.status === 403 ? credentialsNote(context.credentials) : '';
    return unavailable(`${answered}: ${detail}${credentials}`);
  }
  if (!isJson) return unavailable(`${answered} with ${body} that is not JSON: not a Prometheus API response`);
  const api = ApiBodySchema.safeParse(json);
  if (!api.success) {
    return unavailable(
      `${answered} with JSON that is not a Prometheus API response (${zodSummary(api.error)})`,
    );
  }
  if (api.data.status === 'error') return unavailable(`${answered} with ${apiError(api.data.errorType)}`);
  const { resultType, result } = api.data.data;
  if (resultType !== 'vector') {
    const what = RESULT_TYPES.has(resultType) ? `a ${resultType}` : 'a result of an unrecognized type';
    return unknown(`the query returned ${what}, not a vector of per-le bucket counts`);
  }
  const vector = VectorResultSchema.safeParse(result);
  if (!vector.success) return unknown(`the query returned a malformed vector (${zodSummary(vector.error)})`);
  return { series: vector.data };
}

/** An le bound as Prometheus writes it. */
function formatLe(le: number): string {
  return le === Number.POSITIVE_INFINITY ? '+Inf' : le === Number.NEGATIVE_INFINITY ? '-Inf' : String(le);
}

/** The observation of an unknown latency, the reason ending with where it was asked. */
function unknownAt(context: QueryContext) {
  return (reason: string, samples?: number): LatencyObservation => ({
    known: false,
    source: 'Prometheus',
    reason: `${reason} ${where(context)}`,
    ...(samples === undefined ? {} : { samples }),
  });
}

/** A quantile in the histogram's unit, as the observation (in seconds). */
function knownObservation(
  value: number,
  atLeast: boolean,
  samples: number,
  context: QueryContext,
): LatencyObservation {
  const { policy, spec } = context;
  return {
    known: true,
    seconds: value * secondsPerUnit(spec.unit),
    samples,
    percentile: policy.percentile,
    window: policy.window,
    source: 'Prometheus',
    atLeast,
    ...(spec.preset ? { preset: spec.preset } : {}),
    ...(spec.caveat ? { caveat: spec.caveat } : {}),
  };
}

/** A native histogram sample (the increase over the window), read as the latency observation. */
function nativeObservation(sample: unknown, context: QueryContext): LatencyObservation {
  const { policy } = context;
  const unknown = unknownAt(context);
  const parsed = parseApiHistogram(sample);
  // The reason names what is wrong in the operator's words; nothing of the server's text.
  if (!parsed.ok) return unknown('the query returned a native histogram that cannot be read');
  const quantile = nativeHistogramQuantile(policy.percentile, parsed.histogram);
  const samples = Math.max(0, Math.floor(parsed.histogram.count + 1e-9));
  if (!quantile.ok)
    return unknown(
      `no requests in the last ${policy.window} (the native histogram's count did not increase)`,
      0,
    );
  return knownObservation(quantile.value, quantile.atLeast, samples, context);
}

/** One workload's per-le series, read as a histogram: the quantile, or why there is none. */
function observationOf(series: VectorSeries, context: QueryContext): LatencyObservation {
  const unknown = unknownAt(context);
  const { workload, policy, spec } = context;
  if (series.length === 0) {
    return unknown(
      policy.query === undefined
        ? `no ${spec.metric} histogram for ${workload.namespace}/${workload.name} in the last ${policy.window}: neither ${spec.metric}_bucket series nor a native histogram${spec.whenAbsent ? ` (${spec.whenAbsent})` : ''}`
        : `observedLatency.query returned no series for ${workload.namespace}/${workload.name}`,
    );
  }

  const native = series.filter((one) => 'histogram' in one);
  if (native.length > 0) {
    if (native.length !== series.length || native.length > 1)
      return unknown(
        'the query returned more than one native histogram, or native histograms and le series together: it must return one histogram per workload',
      );
    return nativeObservation(native[0]?.histogram[1], context);
  }
  const buckets: Bucket[] = [];
  for (const one of series) {
    if (!('value' in one)) continue;
    const leText = one.metric.le;
    if (leText === undefined) {
      return unknown(
        `the query returned a series without an le label: it must return the per-le bucket counts, e.g. sum by (le) (increase(<metric>_bucket{...}[<window>]))`,
      );
    }
    // Label values and sample values are the server's text: shown only as the numbers parsed.
    const le = parsePromFloat(leText);
    const count = parsePromFloat(one.value[1]);
    if (Number.isNaN(le)) return unknown('the query returned a series whose le label is not a number');
    if (!Number.isFinite(count) || count < 0) {
      return unknown(`the query returned a sample for le="${formatLe(le)}" that is not a count`);
    }
    buckets.push({ le, count });
  }

  const quantile = bucketQuantile(policy.percentile, buckets);
  // increase() extrapolates to the window's edges, so counts are not integers: whole requests
  // are shown (the epsilon absorbs float noise such as 99.99999999). minSamples is an integer,
  // so floor(x) >= minSamples exactly when x >= minSamples.
  const samples = Math.max(0, Math.floor(quantile.observations + 1e-9));
  if (!quantile.ok) {
    switch (quantile.reason) {
      case 'NoInfBucket':
        return unknown(
          `histogram incomplete: none of the ${buckets.length} series returned has le="+Inf", which the quantile needs`,
        );
      case 'TooFewBuckets':
        return unknown(
          'the histogram has only the le="+Inf" bucket: a quantile needs finite buckets',
          samples,
        );
      case 'NoObservations':
        return unknown(`no requests in the last ${policy.window} (the le="+Inf" bucket did not increase)`, 0);
    }
  }
  return knownObservation(quantile.value, quantile.atLeast, samples, context);
}

/** Auto found none of the presets' histograms: the reason names each one asked for. */
function autoFoundNothing(
  specs: readonly HistogramSpec[],
  workload: Pick<Workload, 'namespace' | 'name'>,
  window: string,
): string {
  const tried = specs.map((spec) => `${spec.preset} (${spec.metric})`).join(', ');
  return `${triedAs(specs)}: no series for ${workload.namespace}/${workload.name} in the last ${window}; asked for ${tried}`;
}

function noPresetFound(specs: readonly HistogramSpec[], context: QueryContext): LatencyObservation {
  return unknownAt(context)(autoFoundNothing(specs, context.workload, context.policy.window));
}

/** The longest list of left-out routes one grouped query carries, in characters of its pattern. */
const MAX_GROUPED_PATHS_CHARS = 4096;

/**
 * The workloads one policy can ask about in grouped queries, in chunks. A chunk's workloads
 * share their excluded paths (their probes' and /metrics): one tenant's probe path must not
 * leave out another tenant's route of that name. Left out, to be asked one by one: names the
 * apiserver cuts in their pods' names, and paths longer than MAX_GROUPED_PATHS_CHARS together.
 */
export function groupedChunks(workloads: readonly Workload[]): (QueryChunk & { paths: string[] })[] {
  const bySignature = new Map<string, Workload[]>();
  for (const w of workloads) {
    if (!groupableName(w.name)) continue;
    const paths = excludedPaths(w);
    if (paths.reduce((sum, p) => sum + escapeRegex(p).length + 1, 0) > MAX_GROUPED_PATHS_CHARS) continue;
    const signature = paths.join('\n');
    const list = bySignature.get(signature) ?? [];
    list.push(w);
    bySignature.set(signature, list);
  }
  return [...bySignature.values()].flatMap((list) =>
    queryChunks(list, MAX_WORKLOADS_PER_QUERY).map((chunk) => ({
      ...chunk,
      paths: excludedPaths(list[0] as Workload),
    })),
  );
}

// --- HTTP ----------------------------------------------------------------------------------------

export interface HttpGetOptions {
  headers: Record<string, string>;
  /** PEM bundle to trust in addition to the default CAs (https only). */
  ca?: string | undefined;
  signal: AbortSignal;
  maxBytes: number;
}

/** One GET, answering the status and the body whatever the status; rejects on network errors. */
export type HttpGet = (url: URL, options: HttpGetOptions) => Promise<HttpResponse>;

/**
 * A GET with node:http / node:https. An extra CA gets its own keep-alive https.Agent trusting
 * Node's default CAs (tls.getCACertificates('default'): the bundled or system store and
 * NODE_EXTRA_CA_CERTS) plus the bundle, since `ca` alone would replace them. The agent is
 * replaced when the bundle changes (rotation); the old one's idle sockets time out.
 */
export function createNodeHttpGet(): HttpGet {
  let cached: { pem: string; agent: https.Agent } | undefined;
  const agentFor = (pem: string): https.Agent => {
    if (cached?.pem !== pem) {
      cached = {
        pem,
        agent: new https.Agent({
          keepAlive: true,
          timeout: 5000,
          ca: [...tls.getCACertificates('default'), pem],
        }),
      };
    }
    return cached.agent;
  };

  return async (url, { headers, ca, signal, maxBytes }) => {
    const isHttps = url.protocol === 'https:';
    const client = isHttps ? https : http;
    const agent = isHttps && ca !== undefined ? agentFor(ca) : undefined;
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = client.get(url, { headers, signal, ...(agent ? { agent } : {}) }, resolve);
      request.on('error', reject);
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        response.destroy();
        throw new Error(`response larger than ${maxBytes} bytes`);
      }
      chunks.push(chunk);
    }
    return {
      status: response.statusCode ?? 0,
      body: Buffer.concat(chunks).toString('utf8'),
      contentType: response.headers['content-type'],
    };
  };
}

// --- where the token goes ------------------------------------------------------------------------

/**
 * An entry of --prometheus-token-origins as its origin (`https://host[:port]`, default port
 * dropped, host lowercased, as URL.origin writes it), or why it is not one, as a predicate ("is
 * not a URL", "has credentials"). https only, and nothing but scheme, host and port: a path,
 * query, fragment or credentials would suggest a narrower scope than the origin the token goes to.
 */
export function parseTokenOrigin(text: string): { ok: true; origin: string } | { ok: false; reason: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, reason: 'is not a URL' };
  }
  if (url.protocol !== 'https:')
    return { ok: false, reason: 'is not https (the token is only sent over https)' };
  if (url.username !== '' || url.password !== '') return { ok: false, reason: 'has credentials' };
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(text)) {
    return { ok: false, reason: 'has a path, query or fragment: an origin is https://host[:port]' };
  }
  return { ok: true, origin: url.origin };
}

/** URL.origin of a URL text, or undefined when it does not parse. */
function originOf(text: string): string | undefined {
  try {
    return new URL(text).origin;
  } catch {
    return undefined;
  }
}

// --- the source ----------------------------------------------------------------------------------

export interface PrometheusSourceOptions {
  /** The operator-wide Prometheus (--prometheus-url), used when a policy names none. */
  defaultUrl?: string | undefined;
  /**
   * Its content is sent as `Authorization: Bearer ...`, read at every request (rotation), only
   * to the origin of defaultUrl and to tokenOrigins, and never over http: a query to such an
   * origin over http is not sent. Other URLs are queried without it.
   */
  bearerTokenFile?: string | undefined;
  /** Origins besides defaultUrl's that get the bearer token (--prometheus-token-origins). */
  tokenOrigins?: readonly string[] | undefined;
  /** A PEM bundle trusted for https in addition to the default CAs; read at every request. */
  caFile?: string | undefined;
  /** One query (credentials read included) may take this long (--latency-timeout-ms). */
  timeoutMs: number;
  /** Replaces the HTTP client; default createNodeHttpGet(). */
  httpGet?: HttpGet;
  /** Default 8 MiB. */
  maxResponseBytes?: number;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

export class PrometheusSource implements LatencySource {
  readonly #defaultUrl: string | undefined;
  readonly #bearerTokenFile: string | undefined;
  /** URL.origin values; an http one makes its queries fail rather than carry the token. */
  readonly #tokenOrigins: ReadonlySet<string>;
  readonly #caFile: string | undefined;
  readonly #timeoutMs: number;
  readonly #httpGet: HttpGet;
  readonly #maxResponseBytes: number;

  constructor(options: PrometheusSourceOptions) {
    this.#defaultUrl = options.defaultUrl;
    this.#bearerTokenFile = options.bearerTokenFile;
    this.#tokenOrigins = new Set(
      [options.defaultUrl, ...(options.tokenOrigins ?? [])]
        .map((text) => (text === undefined ? undefined : originOf(text)))
        .filter((origin): origin is string => origin !== undefined && origin !== 'null'),
    );
    this.#caFile = options.caFile;
    this.#timeoutMs = options.timeoutMs;
    this.#httpGet = options.httpGet ?? createNodeHttpGet();
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  }

  async observe(
    workload: Workload,
    policy: ObservedLatencyPolicy,
    signal?: AbortSignal,
  ): Promise<LatencyObservation> {
    try {
      return await this.#observe(workload, policy, signal);
    } catch (err) {
      // Never throws (LatencySource): a bug here is still an observation, saying what happened.
      return {
        known: false,
        unavailable: true,
        source: 'Prometheus',
        reason: `unexpected error: ${errorMessage(err)}`,
      };
    }
  }

  /**
   * Observes many workloads of one policy with few queries: the built-in bucket query grouped
   * by namespace and workload (groupedBucketQuery), one query per chunk of namespaces. Answers
   * the workloads it covers, by `namespace/name`; the others (a custom observedLatency.query, a
   * name the apiserver cuts in its pods' names) are left to observe().
   */
  async observeMany(
    workloads: readonly Workload[],
    policy: ObservedLatencyPolicy,
    signal?: AbortSignal,
  ): Promise<Map<string, LatencyObservation>> {
    const answers = new Map<string, LatencyObservation>();
    if (policy.query !== undefined) return answers;
    const specs = histogramSpecs(policy);
    const attempts = specs.flatMap((spec) => HISTOGRAM_FORMS.map((form) => ({ spec, form })));
    for (const { workloads: chunk, namespaces, deployments, paths } of groupedChunks(workloads)) {
      // Each spec (Auto) and form in turn asks for the workloads no earlier one found series of.
      let pending = chunk;
      for (const [index, { spec, form }] of attempts.entries()) {
        const last = index === attempts.length - 1;
        const askable = pending.filter((w) => canName(spec, w));
        const rest: Workload[] = pending.filter((w) => !canName(spec, w) && !last);
        for (const w of pending)
          if (!canName(spec, w) && last) {
            const query = queryFor(w, policy, spec);
            answers.set(`${w.namespace}/${w.name}`, {
              known: false,
              source: 'Prometheus',
              reason:
                specs.length > 1
                  ? autoFoundNothing(specs, w, policy.window)
                  : query.ok
                    ? 'no histogram to read'
                    : query.reason,
            });
          }
        if (askable.length === 0) {
          pending = rest;
          continue;
        }
        // After the first attempt only some workloads are left: a short list names them, so
        // the answer does not repeat the whole chunk's histograms (a native one is large).
        const narrowed =
          index > 0 && !byService(spec) && askable.length <= MAX_NAMED_WORKLOADS
            ? askable.map((w) => w.name)
            : deployments;
        const query = groupedBucketQuery({
          namespaces,
          deployments: narrowed,
          spec,
          window: policy.window,
          excludedPaths: paths,
          form,
        });
        const first = askable[0] as Workload;
        // Reasons name the grouped query, never quote it: it lists other namespaces.
        const shown = `the built-in ${form === 'classic' ? 'bucket' : 'native histogram'} query${spec.preset ? ` of preset ${spec.preset}` : ''} for ${askable.length} Deployment${askable.length === 1 ? '' : 's'} in ${namespaces.length} namespace${namespaces.length === 1 ? '' : 's'}`;
        const asked = await this.#query(policy, spec, query, first, signal, shown).catch(
          (err: unknown): { observation: LatencyObservation } => ({
            observation: {
              known: false,
              unavailable: true,
              source: 'Prometheus',
              reason: `unexpected error: ${errorMessage(err)}`,
            },
          }),
        );
        if ('observation' in asked) {
          for (const w of [...askable, ...rest]) answers.set(`${w.namespace}/${w.name}`, asked.observation);
          break;
        }
        const vector = parseVectorResponse(asked.response, asked.context);
        if ('observation' in vector) {
          for (const w of [...askable, ...rest]) answers.set(`${w.namespace}/${w.name}`, vector.observation);
          break;
        }
        // By `namespace/workload`, or for a proxy's histogram by `namespace/service`.
        const byKey = new Map<string, VectorSeries>();
        for (const one of vector.series) {
          const { namespace, workload, service, [CLAIMED]: claimed, ...others } = one.metric;
          const name = workload ?? service;
          if (!namespace || !name) continue;
          // An exporter claiming another namespace than the one its pod was scraped in: not
          // this workload's series, nor anyone's.
          if (claimed !== undefined && claimed !== namespace) continue;
          const key = `${namespace}/${name}`;
          const list = byKey.get(key) ?? [];
          list.push({ ...one, metric: others });
          byKey.set(key, list);
        }
        for (const w of askable) {
          const key = `${w.namespace}/${w.name}`;
          const series = byService(spec)
            ? (w.services ?? []).flatMap((svc) => byKey.get(`${w.namespace}/${svc}`) ?? [])
            : (byKey.get(key) ?? []);
          if (series.length === 0 && !last) {
            rest.push(w);
            continue;
          }
          const context = { ...asked.context, workload: w };
          answers.set(
            key,
            series.length === 0 && specs.length > 1
              ? noPresetFound(specs, context)
              : observationOf(series, context),
          );
        }
        pending = rest;
        if (pending.length === 0) break;
      }
    }
    return answers;
  }

  async #observe(
    workload: Workload,
    policy: ObservedLatencyPolicy,
    signal: AbortSignal | undefined,
  ): Promise<LatencyObservation> {
    const all = histogramSpecs(policy);
    // Auto skips a proxy's histogram where no Service is in front of the workload.
    const specs = all.length === 1 ? all : all.filter((spec) => canName(spec, workload));
    // A template is asked once; the built-in query in each form (classic first) of each spec.
    const forms = policy.query === undefined ? HISTOGRAM_FORMS : (['classic'] as const);
    const attempts = specs.flatMap((spec) => forms.map((form) => ({ spec, form })));
    for (const [index, { spec, form }] of attempts.entries()) {
      const query = queryFor(workload, policy, spec, form);
      if (!query.ok) return { known: false, source: 'Prometheus', reason: query.reason };
      const asked = await this.#query(policy, spec, query.query, workload, signal);
      if ('observation' in asked) return asked.observation;
      const vector = parseVectorResponse(asked.response, asked.context);
      if ('observation' in vector) return vector.observation;
      if (vector.series.length > 0) return observationOf(vector.series, asked.context);
      if (index === attempts.length - 1)
        return specs.length === 1 ? observationOf([], asked.context) : noPresetFound(specs, asked.context);
    }
    return { known: false, source: 'Prometheus', reason: 'no histogram to read' };
  }

  /** Sends one query: Prometheus's response, or the observation that says why there is none. */
  async #query(
    policy: ObservedLatencyPolicy,
    spec: HistogramSpec,
    query: string,
    workload: Workload,
    signal: AbortSignal | undefined,
    shown?: string,
  ): Promise<{ response: HttpResponse; context: QueryContext } | { observation: LatencyObservation }> {
    const source = 'Prometheus' as const;
    const base = policy.prometheus?.url ?? this.#defaultUrl;
    if (base === undefined || base === '') {
      return { observation: { known: false, unavailable: true, source, reason: NO_PROMETHEUS_URL } };
    }
    let url: URL;
    try {
      url = queryUrl(base, query);
    } catch {
      const shown = base.replace(/\/\/[^/@]*@/, '//');
      return {
        observation: { known: false, unavailable: true, source, reason: `invalid Prometheus URL ${shown}` },
      };
    }
    // The token goes to its origins only (never a third party a policy names), over https only.
    const sendToken = this.#bearerTokenFile !== undefined && this.#tokenOrigins.has(url.origin);
    const credentials: QueryCredentials =
      this.#bearerTokenFile === undefined ? 'none' : sendToken ? 'token' : 'withheld';
    const context: QueryContext = {
      workload,
      policy,
      spec,
      url,
      query,
      credentials,
      ...(shown ? { shown } : {}),
    };
    const fail = (reason: string) => ({
      observation: {
        known: false,
        unavailable: true,
        source,
        reason: `${reason} ${where(context)}`,
      } as LatencyObservation,
    });

    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const aborted = () => {
      if (timeout.aborted) return fail(`Prometheus did not answer within ${this.#timeoutMs} ms`);
      const reason: unknown = signal?.reason;
      const why = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason);
      return fail(`the query was aborted (${why})`);
    };
    if (combined.aborted) return aborted();

    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': 'graceful-shutdown-operator',
    };
    if (sendToken && url.protocol !== 'https:') {
      return fail(
        `not sent: the operator's bearer token is never sent over ${url.protocol} (use https for ${url.origin})`,
      );
    }
    let ca: string | undefined;
    try {
      if (sendToken && this.#bearerTokenFile !== undefined) {
        const token = (await readFile(this.#bearerTokenFile, { encoding: 'utf8', signal: combined })).trim();
        if (token === '') return fail(`the bearer token file ${this.#bearerTokenFile} is empty`);
        headers.authorization = `Bearer ${token}`;
      }
    } catch (err) {
      if (combined.aborted) return aborted();
      return fail(`cannot read the bearer token file ${this.#bearerTokenFile}: ${errorMessage(err)}`);
    }
    try {
      if (this.#caFile !== undefined && url.protocol === 'https:') {
        ca = await readFile(this.#caFile, { encoding: 'utf8', signal: combined });
      }
    } catch (err) {
      if (combined.aborted) return aborted();
      return fail(`cannot read the CA file ${this.#caFile}: ${errorMessage(err)}`);
    }

    try {
      const response = await this.#httpGet(url, {
        headers,
        ca,
        signal: combined,
        maxBytes: this.#maxResponseBytes,
      });
      return { response, context };
    } catch (err) {
      if (combined.aborted) return aborted();
      return fail(`Prometheus could not be asked: ${errorMessage(err)}`);
    }
  }
}
