// Operator configuration: command-line flags, each with an environment-variable fallback,
// validated at start so a bad value stops the operator with the flag named.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseTokenOrigin } from './latency/prometheus.ts';
import { BACKDATE_MS } from './webhook/certificates.ts';

const durationMs = z.coerce.number().int().min(0).max(86_400_000);
/** Durations that drive request loops: 0 would spin against the apiserver. */
const loopMs = z.coerce.number().int().min(100).max(86_400_000);

/**
 * A comma-separated list of https origins, each normalized as URL.origin writes it; an entry
 * that is not one is refused, quoted with why.
 */
const tokenOrigins = z.string().transform((text, ctx) => {
  const origins: string[] = [];
  for (const entry of text.split(',').map((e) => e.trim())) {
    if (entry === '') continue;
    const parsed = parseTokenOrigin(entry);
    if (!parsed.ok) {
      ctx.issues.push({ code: 'custom', input: text, message: `"${entry}" ${parsed.reason}` });
      return z.NEVER;
    }
    if (!origins.includes(parsed.origin)) origins.push(parsed.origin);
  }
  return origins;
});

/** What a setting's value is, as --help and docs/flags.md show it. */
type SettingKind =
  | 'boolean'
  | 'number'
  | 'ms'
  | 'string'
  | 'enum'
  | 'address'
  | 'url'
  | 'file'
  | 'files'
  | 'list';

/**
 * One setting: its flag, its environment variable, what it is, and its schema (with the
 * default). --help and docs/flags.md are made from these (flagReference).
 */
const settings = {
  kubeconfig: {
    env: 'KUBECONFIG',
    kind: 'files',
    help: "Kubeconfig files, `:`-separated, merged as kubectl merges them. Unset: $KUBECONFIG, ~/.kube/config, or the pod's service account.",
    schema: z.string().min(1).optional(),
  },
  namespace: {
    env: 'POD_NAMESPACE',
    kind: 'string',
    help: 'The namespace the operator runs in: its Lease and its Secrets are there.',
    schema: z.string().min(1).default('graceful-shutdown-system'),
  },
  identity: {
    env: 'POD_NAME',
    kind: 'string',
    help: "This replica's name in the Lease and in logs. Unset: hostname-pid (the pod name, in the cluster).",
    schema: z.string().min(1).optional(),
  },
  'leader-elect': {
    env: 'LEADER_ELECT',
    kind: 'boolean',
    help: 'Campaign for the Lease and act only while leading. false: act at once (run one replica only).',
    schema: z.stringbool().default(true),
  },
  // config/rbac/leader_election_role.yaml grants get/update on this name only: change both together.
  'lease-name': {
    env: 'LEASE_NAME',
    kind: 'string',
    help: 'The Lease the replicas campaign for (config/rbac grants get and update on this name only).',
    schema: z.string().min(1).default('graceful-shutdown-operator'),
  },
  // config/rbac/webhook_role.yaml grants get on this name only: change both together.
  'record-key-secret': {
    env: 'RECORD_KEY_SECRET',
    kind: 'string',
    help: "The Secret (in --namespace) with the key that seals the operator's records on Deployments; made when missing.",
    schema: z.string().min(1).default('graceful-shutdown-operator-record-key'),
  },
  'lease-duration-ms': {
    env: 'LEASE_DURATION_MS',
    kind: 'ms',
    help: 'How long a Lease holds without renewal before another replica may take it.',
    schema: loopMs.default(15_000),
  },
  'renew-deadline-ms': {
    env: 'RENEW_DEADLINE_MS',
    kind: 'ms',
    help: 'How long the leader keeps trying to renew before it stops leading.',
    schema: loopMs.default(10_000),
  },
  'retry-period-ms': {
    env: 'RETRY_PERIOD_MS',
    kind: 'ms',
    help: 'How often a replica tries to take or renew the Lease.',
    schema: loopMs.default(2_000),
  },
  'probe-address': {
    env: 'PROBE_ADDRESS',
    kind: 'address',
    help: 'Where /healthz and /readyz are served.',
    schema: z.string().default('0.0.0.0:8081'),
  },
  'metrics-address': {
    env: 'METRICS_ADDRESS',
    kind: 'address',
    help: 'Where /metrics is served (docs/metrics.md).',
    schema: z.string().default('0.0.0.0:8080'),
  },
  workers: {
    env: 'WORKERS',
    kind: 'number',
    help: 'Deployments reconciled at once.',
    schema: z.coerce.number().int().min(1).max(64).default(4),
  },
  'log-level': {
    env: 'LOG_LEVEL',
    kind: 'enum',
    help: 'The lowest level logged (JSON lines on stdout).',
    schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  },
  'resync-ms': {
    env: 'RESYNC_MS',
    kind: 'ms',
    help: 'Every Deployment is reconciled again this often, events or not.',
    schema: loopMs.default(300_000),
  },
  // The apiserver sends every watch a bookmark about once a minute: a shorter watchdog would
  // restart healthy quiet watches.
  'watchdog-ms': {
    env: 'WATCHDOG_MS',
    kind: 'ms',
    help: 'A watch that sends nothing, not even a bookmark, for this long is restarted.',
    schema: loopMs
      .refine((ms) => ms >= 90_000, 'must be at least 90000 (bookmarks come about every 60 s)')
      .default(300_000),
  },
  'rollout-check-ms': {
    env: 'ROLLOUT_CHECK_MS',
    kind: 'ms',
    help: 'How soon a Deployment waiting for the rollout budget, the breaker or a probe check is looked at again.',
    schema: loopMs.default(5_000),
  },
  'probe-recheck-ms': {
    env: 'PROBE_RECHECK_MS',
    kind: 'ms',
    help: 'How often each replica checks, on running pods, the httpGet probes that would replace its tcpSocket fallbacks.',
    schema: loopMs.default(60_000),
  },
  'shutdown-grace-ms': {
    env: 'SHUTDOWN_GRACE_MS',
    kind: 'ms',
    help: 'On SIGTERM, how long reconciles and writes in flight may take before the process exits.',
    schema: durationMs.default(20_000),
  },
  'prometheus-url': {
    env: 'PROMETHEUS_URL',
    kind: 'url',
    help: 'The Prometheus that policies with observedLatency.source Prometheus query when they name none.',
    schema: z.url({ protocol: /^https?$/ }).optional(),
  },
  'prometheus-bearer-token-file': {
    env: 'PROMETHEUS_BEARER_TOKEN_FILE',
    kind: 'file',
    help: 'A file whose content is sent as the bearer token, read at each request: over https only, to the origin of --prometheus-url and to --prometheus-token-origins only.',
    schema: z.string().min(1).optional(),
  },
  // The token goes to the origin of --prometheus-url and to these, over https only
  // (docs/design/prometheus-credentials.md).
  'prometheus-token-origins': {
    env: 'PROMETHEUS_TOKEN_ORIGINS',
    kind: 'list',
    help: 'More https origins (https://host[:port], comma-separated) that get the bearer token.',
    schema: tokenOrigins.default([]),
  },
  'prometheus-ca-file': {
    env: 'PROMETHEUS_CA_FILE',
    kind: 'file',
    help: "A PEM bundle trusted for an https Prometheus, besides the system's.",
    schema: z.string().min(1).optional(),
  },
  'latency-refresh-ms': {
    env: 'LATENCY_REFRESH_MS',
    kind: 'ms',
    help: "How often the leader refreshes each workload's observed latency.",
    schema: loopMs.default(30_000),
  },
  'latency-timeout-ms': {
    env: 'LATENCY_TIMEOUT_MS',
    kind: 'ms',
    help: 'How long one latency request (a Prometheus query, a pod scrape) may take.',
    schema: loopMs.default(10_000),
  },
  'latency-concurrency': {
    env: 'LATENCY_CONCURRENCY',
    kind: 'number',
    help: 'Workloads whose latency is refreshed at once.',
    schema: z.coerce.number().int().min(1).max(64).default(4),
  },
  // The admission webhook (config/webhook); docs/design/admission.md and webhook-tls.md.
  webhook: {
    env: 'WEBHOOK',
    kind: 'boolean',
    help: 'Serve the mutating admission webhook (config/webhook). false: no webhook server and no certificates (run outside the cluster without --webhook-host).',
    schema: z.stringbool().default(true),
  },
  'webhook-address': {
    env: 'WEBHOOK_ADDRESS',
    kind: 'address',
    help: 'Where the webhook serves HTTPS.',
    schema: z.string().default('0.0.0.0:9443'),
  },
  // config/webhook/service.yaml names it: change both together.
  'webhook-service': {
    env: 'WEBHOOK_SERVICE',
    kind: 'string',
    help: 'The Service in front of the webhook: its DNS names go into the serving certificate.',
    schema: z.string().min(1).default('graceful-shutdown-operator-webhook'),
  },
  /** An operator run outside the cluster is called by URL: the certificate covers this host too. */
  'webhook-host': {
    env: 'WEBHOOK_HOST',
    kind: 'string',
    help: 'One more host name or IP for the serving certificate: an operator run outside the cluster is called by URL.',
    schema: z.string().min(1).optional(),
  },
  // config/rbac/webhook_role.yaml grants patch on this name only: change both together.
  'webhook-configuration': {
    env: 'WEBHOOK_CONFIGURATION',
    kind: 'string',
    help: 'The MutatingWebhookConfiguration whose caBundle the operator keeps (--webhook-certificates Operator).',
    schema: z.string().min(1).default('graceful-shutdown-operator'),
  },
  /**
   * Operator: the operator makes and rotates its certificates and injects the caBundle.
   * External: cert-manager (or another party) keeps the Secret and the caBundle; the operator
   * only serves the Secret's tls.crt and tls.key (config/webhook/README.md).
   */
  'webhook-certificates': {
    env: 'WEBHOOK_CERTIFICATES',
    kind: 'enum',
    help: 'Operator: the operator makes, rotates and injects its certificates. External: cert-manager (or another party) keeps the Secret and the caBundle.',
    schema: z.enum(['Operator', 'External']).default('Operator'),
  },
  'webhook-secret': {
    env: 'WEBHOOK_SECRET',
    kind: 'string',
    help: "The Secret (in --namespace) with the webhook's serving certificate and key.",
    schema: z.string().min(1).default('graceful-shutdown-operator-webhook-tls'),
  },
  'webhook-ca-validity-ms': {
    env: 'WEBHOOK_CA_VALIDITY_MS',
    kind: 'ms',
    help: "How long the operator's webhook CA is valid.",
    schema: loopMs.max(10 * 365 * 86_400_000).default(365 * 86_400_000),
  },
  'webhook-serving-validity-ms': {
    env: 'WEBHOOK_SERVING_VALIDITY_MS',
    kind: 'ms',
    help: 'How long a serving certificate is valid.',
    schema: loopMs.max(10 * 365 * 86_400_000).default(30 * 86_400_000),
  },
  'webhook-renew-before-ms': {
    env: 'WEBHOOK_RENEW_BEFORE_MS',
    kind: 'ms',
    help: 'How long before expiry a certificate is renewed.',
    schema: loopMs.max(10 * 365 * 86_400_000).default(7 * 86_400_000),
  },
  'webhook-overlap-ms': {
    env: 'WEBHOOK_OVERLAP_MS',
    kind: 'ms',
    help: 'How long the old and new CA are both trusted during a rotation.',
    schema: loopMs.default(3_600_000),
  },
  'webhook-check-ms': {
    env: 'WEBHOOK_CHECK_MS',
    kind: 'ms',
    help: 'How often every replica reads the webhook Secret again.',
    schema: loopMs.default(60_000),
  },
} as const satisfies Record<string, { env: string; kind: SettingKind; help: string; schema: z.ZodType }>;

type Settings = typeof settings;
type SettingName = keyof Settings;

export interface ListenAddress {
  host: string;
  port: number;
}

export interface OperatorConfig {
  kubeconfig: string | undefined;
  namespace: string;
  /** The Secret (in `namespace`) holding the key that seals the operator's records. */
  recordKeySecret: string;
  identity: string;
  leaderElection: {
    enabled: boolean;
    leaseName: string;
    leaseDurationMs: number;
    renewDeadlineMs: number;
    retryPeriodMs: number;
  };
  probeAddress: ListenAddress;
  metricsAddress: ListenAddress;
  workers: number;
  logLevel: z.output<Settings['log-level']['schema']>;
  /** Every Deployment is reconciled again this often even without events (level-triggered safety net). */
  resyncMs: number;
  watchdogMs: number;
  /** How soon a Deployment waiting for the breaker to close, or a probe check pending, is looked at again. */
  rolloutCheckMs: number;
  /**
   * How often each replica checks, on running pods, the httpGet probes that would replace the
   * operator's tcpSocket fallbacks (controllers/probe-recheck.ts).
   */
  probeRecheckMs: number;
  shutdownGraceMs: number;
  /** Operator-wide default Prometheus for policies with observedLatency.source Prometheus. */
  prometheusUrl: string | undefined;
  /**
   * Sent as `Authorization: Bearer <file content>`, read at each request (rotation), only to the
   * origin of prometheusUrl and to prometheusTokenOrigins, over https.
   */
  prometheusBearerTokenFile: string | undefined;
  /** Origins (`https://host[:port]`) besides prometheusUrl's that get the bearer token. */
  prometheusTokenOrigins: string[];
  /** PEM bundle trusted for an https Prometheus, in addition to the system's. */
  prometheusCaFile: string | undefined;
  webhook: WebhookConfig;
  latency: {
    /** How often the leader refreshes each workload's latency estimate. */
    refreshMs: number;
    /** One source request (a Prometheus query, a pod scrape) may take this long. */
    timeoutMs: number;
    /** Workloads refreshed at once. */
    concurrency: number;
  };
}

export interface WebhookConfig {
  enabled: boolean;
  address: ListenAddress;
  service: string;
  host: string | undefined;
  certificates: 'Operator' | 'External';
  /** The MutatingWebhookConfiguration whose caBundle the operator keeps; undefined: none. */
  configuration: string | undefined;
  secret: string;
  caValidityMs: number;
  servingValidityMs: number;
  renewBeforeMs: number;
  overlapMs: number;
  /** Every replica reads the Secret again at least this often. */
  checkMs: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function parseAddress(flag: string, value: string): ListenAddress {
  const match = /^(.*):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port > 65535)
    throw new ConfigError(`--${flag}: want host:port (e.g. 0.0.0.0:8081), got "${value}"`);
  return { host: match[1] || '0.0.0.0', port };
}

/** The value a setting has when neither its flag nor its environment variable is set. */
function defaultOf(name: SettingName): string {
  const parsed = settings[name].schema.safeParse(undefined);
  const value: unknown = parsed.success ? parsed.data : undefined;
  if (value === undefined) return '';
  if (Array.isArray(value)) return value.length === 0 ? '' : value.join(',');
  if (settings[name].kind === 'ms' && typeof value === 'number') return `${value} (${humanMs(value)})`;
  return String(value);
}

function humanMs(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['min', 60_000],
    ['s', 1_000],
  ] as const)
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  return `${ms} ms`;
}

/** How a setting's value is written: `<ms>`, `true|false`, the enum's values. */
function valueHint(name: SettingName): string {
  const setting: { kind: SettingKind; schema: z.ZodType } = settings[name];
  if (setting.kind === 'enum') {
    const inner = setting.schema instanceof z.ZodDefault ? setting.schema.def.innerType : setting.schema;
    return inner instanceof z.ZodEnum ? (inner.options as string[]).join('|') : 'value';
  }
  return {
    boolean: 'true|false',
    number: 'n',
    ms: 'ms',
    string: 'name',
    address: 'host:port',
    url: 'url',
    file: 'path',
    files: 'paths',
    list: 'a,b',
  }[setting.kind];
}

const names = Object.keys(settings) as SettingName[];

export const usage = `graceful-shutdown-operator [flags]
Each flag may also be set by the environment variable in brackets; the flag wins. A boolean flag
alone means true (--webhook, or --webhook=false). docs/flags.md lists the same.

${names
  .map((name) => {
    const d = defaultOf(name);
    return `  --${name} <${valueHint(name)}>  [${settings[name].env}]${d ? ` (default ${d})` : ''}\n      ${settings[name].help}`;
  })
  .join('\n')}`;

/** docs/flags.md's table, made from the same settings as --help. */
export function flagReference(): string {
  const cell = (text: string) => text.replaceAll('|', '\\|');
  return [
    '| flag | environment | value | default | what it does |',
    '|---|---|---|---|---|',
    ...names.map(
      (name) =>
        `| \`--${name}\` | \`${settings[name].env}\` | ${cell(valueHint(name))} | ${cell(defaultOf(name)) || '-'} | ${cell(settings[name].help)} |`,
    ),
  ].join('\n');
}

/**
 * A boolean flag alone is true: `--webhook` becomes `--webhook=true` unless a value follows
 * (`--webhook false`, `--webhook=false`).
 */
function booleanFlagsWithoutValues(argv: string[]): string[] {
  const booleans = new Set(names.filter((n) => settings[n].kind === 'boolean').map((n) => `--${n}`));
  return argv.map((arg, i) => {
    const next = argv[i + 1];
    const valueFollows =
      next !== undefined && /^(true|false|1|0|yes|no|on|off|y|n|enabled|disabled)$/i.test(next);
    return booleans.has(arg) && !valueFollows ? `${arg}=true` : arg;
  });
}

/**
 * The bearer token goes only to the origin of --prometheus-url and to --prometheus-token-origins,
 * over https only: a token with nowhere to go, an origin list without a token, and a token for an
 * http --prometheus-url are refused at start rather than found out query by query.
 */
function checkPrometheusCredentials(config: OperatorConfig): void {
  const { prometheusUrl: url, prometheusBearerTokenFile: token, prometheusTokenOrigins: origins } = config;
  if (token === undefined) {
    if (origins.length > 0)
      throw new ConfigError('--prometheus-token-origins needs --prometheus-bearer-token-file');
    return;
  }
  if (url !== undefined && new URL(url).protocol !== 'https:') {
    throw new ConfigError(
      `--prometheus-bearer-token-file: the token is only sent over https, and --prometheus-url is ${new URL(url).origin}: use an https URL (--prometheus-ca-file trusts a private CA) or no token`,
    );
  }
  if (url === undefined && origins.length === 0) {
    throw new ConfigError(
      '--prometheus-bearer-token-file: the token goes only to the origin of --prometheus-url and to --prometheus-token-origins: set one of them',
    );
  }
}

/** Reads flags (first) and environment variables (fallback); throws ConfigError naming the flag. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv, hostname: string): OperatorConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: booleanFlagsWithoutValues(argv),
      strict: true,
      options: Object.fromEntries(Object.keys(settings).map((flag) => [flag, { type: 'string' as const }])),
    }).values;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n${usage}`);
  }
  const read = <N extends SettingName>(name: N): z.output<Settings[N]['schema']> => {
    const setting = settings[name];
    const raw = values[name] ?? env[setting.env];
    const result = setting.schema.safeParse(raw === '' ? undefined : raw);
    if (!result.success) {
      const source = values[name] !== undefined ? `--${name}` : `${setting.env} (--${name})`;
      throw new ConfigError(
        `${source}: ${result.error.issues[0]?.message ?? 'invalid'} (got "${String(raw)}")`,
      );
    }
    return result.data as z.output<Settings[N]['schema']>;
  };

  const config: OperatorConfig = {
    kubeconfig: read('kubeconfig'),
    namespace: read('namespace'),
    recordKeySecret: read('record-key-secret'),
    identity: read('identity') ?? `${hostname}-${process.pid}`,
    leaderElection: {
      enabled: read('leader-elect'),
      leaseName: read('lease-name'),
      leaseDurationMs: read('lease-duration-ms'),
      renewDeadlineMs: read('renew-deadline-ms'),
      retryPeriodMs: read('retry-period-ms'),
    },
    probeAddress: parseAddress('probe-address', read('probe-address')),
    metricsAddress: parseAddress('metrics-address', read('metrics-address')),
    workers: read('workers'),
    logLevel: read('log-level'),
    resyncMs: read('resync-ms'),
    watchdogMs: read('watchdog-ms'),
    rolloutCheckMs: read('rollout-check-ms'),
    probeRecheckMs: read('probe-recheck-ms'),
    shutdownGraceMs: read('shutdown-grace-ms'),
    prometheusUrl: read('prometheus-url'),
    prometheusBearerTokenFile: read('prometheus-bearer-token-file'),
    prometheusTokenOrigins: read('prometheus-token-origins'),
    prometheusCaFile: read('prometheus-ca-file'),
    latency: {
      refreshMs: read('latency-refresh-ms'),
      timeoutMs: read('latency-timeout-ms'),
      concurrency: read('latency-concurrency'),
    },
    webhook: {
      enabled: read('webhook'),
      address: parseAddress('webhook-address', read('webhook-address')),
      service: read('webhook-service'),
      host: read('webhook-host'),
      certificates: read('webhook-certificates'),
      configuration: read('webhook-certificates') === 'Operator' ? read('webhook-configuration') : undefined,
      secret: read('webhook-secret'),
      caValidityMs: read('webhook-ca-validity-ms'),
      servingValidityMs: read('webhook-serving-validity-ms'),
      renewBeforeMs: read('webhook-renew-before-ms'),
      overlapMs: read('webhook-overlap-ms'),
      checkMs: read('webhook-check-ms'),
    },
  };
  checkPrometheusCredentials(config);
  const w = config.webhook;
  // A rotation step must reach every replica within the overlap, and fit in the lifetimes.
  if (!(w.checkMs < w.overlapMs))
    throw new ConfigError(
      `--webhook-check-ms (${w.checkMs}) must be less than --webhook-overlap-ms (${w.overlapMs})`,
    );
  // Certificates start BACKDATE_MS before they are made, within their validity.
  if (!(w.renewBeforeMs + BACKDATE_MS < w.servingValidityMs))
    throw new ConfigError(
      `--webhook-renew-before-ms (${w.renewBeforeMs}) + ${BACKDATE_MS} ms of backdating must be less than --webhook-serving-validity-ms (${w.servingValidityMs})`,
    );
  if (!(w.renewBeforeMs + 2 * w.overlapMs + BACKDATE_MS < w.caValidityMs))
    throw new ConfigError(
      `--webhook-renew-before-ms + 2 x --webhook-overlap-ms + ${BACKDATE_MS} ms of backdating (${w.renewBeforeMs + 2 * w.overlapMs + BACKDATE_MS}) must be less than --webhook-ca-validity-ms (${w.caValidityMs})`,
    );
  const { leaseDurationMs, renewDeadlineMs, retryPeriodMs } = config.leaderElection;
  // client-go's own checks: a renew deadline past the lease lets two replicas lead at once,
  // and renewing needs room for retries jittered by up to 1.2 x the retry period.
  if (!(leaseDurationMs > renewDeadlineMs)) {
    throw new ConfigError(
      `--lease-duration-ms (${leaseDurationMs}) must be greater than --renew-deadline-ms (${renewDeadlineMs})`,
    );
  }
  if (!(renewDeadlineMs > 1.2 * retryPeriodMs)) {
    throw new ConfigError(
      `--renew-deadline-ms (${renewDeadlineMs}) must be greater than 1.2 x --retry-period-ms (${retryPeriodMs})`,
    );
  }
  return config;
}
