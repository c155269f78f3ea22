// Which regular containers are sidecars: proxies and agents whose own project manages their
// readiness and shutdown (a mesh proxy drains on its own terms, and its ports answer nothing at
// the app's /readyz). The operator never writes a readiness probe or a preStop hook to them and
// never chooses one as the serving container. Native sidecars (init containers with
// restartPolicy Always) are not regular containers and are never touched anyway.
import type { V1Container } from '@kubernetes/client-node';
import { SIDECARS_ANNOTATION } from '../api/annotations.ts';
import type { SidecarsPolicy } from '../api/policy.ts';

export interface KnownSidecar {
  /** The project, as notes name it: "istio-proxy is a known sidecar (Istio)". */
  project: string;
  /** Container names its injector (or its documentation) uses. */
  names: readonly string[];
  /** Image repository patterns, as in spec.sidecars.images (see matchesImage). */
  images: readonly string[];
}

/**
 * Well-known sidecars, by container name and by image repository. A name alone is listed only
 * when it is specific to the project: App Mesh's proxy is called plain "envoy", so it is
 * recognized by its image only.
 */
export const KNOWN_SIDECARS: readonly KnownSidecar[] = [
  // Istio's injected Envoy proxy; docker.io/istio, gcr.io/istio-release and Google's managed
  // ASM (gcr.io/gke-release/asm) all publish it as proxyv2.
  {
    project: 'Istio',
    names: ['istio-proxy'],
    images: ['istio/proxyv2', 'istio-release/proxyv2', 'asm/proxyv2'],
  },
  // Linkerd 2's injected proxy: cr.l5d.io/linkerd/proxy (ghcr.io/linkerd/proxy and
  // gcr.io/linkerd-io/proxy in older releases).
  { project: 'Linkerd', names: ['linkerd-proxy'], images: ['linkerd/proxy', 'linkerd-io/proxy'] },
  // Consul service mesh: consul-dataplane since consul-k8s 1.0 (a -fips variant too);
  // envoy-sidecar and consul-sidecar were the injected containers before.
  {
    project: 'Consul',
    names: ['consul-dataplane', 'envoy-sidecar', 'consul-sidecar'],
    images: ['hashicorp/consul-dataplane*'],
  },
  // Cloud SQL Auth Proxy: v2 is gcr.io/cloud-sql-connectors/cloud-sql-proxy, v1 was
  // gcr.io/cloudsql-docker/gce-proxy; Google's examples name the container cloud-sql-proxy.
  {
    project: 'Cloud SQL Auth Proxy',
    names: ['cloud-sql-proxy', 'cloudsql-proxy'],
    images: ['cloud-sql-connectors/cloud-sql-proxy', 'cloudsql-docker/gce-proxy'],
  },
  // Vault Agent Injector's vault-agent (its vault-agent-init is an init container).
  {
    project: 'Vault Agent',
    names: ['vault-agent'],
    images: ['hashicorp/vault', 'hashicorp/vault-enterprise'],
  },
  // Envoy added by hand or by a mesh not listed here (also envoy-distroless, envoy-alpine).
  { project: 'Envoy', names: [], images: ['envoyproxy/envoy*'] },
  // AWS App Mesh's injected Envoy, from ECR (<account>.dkr.ecr.<region>.amazonaws.com or
  // public.ecr.aws/appmesh); its container is named "envoy", too common to go by.
  { project: 'AWS App Mesh', names: [], images: ['aws-appmesh-envoy'] },
  // Kuma (and Kong Mesh): the injected kuma-sidecar runs kuma-dp (kumahq/, kuma/ or kong/).
  { project: 'Kuma', names: ['kuma-sidecar'], images: ['kuma-dp'] },
  // Dapr's injected daprd (docker.io/daprio/daprd, ghcr.io/dapr/daprd).
  { project: 'Dapr', names: ['daprd'], images: ['daprio/daprd', 'dapr/daprd'] },
  // OpenTelemetry Collector: the OpenTelemetry Operator injects otc-container; by hand it is
  // often otel-collector. Images otel/opentelemetry-collector(-contrib, -k8s, ...) and
  // ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-*.
  {
    project: 'OpenTelemetry Collector',
    names: ['otc-container', 'otel-collector'],
    images: ['otel/opentelemetry-collector*', 'opentelemetry-collector-releases/opentelemetry-collector*'],
  },
  // Datadog Agent as a sidecar: the admission controller injects datadog-agent-injected (EKS
  // Fargate); gcr.io/datadoghq/agent, docker.io/datadog/agent, public.ecr.aws/datadog/agent.
  {
    project: 'Datadog Agent',
    names: ['datadog-agent', 'datadog-agent-injected'],
    images: ['datadog/agent', 'datadoghq/agent'],
  },
  // Fluent Bit as a log-shipping sidecar: docker.io/fluent/fluent-bit, cr.fluentbit.io/fluent/fluent-bit.
  { project: 'Fluent Bit', names: ['fluent-bit', 'fluentbit'], images: ['fluent/fluent-bit'] },
];

/**
 * The repository path of an image reference, without registry host, tag and digest:
 * `gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.0@sha256:…` gives
 * `cloud-sql-connectors/cloud-sql-proxy`. The first segment is a registry host when it contains
 * '.' or ':' or is localhost, as container runtimes read image references.
 */
export function imageRepository(image: string): string {
  const withoutDigest = image.trim().split('@')[0] ?? '';
  const segments = withoutDigest.split('/');
  const first = segments[0] ?? '';
  if (segments.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost'))
    segments.shift();
  const last = segments.length - 1;
  segments[last] = (segments[last] ?? '').split(':')[0] ?? '';
  return segments.join('/').toLowerCase();
}

/**
 * True when the repository matches the pattern: equal to it, or ending in it at a '/' (a
 * mirror's `mirror/istio/proxyv2` matches `istio/proxyv2`). A pattern ending in * matches any
 * continuation (`otel/opentelemetry-collector*` matches `otel/opentelemetry-collector-contrib`).
 */
export function matchesImage(repository: string, pattern: string): boolean {
  const prefix = pattern.endsWith('*') ? pattern.slice(0, -1) : undefined;
  const segments = repository.split('/');
  return segments.some((_, i) => {
    const tail = segments.slice(i).join('/');
    return prefix === undefined ? tail === pattern : tail.startsWith(prefix);
  });
}

/**
 * Why the container is a sidecar, as the end of "<name> is …", or undefined when it is not. The
 * annotation is asked first, then the built-in list (names before images), then the policy's
 * additions.
 */
export function sidecarReason(
  container: V1Container,
  annotated: readonly string[],
  policy: SidecarsPolicy,
): string | undefined {
  const { name, image } = container;
  if (annotated.includes(name)) return `marked as a sidecar by the ${SIDECARS_ANNOTATION} annotation`;
  const byName = KNOWN_SIDECARS.find((known) => known.names.includes(name));
  if (byName !== undefined) return `a known sidecar (${byName.project})`;
  const repository = image === undefined || image === '' ? undefined : imageRepository(image);
  const byImage =
    repository === undefined
      ? undefined
      : KNOWN_SIDECARS.find((known) => known.images.some((pattern) => matchesImage(repository, pattern)));
  if (byImage !== undefined) return `a known sidecar (${byImage.project}, image ${image})`;
  if (policy.names.includes(name)) return "a sidecar listed in the policy's sidecars.names";
  const pattern =
    repository === undefined ? undefined : policy.images.find((p) => matchesImage(repository, p));
  if (pattern !== undefined)
    return `a sidecar: its image ${image} matches ${pattern} in the policy's sidecars.images`;
  return undefined;
}

/** The sidecars among the containers, each with why (sidecarReason), in container order. */
export function findSidecars(
  containers: readonly V1Container[],
  annotated: readonly string[],
  policy: SidecarsPolicy,
): Map<string, string> {
  const sidecars = new Map<string, string>();
  for (const container of containers) {
    const reason = sidecarReason(container, annotated, policy);
    if (reason !== undefined) sidecars.set(container.name, reason);
  }
  return sidecars;
}
