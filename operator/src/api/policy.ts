// The GracefulShutdownPolicy API: one zod schema is the source of the TypeScript types, of the
// operator-side validation and (through crd.ts) of the CRD's OpenAPI schema and CEL rules.
import { z } from 'zod';
import { withRules } from './rules.ts';

export const GROUP = 'gracefulshutdown.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'GracefulShutdownPolicy';
export const LIST_KIND = 'GracefulShutdownPolicyList';
export const PLURAL = 'gracefulshutdownpolicies';
export const SINGULAR = 'gracefulshutdownpolicy';
export const SHORT_NAMES = ['gsp'];
export const CATEGORIES = ['gracefulshutdown'];
export const CRD_NAME = `${PLURAL}.${GROUP}`;

/** Where the operator runs; excluded by default so a policy never restarts the operator itself. */
export const OPERATOR_NAMESPACE = 'graceful-shutdown-system';
export const DEFAULT_EXCLUDED_NAMESPACES = ['kube-system', OPERATOR_NAMESPACE];
/** Bound on status.workloads: status must stay small however many Deployments match. */
export const MAX_WORKLOADS_IN_STATUS = 100;
/** Upper bound of every duration in seconds: one hour is far beyond any sane drain. */
export const MAX_SECONDS = 3600;

// --- building blocks -------------------------------------------------------------------------

/**
 * An omitted object defaults to its fully defaulted form. The CRD spells that form out because the
 * apiserver checks CEL rules against a default value as written, before nested defaults apply.
 */
function defaultedObject<S extends z.ZodType<object>>(schema: S) {
  return schema.default(() => schema.parse({}) as z.util.NoUndefined<z.output<S>>);
}

const seconds = (min: number) => z.int().min(min).max(MAX_SECONDS);

/**
 * zod's side of `x-kubernetes-list-type: set | map`: the apiserver rejects duplicate items (or
 * duplicate map keys) as "Duplicate value" at the item's index; so does this check.
 */
function uniqueBy<T>(key: (item: T) => string) {
  return (items: T[], ctx: z.RefinementCtx<T[]>) => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      const itemKey = key(item);
      if (seen.has(itemKey)) ctx.addIssue({ code: 'custom', message: 'Duplicate value', path: [index] });
      seen.add(itemKey);
    });
  };
}

const PORT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A container port by number (1-65535) or by name (IANA service name, as in a Pod's ports). */
export function isPortNumberOrName(port: number | string): boolean {
  if (typeof port === 'number') return Number.isInteger(port) && port >= 1 && port <= 65535;
  return port.length <= 15 && PORT_NAME.test(port) && /[a-z]/.test(port) && !port.includes('--');
}

const PORT_RULE = {
  rule: `type(self) == int ? (self >= 1 && self <= 65535) : (size(self) <= 15 && self.matches('${PORT_NAME.source}') && self.matches('[a-z]') && !self.contains('--'))`,
  message:
    "must be a port number (1-65535) or a port name (at most 15 lowercase letters, digits and '-', with at least one letter)",
  holds: isPortNumberOrName,
};

const portSchema = (description: string) =>
  withRules(z.union([z.int(), z.string()]), [PORT_RULE]).describe(description);

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const HTTP_PATH = /^\/\S*$/;

/** A label value as Kubernetes accepts it: empty, or up to 63 alphanumerics, '-', '_', '.' inside. */
const labelValue = () =>
  z
    .string()
    .max(63)
    .regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/);

const SelectorOperatorSchema = z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']);

const LabelSelectorRequirementSchema = withRules(
  z.strictObject({
    key: z.string().min(1).max(317).describe('The label key the requirement applies to.'),
    operator: SelectorOperatorSchema.describe(
      'How the key relates to the values: In, NotIn, Exists or DoesNotExist.',
    ),
    values: z
      .array(labelValue())
      .max(64)
      .optional()
      .describe('Label values; required (non-empty) for In and NotIn, empty for Exists and DoesNotExist.'),
  }),
  [
    {
      rule: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
      message: 'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
      fieldPath: '.values',
      holds: (r) =>
        r.operator === 'In' || r.operator === 'NotIn' ? (r.values?.length ?? 0) > 0 : !r.values?.length,
    },
  ],
);

/** metav1.LabelSelector: matchLabels and matchExpressions are ANDed; an empty selector matches everything. */
export const LabelSelectorSchema = z.strictObject({
  matchLabels: z
    .record(z.string(), labelValue())
    .optional()
    .describe('Labels that must all be present with these values.'),
  matchExpressions: z
    .array(LabelSelectorRequirementSchema)
    .max(32)
    .optional()
    .describe('Requirements that must all hold.'),
});

// --- spec ------------------------------------------------------------------------------------

export const PolicyModeSchema = z.enum(['Audit', 'Enforce']);
/** When a setting is written: only where the Deployment has none, never, or always (replacing it). */
export const InjectPolicySchema = z.enum(['IfMissing', 'Never', 'Override']);
export const PreStopActionSchema = z.enum(['Auto', 'Sleep', 'Exec']);
export const GraceStrategySchema = z.enum(['Computed', 'Fixed']);
/** When the grace period is written: only to lengthen a shorter one, never, or always (replacing it). */
export const GraceInjectPolicySchema = z.enum(['IfShorter', 'Never', 'Override']);
export const LatencySourceSchema = z.enum(['None', 'Prometheus', 'Scrape']);
/** The request-latency histograms the operator knows (latency/presets.ts), or Auto: the first found. */
export const LatencyPresetSchema = z.enum([
  'Auto',
  'Istio',
  'OpenTelemetry',
  'OpenTelemetryLegacy',
  'Micrometer',
  'PrometheusClient',
  'Linkerd',
  'IngressNginx',
  'Envoy',
]);
export const UpdateExistingSchema = z.enum(['Immediately', 'OnNextRollout']);
export const RolloutFailureActionSchema = z.enum(['Pause', 'Revert']);
/** Whether an httpGet readiness probe is tried on a running pod before it is injected. */
export const ProbeVerificationSchema = z.enum(['Verify', 'Trust']);

export const ReadinessProbePolicySchema = withRules(
  z.strictObject({
    inject: InjectPolicySchema.default('IfMissing').describe(
      'When to write a readiness probe: IfMissing (only containers without one), Never, or Override (replace any existing probe).',
    ),
    path: z
      .string()
      .max(1024)
      .regex(HTTP_PATH)
      .default('/readyz')
      .describe(
        'HTTP path of the httpGet probe; starts with /. A Deployment may override it with the gracefulshutdown.dev/readiness-path annotation.',
      ),
    port: portSchema(
      "Container port of the httpGet probe, by number or name. A Deployment may override it with the gracefulshutdown.dev/readiness-port annotation. Omitted: the container's first declared port.",
    ).optional(),
    periodSeconds: seconds(1).default(5).describe('How often the kubelet probes, in seconds.'),
    timeoutSeconds: seconds(1).default(1).describe('Probe timeout in seconds; at most periodSeconds.'),
    failureThreshold: z
      .int()
      .min(1)
      .max(100)
      .default(3)
      .describe('Consecutive failures after which the container is marked not ready.'),
    verification: ProbeVerificationSchema.default('Verify').describe(
      'Verify: before injecting an httpGet readiness probe into a Deployment that has running pods, the operator requests the path on a running pod and injects the probe only if it answers 2xx or 3xx (as the kubelet judges it); with no pod to ask, an httpGet probe is written only where the port is known to speak HTTP, a tcpSocket probe otherwise. Trust: inject without checking.',
    ),
    grpcHealthService: z
      .boolean()
      .default(false)
      .describe(
        "true: the apps serve the standard gRPC health service (grpc.health.v1.Health) on their gRPC ports, which get the kubelet's grpc probe (Kubernetes 1.27+). false: a gRPC port gets a tcpSocket probe.",
      ),
  }),
  [
    {
      rule: 'self.timeoutSeconds <= self.periodSeconds',
      message: 'timeoutSeconds must be less than or equal to periodSeconds',
      fieldPath: '.timeoutSeconds',
      holds: (p) => p.timeoutSeconds <= p.periodSeconds,
    },
  ],
);

export const PreStopPolicySchema = z.strictObject({
  inject: InjectPolicySchema.default('IfMissing').describe(
    'When to write a preStop hook: IfMissing (only containers without one), Never, or Override (replace any existing hook).',
  ),
  action: PreStopActionSchema.default('Auto').describe(
    'How to wait: Sleep (native lifecycle sleep action, no shell needed; Kubernetes 1.30+ by default), Exec (runs `sleep` from the image), or Auto (Sleep where the cluster supports it, Exec otherwise).',
  ),
  seconds: seconds(0)
    .default(5)
    .describe(
      'How long the container keeps serving after termination starts, so load balancers and kube-proxy stop sending traffic first. Must be below terminationGracePeriod.maxSeconds.',
    ),
});

export const TerminationGracePeriodPolicySchema = withRules(
  z.strictObject({
    inject: GraceInjectPolicySchema.default('IfShorter').describe(
      "When to write terminationGracePeriodSeconds: IfShorter (only when the Deployment's is shorter than recommended; a longer one is kept), Never, or Override (always the recommended value).",
    ),
    strategy: GraceStrategySchema.default('Computed').describe(
      'Computed: preStop.seconds + observed drain time + overheadSeconds, clamped to [minSeconds, maxSeconds]. Fixed: always fixedSeconds.',
    ),
    fixedSeconds: seconds(1)
      .optional()
      .describe('The grace period when strategy is Fixed; required then, forbidden otherwise.'),
    minSeconds: seconds(0).default(30).describe('Lower bound of the grace period in seconds.'),
    maxSeconds: seconds(1).default(300).describe('Upper bound of the grace period in seconds.'),
    overheadSeconds: seconds(0)
      .default(5)
      .describe('Margin added to the computed value for process exit and SIGTERM handling.'),
  }),
  [
    {
      rule: 'self.minSeconds <= self.maxSeconds',
      message: 'minSeconds must be less than or equal to maxSeconds',
      fieldPath: '.minSeconds',
      holds: (g) => g.minSeconds <= g.maxSeconds,
    },
    {
      rule: "self.strategy != 'Fixed' || has(self.fixedSeconds)",
      message: 'fixedSeconds is required when strategy is Fixed',
      fieldPath: '.fixedSeconds',
      holds: (g) => g.strategy !== 'Fixed' || g.fixedSeconds !== undefined,
    },
    {
      rule: "self.strategy == 'Fixed' || !has(self.fixedSeconds)",
      message: 'fixedSeconds is only allowed when strategy is Fixed',
      fieldPath: '.fixedSeconds',
      holds: (g) => g.strategy === 'Fixed' || g.fixedSeconds === undefined,
    },
    {
      rule: '!has(self.fixedSeconds) || (self.fixedSeconds >= self.minSeconds && self.fixedSeconds <= self.maxSeconds)',
      message: 'fixedSeconds must be within [minSeconds, maxSeconds]',
      fieldPath: '.fixedSeconds',
      holds: (g) =>
        g.fixedSeconds === undefined || (g.fixedSeconds >= g.minSeconds && g.fixedSeconds <= g.maxSeconds),
    },
  ],
);

/** Prometheus duration: one or more number+unit pairs, e.g. 30m, 1h30m, 7d. */
const PROMETHEUS_DURATION = /^([0-9]+(ms|s|m|h|d|w|y))+$/;

export const ObservedLatencyPolicySchema = withRules(
  z.strictObject({
    source: LatencySourceSchema.default('None').describe(
      "Where request latency comes from: Prometheus (a query), Scrape (the pods' own /metrics), or None (the drain time counts as zero).",
    ),
    percentile: withRules(z.number(), [
      {
        rule: 'self > 0.0 && self < 1.0',
        message: 'must be strictly between 0 and 1',
        holds: (p) => p > 0 && p < 1,
      },
    ])
      .default(0.99)
      .describe('Latency percentile taken as the drain time, strictly between 0 and 1.'),
    window: z
      .string()
      .max(32)
      .regex(PROMETHEUS_DURATION)
      .default('1h')
      .describe('How far back latency is observed, as a Prometheus duration (30m, 6h, 7d).'),
    stabilizationWindow: z
      .string()
      .max(32)
      .regex(PROMETHEUS_DURATION)
      .default('15m')
      .describe(
        'A lower latency must hold this long before a grace period the operator applied is lowered (raising is immediate), as HPA stabilizes scale-down. A Prometheus duration.',
      ),
    minSamples: z
      .int()
      .min(1)
      .max(1_000_000_000)
      .default(100)
      .describe(
        'Requests needed in the window before the observation is trusted; with fewer, the drain time counts as zero.',
      ),
    safetyFactor: z
      .number()
      .min(1)
      .max(10)
      .default(1.5)
      .describe('Multiplier applied to the observed latency to get the drain time.'),
    preset: LatencyPresetSchema.optional().describe(
      "A histogram the cluster already has, with its name, unit, labels and route label known: Istio (istio_request_duration_milliseconds, server side), OpenTelemetry (http_server_request_duration_seconds; ASP.NET Core 8+ too), OpenTelemetryLegacy (http_server_duration_milliseconds), Micrometer (Spring Boot's http_server_requests_seconds), PrometheusClient (http_request_duration_seconds), Linkerd (inbound_http_request_duration_seconds where the proxy serves it, else response_latency_ms, inbound, time to first byte), IngressNginx (nginx_ingress_controller_request_duration_seconds, at the ingress, by Service; source Prometheus only), Envoy (envoy_cluster_upstream_rq_time, at an Envoy proxy such as Contour's, by Service; source Prometheus only), or Auto: the first of these, in that order, that the workload's series have. Status names the preset read. Excludes metric, unit and query.",
    ),
    metric: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/)
      .optional()
      .describe(
        "Name of the request-duration histogram (without _bucket), found by the pods' namespace and pod labels. Omitted (and no preset): http_request_duration_seconds. Ignored when query is set.",
      ),
    unit: z
      .enum(['Seconds', 'Milliseconds'])
      .optional()
      .describe(
        "The unit of the histogram's le bounds (Istio, Linkerd and Envoy histograms are in milliseconds). Omitted: read from the metric name, Milliseconds for a name ending in _milliseconds or _ms, Seconds otherwise. Status, Events and metrics always speak seconds.",
      ),
    proxyNamespaces: z
      .array(z.string().max(63).regex(DNS_LABEL))
      .min(1)
      .max(16)
      .superRefine(uniqueBy((namespace) => namespace))
      .optional()
      .meta({ 'x-kubernetes-list-type': 'set' })
      .describe(
        "The namespaces the proxies run in (the ingress-nginx controller, Envoy or Contour), whose histograms presets IngressNginx and Envoy read: only series scraped from pods in these namespaces count, as any pod can write a proxy's series naming another namespace's Service. Required with those presets; Auto tries them only when set. Scrape the proxies without honor_labels, so that the scrape's namespace label is theirs.",
      ),
    query: z
      .string()
      .min(1)
      .max(4096)
      .optional()
      .describe(
        'PromQL template used instead of the built-in query (source Prometheus only). It must return the per-le bucket counts of the workload over the window, like `sum by (le) (increase(<metric>_bucket{...}[<window>]))`, or one native histogram, like `sum(increase(<metric>{...}[<window>]))`, so the operator knows the sample count and the +Inf case. Placeholders: {{namespace}}, {{deployment}}, {{metric}}, {{percentile}}, {{window}}.',
      ),
    prometheus: z
      .strictObject({
        url: z
          .string()
          .max(2048)
          .regex(/^https?:\/\/\S+$/)
          .optional()
          .describe(
            'Base URL of the Prometheus HTTP API. Omitted: the operator-wide default (--prometheus-url).',
          ),
      })
      .optional()
      .describe('Prometheus connection (source Prometheus only).'),
    scrape: z
      .strictObject({
        port: portSchema('Pod port serving metrics, by number or name.').default('metrics'),
        path: z.string().max(1024).regex(HTTP_PATH).default('/metrics').describe('HTTP path of the metrics.'),
      })
      .optional()
      .describe("Where to scrape the pods' metrics (source Scrape only)."),
  }),
  [
    {
      // metric: http_request_duration_seconds is what policies created before presets had stored
      // (the old default): it may stay.
      rule: "!has(self.preset) || ((!has(self.metric) || self.metric == 'http_request_duration_seconds') && !has(self.unit) && !has(self.query))",
      message:
        'preset names the histogram, its unit and its labels: metric, unit and query are not allowed with it',
      fieldPath: '.preset',
      holds: (l) =>
        l.preset === undefined ||
        ((l.metric === undefined || l.metric === 'http_request_duration_seconds') &&
          l.unit === undefined &&
          l.query === undefined),
    },
    {
      rule: "!has(self.preset) || !(self.preset in ['IngressNginx', 'Envoy']) || has(self.proxyNamespaces)",
      message:
        'presets IngressNginx and Envoy need proxyNamespaces: the namespaces whose proxies are trusted',
      fieldPath: '.proxyNamespaces',
      holds: (l) => (l.preset !== 'IngressNginx' && l.preset !== 'Envoy') || l.proxyNamespaces !== undefined,
    },
    {
      rule: "!has(self.preset) || !(self.preset in ['IngressNginx', 'Envoy']) || self.source == 'Prometheus'",
      message:
        'presets IngressNginx and Envoy are measured at a proxy, not in the pods: only source Prometheus reads them',
      fieldPath: '.preset',
      holds: (l) => (l.preset !== 'IngressNginx' && l.preset !== 'Envoy') || l.source === 'Prometheus',
    },
    {
      rule: "!has(self.query) || self.source == 'Prometheus'",
      message: 'query is only allowed when source is Prometheus',
      fieldPath: '.query',
      holds: (l) => l.query === undefined || l.source === 'Prometheus',
    },
    {
      rule: "!has(self.prometheus) || self.source == 'Prometheus'",
      message: 'prometheus is only allowed when source is Prometheus',
      fieldPath: '.prometheus',
      holds: (l) => l.prometheus === undefined || l.source === 'Prometheus',
    },
    {
      rule: "!has(self.scrape) || self.source == 'Scrape'",
      message: 'scrape is only allowed when source is Scrape',
      fieldPath: '.scrape',
      holds: (l) => l.scrape === undefined || l.source === 'Scrape',
    },
  ],
);

export const RolloutPolicySchema = z.strictObject({
  maxConcurrent: z
    .int()
    .min(1)
    .max(100)
    .default(1)
    .describe('How many Deployments this policy may have rolling out at once because of its changes.'),
  updateExisting: UpdateExistingSchema.default('Immediately').describe(
    "Immediately: patch matching Deployments now (each patch starts a rollout). OnNextRollout: wait until the Deployment's pod template changes for another reason (never a scale or a metadata edit).",
  ),
  progressDeadlineSeconds: seconds(10)
    .default(600)
    .describe(
      "How long a rollout the operator started may take until every new pod is available; past it (or past the Deployment's own progressDeadlineSeconds) the rollout counts as failed: no new rollouts in its namespace until it is fixed (see breakerNamespaces).",
    ),
  onFailure: RolloutFailureActionSchema.default('Pause').describe(
    'What to do with a rollout the operator started that failed. Pause: leave the Deployment as it is. Revert: write back the values it had before the change (recorded, sealed, when the change was made). Either way its namespace gets no new rollouts until it is fixed.',
  ),
  breakerNamespaces: z
    .int()
    .min(1)
    .max(100)
    .default(3)
    .describe(
      "A failed rollout holds only its own namespace; once failed rollouts hold this many namespaces at once, the policy's breaker opens and no namespace gets new rollouts. 1 stops the whole policy at the first failure. Default 3: one team cannot stop everybody's by breaking its own rollouts, while a policy whose values break several apps stops after a few.",
    ),
  conflictWindowSeconds: z
    .int()
    .min(60)
    .max(7 * 24 * 3600)
    .default(24 * 3600)
    .describe(
      'When another field manager (a GitOps tool, helm, a person) sets back a field the operator wrote, the operator writes it once more; set back again by the same manager within this many seconds, the Deployment is held (no more writes, reason ConflictingManager) until that manager writes a compliant value or lets go of the field. Default one day.',
    ),
});

/**
 * An image repository path without registry host, tag or digest (istio/proxyv2), optionally
 * ending in * (otel/opentelemetry-collector*). The first segment has no '.' or ':', which is
 * how an image reference tells a registry host (gcr.io, localhost:5000) from a path.
 */
export const IMAGE_REPOSITORY_PATTERN =
  /^[a-z0-9]+([_-]+[a-z0-9]+)*(\/[a-z0-9]+([._-]+[a-z0-9]+)*)*(\/?\*)?$/;

export const SidecarsPolicySchema = z.strictObject({
  names: z
    .array(z.string().max(63).regex(DNS_LABEL))
    .max(64)
    .superRefine(uniqueBy((name) => name))
    .default(() => [])
    .meta({ 'x-kubernetes-list-type': 'set' })
    .describe('Container names of sidecars, e.g. log-shipper.'),
  images: z
    .array(
      z
        .string()
        .max(255)
        .regex(
          IMAGE_REPOSITORY_PATTERN,
          'must be an image repository path without registry host, tag or digest, e.g. istio/proxyv2, optionally ending in * (otel/opentelemetry-collector*)',
        ),
    )
    .max(64)
    .superRefine(uniqueBy((image) => image))
    .default(() => [])
    .meta({ 'x-kubernetes-list-type': 'set' })
    .describe(
      "Image repositories of sidecars, without registry host, tag or digest (istio/proxyv2 matches docker.io/istio/proxyv2:1.24.0 and a mirror's registry.example.com/mirror/istio/proxyv2); a trailing * matches any continuation (otel/opentelemetry-collector*).",
    ),
});

export const PolicySpecSchema = withRules(
  z.strictObject({
    mode: PolicyModeSchema.default('Audit').describe(
      'Audit: compute and report in status, write nothing to workloads. Enforce: apply the settings to Deployments.',
    ),
    priority: z
      .int()
      .min(0)
      .max(1000)
      .default(0)
      .describe(
        'When several policies match a Deployment, the highest priority wins; on a tie, the policy whose name sorts first.',
      ),
    deploymentSelector: defaultedObject(LabelSelectorSchema).describe(
      'Which Deployments (by their labels); empty matches all. A Deployment annotated gracefulshutdown.dev/exclude: "true" is never touched.',
    ),
    namespaceSelector: defaultedObject(LabelSelectorSchema).describe(
      'Which namespaces (by their labels); empty matches all.',
    ),
    excludedNamespaces: z
      .array(z.string().max(63).regex(DNS_LABEL))
      .max(256)
      .superRefine(uniqueBy((namespace) => namespace))
      .default(() => [...DEFAULT_EXCLUDED_NAMESPACES])
      .meta({ 'x-kubernetes-list-type': 'set' })
      .describe('Namespaces never matched, whatever their labels.'),
    readinessProbe: defaultedObject(ReadinessProbePolicySchema).describe(
      'The readiness probe written to containers.',
    ),
    preStop: defaultedObject(PreStopPolicySchema).describe('The preStop hook written to containers.'),
    terminationGracePeriod: defaultedObject(TerminationGracePeriodPolicySchema).describe(
      "The pod's terminationGracePeriodSeconds. The countdown starts before preStop runs, so it must cover preStop, the drain and exit.",
    ),
    observedLatency: defaultedObject(ObservedLatencyPolicySchema).describe(
      'How request latency is observed to compute the drain time.',
    ),
    rollout: defaultedObject(RolloutPolicySchema).describe('How changes reach running Deployments.'),
    sidecars: defaultedObject(SidecarsPolicySchema).describe(
      'Containers that are sidecars, in addition to the built-in list of well-known proxies and agents (istio-proxy, linkerd-proxy, ...) and to the gracefulshutdown.dev/sidecars annotation. A sidecar never gets a readiness probe or a preStop hook and is never the serving container.',
    ),
  }),
  [
    {
      rule: 'self.preStop.seconds < self.terminationGracePeriod.maxSeconds',
      message: 'preStop.seconds must be below terminationGracePeriod.maxSeconds',
      fieldPath: '.preStop.seconds',
      holds: (s) => s.preStop.seconds < s.terminationGracePeriod.maxSeconds,
    },
    {
      rule: '!has(self.terminationGracePeriod.fixedSeconds) || self.preStop.seconds < self.terminationGracePeriod.fixedSeconds',
      message: 'preStop.seconds must be below terminationGracePeriod.fixedSeconds',
      fieldPath: '.preStop.seconds',
      holds: (s) =>
        s.terminationGracePeriod.fixedSeconds === undefined ||
        s.preStop.seconds < s.terminationGracePeriod.fixedSeconds,
    },
  ],
).describe('What the policy selects and the settings it wants.');

// --- status ----------------------------------------------------------------------------------

const CAMEL_CASE_REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
const timestamp = () => z.iso.datetime({ offset: true });

/** metav1.Condition. */
export const ConditionSchema = z.strictObject({
  type: z
    .string()
    .min(1)
    .max(316)
    .regex(
      /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
    )
    .describe('Type of the condition, in CamelCase.'),
  status: z.enum(['True', 'False', 'Unknown']).describe('True, False or Unknown.'),
  observedGeneration: z
    .int()
    .min(0)
    .optional()
    .describe('The .metadata.generation the condition was set from.'),
  lastTransitionTime: timestamp().describe('When the status last changed.'),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(CAMEL_CASE_REASON)
    .describe('Programmatic identifier of the last transition, in CamelCase.'),
  message: z.string().max(32768).describe('Human-readable details of the last transition.'),
});

export const PolicyConditionTypes = {
  /** The spec is valid; when False, the reason is InvalidSpec and the message names the field. */
  Accepted: 'Accepted',
  /** Every matched Deployment is compliant. */
  Compliant: 'Compliant',
  /**
   * Request latency is observed for every Deployment the policy governs (source not None); when
   * False, the reason (SourceUnavailable, NoData, TooFewSamples) and how many are affected.
   */
  LatencyObserved: 'LatencyObserved',
  /**
   * Enforce only. True while a rollout the operator started has failed (reason RolloutFailed,
   * the message names the Deployment): the policy starts no new rollouts until it is fixed.
   */
  RolloutBreakerOpen: 'RolloutBreakerOpen',
} as const;

export const VerdictSchema = z.enum(['Compliant', 'NonCompliant', 'Exempt', 'Unknown']);

export const ShutdownSettingsSchema = z.strictObject({
  terminationGracePeriodSeconds: z
    .int()
    .min(0)
    .optional()
    .describe("The pod's terminationGracePeriodSeconds."),
  preStop: z
    .strictObject({
      action: z.enum(['Sleep', 'Exec']).describe('Sleep (native) or Exec (sleep command).'),
      seconds: z.int().min(0).describe('How long the hook waits.'),
    })
    .optional()
    .describe('The preStop hook.'),
  readinessProbe: z
    .strictObject({
      kind: z
        .enum(['httpGet', 'tcpSocket', 'grpc'])
        .optional()
        .describe('The probe handler; absent: httpGet.'),
      path: z.string().max(1024).optional().describe('httpGet path; absent for tcpSocket and grpc.'),
      port: z.union([z.int(), z.string()]).describe('The probed port, by number or name.'),
    })
    .optional()
    .describe('The readiness probe.'),
});

export const ObservedLatencySchema = z.strictObject({
  source: LatencySourceSchema.describe('Where the observation came from.'),
  preset: LatencyPresetSchema.exclude(['Auto'])
    .optional()
    .describe(
      "The preset whose histogram was read (with preset Auto, the one found); omitted for the policy's own metric or query.",
    ),
  percentile: z.number().describe('The percentile observed.'),
  seconds: z.number().min(0).optional().describe('The observed latency at that percentile, in seconds.'),
  samples: z.int().min(0).describe('Requests seen in the window.'),
  window: z.string().max(32).describe('The observation window.'),
  observedTime: timestamp().optional().describe('When the observation was made.'),
  message: z
    .string()
    .max(512)
    .optional()
    .describe(
      "What to know about it: why it is unknown, that it is kept while the source fails, that the percentile lies above the largest histogram bucket, that the kubelet's probes are counted in, or what the preset's histogram measures.",
    ),
});

export const WorkloadStatusSchema = z.strictObject({
  namespace: z.string().min(1).max(63).describe('Namespace of the Deployment.'),
  name: z.string().min(1).max(253).describe('Name of the Deployment.'),
  verdict: VerdictSchema.describe('Compliant, NonCompliant, Exempt or Unknown.'),
  reason: z.string().min(1).max(128).regex(CAMEL_CASE_REASON).describe('Why, in CamelCase.'),
  message: z.string().max(1024).optional().describe('Why, for humans.'),
  recommended: ShutdownSettingsSchema.optional().describe('What the policy computes for this Deployment.'),
  applied: ShutdownSettingsSchema.optional().describe('What the Deployment has now.'),
  observedLatency: ObservedLatencySchema.optional().describe(
    'The latency the recommendation was computed from.',
  ),
});

export const PolicyCountsSchema = z.strictObject({
  matched: z.int().min(0).default(0).describe('Deployments the policy selects (and wins).'),
  compliant: z.int().min(0).default(0).describe('Matched Deployments whose settings meet the policy.'),
  nonCompliant: z.int().min(0).default(0).describe('Matched Deployments whose settings do not.'),
  exempt: z
    .int()
    .min(0)
    .default(0)
    .describe('Selected Deployments opted out by annotation or won by another policy.'),
  applied: z
    .int()
    .min(0)
    .optional()
    .describe('Compliant Deployments whose settings the operator wrote (Enforce).'),
  waiting: z
    .int()
    .min(0)
    .optional()
    .describe('Non-compliant Deployments whose change waits (Enforce); waitingReasons says why.'),
  waitingReasons: z
    .array(
      z.strictObject({
        reason: z.string().min(1).max(64).regex(CAMEL_CASE_REASON).describe('Why they wait.'),
        count: z.int().min(0).describe('How many.'),
      }),
    )
    .max(16)
    .superRefine(uniqueBy((entry) => entry.reason))
    .optional()
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['reason'] })
    .describe(
      'Waiting Deployments by reason (Paused, RollingOut, Unhealthy, RolloutBudgetExhausted, WaitingForNextRollout, BreakerOpen, RolloutFailed, ConflictingManager), most first. A list, so a status write replaces it whole.',
    ),
  blockedByBreaker: z
    .int()
    .min(0)
    .optional()
    .describe(
      'Waiting Deployments held back because the rollout breaker is open (BreakerOpen or RolloutFailed).',
    ),
  killed: z
    .int()
    .min(0)
    .optional()
    .describe(
      'Matched Deployments whose pods the operator saw killed at the end of their grace period (since it started); their recommendation is raised (ShutdownKilled).',
    ),
});

export const PolicyStatusSchema = z
  .strictObject({
    observedGeneration: z.int().min(0).optional().describe('The .metadata.generation this status describes.'),
    conditions: z
      .array(ConditionSchema)
      .max(16)
      .superRefine(uniqueBy((condition) => condition.type))
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .describe('Accepted, Compliant and (with a latency source) LatencyObserved conditions.'),
    counts: PolicyCountsSchema.optional().describe('How many Deployments are in each verdict.'),
    heldNamespaces: z
      .array(z.string().min(1).max(63))
      .max(100)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'set' })
      .describe(
        'Enforce: namespaces where a rollout the operator started failed. No new rollouts there, and no settings added at admission, until it is fixed; RolloutBreakerOpen says when they hold the whole policy.',
      ),
    workloads: z
      .array(WorkloadStatusSchema)
      .max(MAX_WORKLOADS_IN_STATUS)
      .superRefine(uniqueBy((workload) => `${workload.namespace}/${workload.name}`))
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['namespace', 'name'] })
      .describe(
        `Per-Deployment verdicts, non-compliant first, at most ${MAX_WORKLOADS_IN_STATUS}; counts holds the totals.`,
      ),
  })
  .describe('What the operator observed and did.');

// --- the object ------------------------------------------------------------------------------

export const PolicyMetadataSchema = z.looseObject({
  name: z.string().min(1).max(253).optional(),
  generation: z.int().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export const GracefulShutdownPolicySchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  metadata: PolicyMetadataSchema,
  spec: PolicySpecSchema,
  status: PolicyStatusSchema.optional(),
});

export type LabelSelector = z.output<typeof LabelSelectorSchema>;
export type PolicyMode = z.output<typeof PolicyModeSchema>;
export type InjectPolicy = z.output<typeof InjectPolicySchema>;
export type PreStopAction = z.output<typeof PreStopActionSchema>;
export type GraceStrategy = z.output<typeof GraceStrategySchema>;
export type GraceInjectPolicy = z.output<typeof GraceInjectPolicySchema>;
export type LatencySource = z.output<typeof LatencySourceSchema>;
export type UpdateExisting = z.output<typeof UpdateExistingSchema>;
export type ProbeVerification = z.output<typeof ProbeVerificationSchema>;
export type ReadinessProbePolicy = z.output<typeof ReadinessProbePolicySchema>;
export type PreStopPolicy = z.output<typeof PreStopPolicySchema>;
export type TerminationGracePeriodPolicy = z.output<typeof TerminationGracePeriodPolicySchema>;
export type ObservedLatencyPolicy = z.output<typeof ObservedLatencyPolicySchema>;
/** A preset that names one histogram (every preset but Auto). */
export type LatencyPresetName = Exclude<z.output<typeof LatencyPresetSchema>, 'Auto'>;
export type RolloutPolicy = z.output<typeof RolloutPolicySchema>;
export type SidecarsPolicy = z.output<typeof SidecarsPolicySchema>;
/** The spec with every default filled, as the apiserver returns it. */
export type GracefulShutdownPolicySpec = z.output<typeof PolicySpecSchema>;
/** The spec as a user may write it: defaulted fields optional. */
export type GracefulShutdownPolicySpecInput = z.input<typeof PolicySpecSchema>;
export type Condition = z.output<typeof ConditionSchema>;
export type Verdict = z.output<typeof VerdictSchema>;
export type ShutdownSettings = z.output<typeof ShutdownSettingsSchema>;
export type ObservedLatency = z.output<typeof ObservedLatencySchema>;
export type WorkloadStatus = z.output<typeof WorkloadStatusSchema>;
export type PolicyCounts = z.output<typeof PolicyCountsSchema>;
export type GracefulShutdownPolicyStatus = z.output<typeof PolicyStatusSchema>;
export type GracefulShutdownPolicy = z.output<typeof GracefulShutdownPolicySchema>;
export type GracefulShutdownPolicyInput = z.input<typeof GracefulShutdownPolicySchema>;

// --- operator-side validation ----------------------------------------------------------------

/** One validation error, the path written like the apiserver writes it: spec.preStop.seconds. */
export interface FieldError {
  path: string;
  message: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

function formatPath(segments: readonly PropertyKey[]): string {
  let path = '';
  for (const segment of segments) {
    if (typeof segment === 'number') path += `[${segment}]`;
    else path += path === '' ? String(segment) : `.${String(segment)}`;
  }
  return path;
}

function fieldErrors(error: z.ZodError, prefix: readonly PropertyKey[]): FieldError[] {
  const errors: FieldError[] = [];
  for (const issue of error.issues) {
    const base = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      // One error per unknown field, named like the apiserver's strict field validation does.
      for (const key of issue.keys)
        errors.push({ path: formatPath([...base, key]), message: 'unknown field' });
    } else {
      errors.push({ path: formatPath(base), message: issue.message });
    }
  }
  return errors;
}

function parseWith<S extends z.ZodType>(
  schema: S,
  input: unknown,
  prefix: PropertyKey[],
): ParseResult<z.output<S>> {
  const result = schema.safeParse(input);
  if (result.success) return { ok: true, value: result.data };
  return { ok: false, errors: fieldErrors(result.error, prefix) };
}

/** Validates a policy's spec and fills its defaults, like the apiserver does with the CRD. */
export function parsePolicySpec(spec: unknown): ParseResult<GracefulShutdownPolicySpec> {
  if (spec === undefined || spec === null) {
    return { ok: false, errors: [{ path: 'spec', message: 'Required value' }] };
  }
  return parseWith(PolicySpecSchema, spec, ['spec']);
}

/** Validates a whole GracefulShutdownPolicy object (apiVersion, kind, spec, status). */
export function parsePolicy(policy: unknown): ParseResult<GracefulShutdownPolicy> {
  return parseWith(GracefulShutdownPolicySchema, policy, []);
}

/**
 * Orders policies that match the same Deployment, winner first: highest priority, then the name
 * that sorts first, so the choice never depends on watch order.
 */
export function comparePolicyPrecedence(
  a: { metadata: { name?: string | undefined }; spec: { priority: number } },
  b: { metadata: { name?: string | undefined }; spec: { priority: number } },
): number {
  if (a.spec.priority !== b.spec.priority) return b.spec.priority - a.spec.priority;
  const nameA = a.metadata.name ?? '';
  const nameB = b.metadata.name ?? '';
  return nameA < nameB ? -1 : nameA > nameB ? 1 : 0;
}
