import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { IMAGE_REPOSITORY_PATTERN } from '../api/policy.ts';
import { findSidecars, imageRepository, KNOWN_SIDECARS, matchesImage, sidecarReason } from './sidecars.ts';

const NO_POLICY = { names: [], images: [] };

describe('imageRepository', () => {
  test.each([
    ['istio/proxyv2', 'istio/proxyv2'],
    ['docker.io/istio/proxyv2:1.24.0', 'istio/proxyv2'],
    ['docker.io/istio/proxyv2:1.24.0-distroless', 'istio/proxyv2'],
    ['gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.0', 'cloud-sql-connectors/cloud-sql-proxy'],
    ['cr.l5d.io/linkerd/proxy@sha256:0123abcd', 'linkerd/proxy'],
    ['cr.l5d.io/linkerd/proxy:edge-24.1.1@sha256:0123abcd', 'linkerd/proxy'],
    ['localhost:5000/acme/agent:1', 'acme/agent'],
    ['localhost/acme/agent', 'acme/agent'],
    ['registry:5000/acme/agent', 'acme/agent'],
    ['840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.27.2.0-prod', 'aws-appmesh-envoy'],
    ['nginx', 'nginx'],
    ['nginx:1.27', 'nginx'],
    ['library/nginx', 'library/nginx'],
    // The first segment without '.' or ':' is a path, not a host.
    ['acme/team/agent:1', 'acme/team/agent'],
  ])('%s -> %s', (image, repository) => {
    expect(imageRepository(image)).toBe(repository);
  });
});

describe('matchesImage', () => {
  test.each([
    ['istio/proxyv2', 'istio/proxyv2', true],
    ['mirror/istio/proxyv2', 'istio/proxyv2', true],
    ['myistio/proxyv2', 'istio/proxyv2', false],
    ['istio/proxyv2-rhel8', 'istio/proxyv2', false],
    ['istio/proxyv2', 'proxyv2', true],
    ['otel/opentelemetry-collector-contrib', 'otel/opentelemetry-collector*', true],
    ['otel/opentelemetry-collector', 'otel/opentelemetry-collector*', true],
    ['mirror/otel/opentelemetry-collector-k8s', 'otel/opentelemetry-collector*', true],
    ['otel/other', 'otel/opentelemetry-collector*', false],
    ['acme/agent', 'acme/*', true],
    ['acme', 'acme/*', false],
  ])('%s against %s: %s', (repository, pattern, want) => {
    expect(matchesImage(repository, pattern)).toBe(want);
  });
});

describe('the built-in list', () => {
  test('every image pattern is one spec.sidecars.images accepts, every name a container name', () => {
    for (const known of KNOWN_SIDECARS) {
      for (const image of known.images) expect(image, known.project).toMatch(IMAGE_REPOSITORY_PATTERN);
      for (const name of known.names) expect(name, known.project).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      expect(known.names.length + known.images.length, known.project).toBeGreaterThan(0);
    }
  });

  test.each([
    ['istio-proxy', 'docker.io/istio/proxyv2:1.24.0', 'Istio'],
    ['istio-proxy', 'gcr.io/gke-release/asm/proxyv2:1.20.8-asm.3', 'Istio'],
    ['linkerd-proxy', 'cr.l5d.io/linkerd/proxy:stable-2.14.10', 'Linkerd'],
    ['consul-dataplane', 'hashicorp/consul-dataplane:1.6.0', 'Consul'],
    ['envoy-sidecar', 'envoyproxy/envoy:v1.22.0', 'Consul'],
    ['cloud-sql-proxy', 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.0', 'Cloud SQL Auth Proxy'],
    ['cloudsql-proxy', 'gcr.io/cloudsql-docker/gce-proxy:1.33.2', 'Cloud SQL Auth Proxy'],
    ['vault-agent', 'hashicorp/vault:1.18.0', 'Vault Agent'],
    ['kuma-sidecar', 'kumahq/kuma-dp:2.9.0', 'Kuma'],
    ['daprd', 'ghcr.io/dapr/daprd:1.14.4', 'Dapr'],
    ['otc-container', 'otel/opentelemetry-collector-k8s:0.115.0', 'OpenTelemetry Collector'],
    ['otel-collector', 'otel/opentelemetry-collector-contrib:0.115.0', 'OpenTelemetry Collector'],
    ['datadog-agent-injected', 'gcr.io/datadoghq/agent:7.64.0', 'Datadog Agent'],
    ['fluent-bit', 'cr.fluentbit.io/fluent/fluent-bit:3.2', 'Fluent Bit'],
  ])('%s (%s) is a known sidecar (%s), by its name', (name, image, project) => {
    expect(sidecarReason({ name, image }, [], NO_POLICY)).toBe(`a known sidecar (${project})`);
  });

  test.each([
    ['mesh', 'docker.io/istio/proxyv2:1.24.0', 'Istio'],
    ['proxy', 'cr.l5d.io/linkerd/proxy:stable-2.14.10', 'Linkerd'],
    ['dataplane', 'hashicorp/consul-dataplane-fips:1.6.0', 'Consul'],
    ['db-proxy', 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.0', 'Cloud SQL Auth Proxy'],
    ['sql', 'gcr.io/cloudsql-docker/gce-proxy:1.33.2', 'Cloud SQL Auth Proxy'],
    ['secrets', 'hashicorp/vault:1.18.0', 'Vault Agent'],
    ['envoy', 'envoyproxy/envoy-distroless:v1.32.0', 'Envoy'],
    [
      'envoy',
      '840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.27.2.0-prod',
      'AWS App Mesh',
    ],
    ['envoy', 'public.ecr.aws/appmesh/aws-appmesh-envoy:v1.27.2.0-prod', 'AWS App Mesh'],
    ['dp', 'kong/kuma-dp:2.9.0', 'Kuma'],
    ['dapr', 'daprio/daprd:1.14.4', 'Dapr'],
    [
      'collector',
      'ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-k8s:0.115.0',
      'OpenTelemetry Collector',
    ],
    ['agent', 'public.ecr.aws/datadog/agent:7', 'Datadog Agent'],
    ['logs', 'fluent/fluent-bit:3.2', 'Fluent Bit'],
  ])('a container %s running %s is a known sidecar (%s), by its image', (name, image, project) => {
    expect(sidecarReason({ name, image }, [], NO_POLICY)).toBe(
      `a known sidecar (${project}, image ${image})`,
    );
  });

  test.each([
    ['web', 'acme/web:1.0'],
    ['envoy', 'acme/envoy:1.0'],
    ['proxy', 'nginx:1.27'],
    ['app', 'acme/istio-proxyv2-app:1'],
    ['vault-ui', 'hashicorp/vault-k8s:1.4.0'],
    ['no-image', undefined],
  ])('%s (%s) is not a sidecar', (name, image) => {
    expect(sidecarReason({ name, ...(image ? { image } : {}) }, [], NO_POLICY)).toBe(undefined);
  });
});

describe('sidecarReason: annotation, built-in list, policy', () => {
  test('the annotation marks a container by name, and is named first', () => {
    expect(sidecarReason({ name: 'istio-proxy', image: 'istio/proxyv2' }, ['istio-proxy'], NO_POLICY)).toBe(
      'marked as a sidecar by the gracefulshutdown.dev/sidecars annotation',
    );
  });

  test("the policy's names add to the built-in list", () => {
    const policy = { names: ['log-shipper'], images: [] };
    expect(sidecarReason({ name: 'log-shipper', image: 'acme/shipper:2' }, [], policy)).toBe(
      "a sidecar listed in the policy's sidecars.names",
    );
    expect(sidecarReason({ name: 'web', image: 'acme/web:2' }, [], policy)).toBe(undefined);
  });

  test("the policy's images add to the built-in list, ignoring host, tag and digest", () => {
    const policy = { names: [], images: ['acme/agent*'] };
    expect(
      sidecarReason({ name: 'a', image: 'registry.acme.io/acme/agent-v2:3@sha256:ab' }, [], policy),
    ).toBe(
      "a sidecar: its image registry.acme.io/acme/agent-v2:3@sha256:ab matches acme/agent* in the policy's sidecars.images",
    );
    expect(sidecarReason({ name: 'b', image: 'registry.acme.io/acme/web:3' }, [], policy)).toBe(undefined);
  });
});

describe('findSidecars', () => {
  test('maps each sidecar to why, leaving the others out', () => {
    const sidecars = findSidecars(
      [
        { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.24.0' },
        { name: 'web', image: 'acme/web:1' },
        { name: 'shipper', image: 'acme/shipper:1' },
      ],
      ['shipper'],
      NO_POLICY,
    );
    expect([...sidecars]).toEqual([
      ['istio-proxy', 'a known sidecar (Istio)'],
      ['shipper', 'marked as a sidecar by the gracefulshutdown.dev/sidecars annotation'],
    ]);
  });
});

test('a known name wins over another project’s image', () => {
  expect(sidecarReason({ name: 'daprd', image: 'envoyproxy/envoy:v1.32.0' }, [], NO_POLICY)).toBe(
    'a known sidecar (Dapr)',
  );
});

test("docs/policy.md's table lists the built-in sidecars as they are", () => {
  const doc = readFileSync(new URL('../../../docs/policy.md', import.meta.url), 'utf8');
  const cells = (list: readonly string[]) =>
    list.length === 0 ? '—' : list.map((item) => `\`${item}\``).join(', ');
  for (const known of KNOWN_SIDECARS)
    expect(doc).toContain(`| ${known.project} | ${cells(known.names)} | ${cells(known.images)} |`);
});
