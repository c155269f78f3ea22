/**
 * demo-service configuration: environment variables, each overridable by a flag of the same
 * name in kebab case (PORT -> --port). Flags win, so a local run needs no env juggling.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { type LatencyProfile, parseLatencyProfile } from './latency.ts';
import { SHAPES, type Shape } from './shapes.ts';

const seconds = z.coerce.number().finite().min(0);

const configSchema = z.object({
  /**
   * What the service speaks: http (the drain-aware HTTP service), grpc (the standard gRPC health
   * service, grpc.ts) or redis (PING -> +PONG, redis.ts): fixtures for the operator's probe choice.
   */
  DEMO_PROTOCOL: z.enum(['http', 'grpc', 'redis']).default('http'),
  PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  LATENCY_PROFILE: z.string().default('lognormal:p50=20,p99=250'),
  /** Keep accepting this long after SIGTERM. 0 when a preStop sleep already covers endpoint propagation. */
  PROPAGATION_DELAY_SECONDS: seconds.default(0),
  /** The pod's terminationGracePeriodSeconds; the operator injects it. Kubernetes' default is 30. */
  TERMINATION_GRACE_PERIOD_SECONDS: seconds.default(30),
  /** preStop sleep in front of SIGTERM: it is spent from the same grace period. */
  PRESTOP_SECONDS: seconds.default(0),
  /** Left between our deadline and the kubelet's SIGKILL, to log and exit. */
  DRAIN_MARGIN_SECONDS: seconds.default(2),
  /** Advertised in Keep-Alive: timeout=N. Behind a load balancer it must exceed the LB idle timeout. */
  KEEP_ALIVE_TIMEOUT_SECONDS: seconds.default(5),
  /**
   * A client must send its request line and headers within this, counted from the request's first
   * byte (from accept on a new connection), or it gets 408 and the connection closes.
   */
  HEADERS_TIMEOUT_SECONDS: z.coerce.number().finite().positive().default(10),
  /** Open connections at most; Node closes any further one at once (http_server_dropped_connections_total). */
  MAX_CONNECTIONS: z.coerce.number().int().min(1).default(1000),
  /** Upper bound, in ms, for the ?ms= override of the work endpoint. */
  MAX_WORK_MS: z.coerce.number().int().min(0).default(600_000),
  /**
   * The request-duration histograms recorded (shapes.ts), comma separated: its own
   * prometheus-client (http_request_duration_seconds) and opentelemetry-legacy (the milliseconds
   * twin), and other stacks' istio, linkerd, linkerd-legacy, opentelemetry, micrometer, ingress-nginx,
   * envoy, opentelemetry-otlp (pushed, not exposed).
   */
  METRIC_SHAPES: z
    .string()
    .default('prometheus-client,opentelemetry-legacy')
    .transform((text, ctx) => {
      const names = text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      const unknown = names.filter((name) => !(SHAPES as readonly string[]).includes(name));
      if (unknown.length > 0)
        ctx.addIssue({
          code: 'custom',
          message: `unknown shape(s) ${unknown.join(', ')}; known: ${SHAPES.join(', ')}`,
        });
      return [...new Set(names)] as Shape[];
    }),
  /** The Deployment's name, as a mesh would label the pod's requests (istio shape). */
  WORKLOAD_NAME: z.string().default('demo-service'),
  /** The pod's namespace (downward API), as a mesh would label its requests (istio shape). */
  POD_NAMESPACE: z.string().default('default'),
  /** The Service the proxy shapes (ingress-nginx, envoy) record demo-service's requests for. */
  PROXIED_SERVICE: z.string().default('demo-service'),
  /** Where the opentelemetry-otlp shape pushes (OpenTelemetry's own variable): an http(s) URL. */
  OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: z
    .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
    .optional(),
  /** How often, in ms, the opentelemetry-otlp shape pushes (OpenTelemetry's own variable and default). */
  OTEL_METRIC_EXPORT_INTERVAL: z.coerce.number().int().min(100).max(600_000).default(60_000),
  /** The pod's name (downward API), as the opentelemetry-otlp shape's service.instance.id and k8s.pod.name. */
  POD_NAME: z.string().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type RawConfig = z.infer<typeof configSchema>;
export interface DemoConfig extends RawConfig {
  latency: LatencyProfile;
}

const keys = Object.keys(configSchema.shape) as (keyof RawConfig)[];
const flagName = (key: string): string => key.toLowerCase().replaceAll('_', '-');

export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  argv: string[] = process.argv.slice(2),
): DemoConfig {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(keys.map((key) => [flagName(key), { type: 'string' as const }])),
    strict: true,
  });
  const merged: Record<string, unknown> = {};
  for (const key of keys) {
    const value = values[flagName(key)] ?? env[key];
    // Empty env values mean "unset", as in a Deployment that templates an optional value.
    if (value !== undefined && value !== '') merged[key] = value;
  }
  const raw = configSchema
    .refine((c) => !c.METRIC_SHAPES.includes('opentelemetry-otlp') || c.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, {
      message: 'the opentelemetry-otlp shape needs OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
      path: ['OTEL_EXPORTER_OTLP_METRICS_ENDPOINT'],
    })
    .parse(merged);
  return { ...raw, latency: parseLatencyProfile(raw.LATENCY_PROFILE) };
}
