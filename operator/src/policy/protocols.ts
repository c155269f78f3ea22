// What a container port speaks, as far as the Deployment and its Services say, and so which
// readiness probe can pass there. Pure: the Services come in as plain data. The rule and the
// table are in docs/policy.md ("Readiness probe": "Which probe").
//
// Evidence, strongest first: the port's `protocol` (UDP and SCTP: no probe can pass, the
// kubelet's probes all use TCP); the `appProtocol` of a port of a Service selecting the pod
// template and targeting this port (Istio gives appProtocol precedence over the name); that
// Service port's name; the container port's own name. Names follow Istio's explicit protocol
// selection convention `<protocol>[-<suffix>]`: `grpc-api` speaks gRPC, `httpapi` says nothing.
import type { V1Container, V1ContainerPort, V1Probe } from '@kubernetes/client-node';

/**
 * The class of a port, for the probe written there:
 * - `http`: cleartext HTTP/1.x, which the kubelet's httpGet probe speaks;
 * - `grpc`: gRPC (HTTP/2 with prior knowledge): the kubelet's grpc probe, if the app serves the
 *   standard health service, else tcpSocket;
 * - `tcp`: another protocol over TCP (a database, a broker, TLS): tcpSocket;
 * - `notTcp`: UDP or SCTP: no probe can pass;
 * - `unknown`: nothing says; HTTP/2 cleartext (`http2`, `h2c`) is here too, since an httpGet
 *   probe speaks HTTP/1.1, which a prior-knowledge HTTP/2 server refuses.
 */
export type ProtocolClass = 'http' | 'grpc' | 'tcp' | 'notTcp' | 'unknown';

export interface PortProtocol {
  class: ProtocolClass;
  /** Why, for status: `port 9090 is named grpc`, `Service shop/api port 80 has appProtocol redis`. */
  evidence?: string;
}

/** Protocol names (a port name's `<protocol>` part, or an appProtocol) and their class. */
export const PROTOCOL_TABLE: Readonly<Record<string, Exclude<ProtocolClass, 'unknown' | 'notTcp'>>> = {
  // Cleartext HTTP/1.x.
  http: 'http',
  web: 'http',
  // gRPC over cleartext HTTP/2.
  grpc: 'grpc',
  // gRPC-Web is served over HTTP by a proxy or a gRPC-Web server: neither answers the kubelet's
  // grpc probe, and a GET of the readiness path is not a gRPC-Web call.
  'grpc-web': 'tcp',
  // TLS: the operator's httpGet probe is plain HTTP (no scheme), which a TLS port refuses.
  https: 'tcp',
  tls: 'tcp',
  'kubernetes.io/wss': 'tcp',
  // Opaque TCP and well-known non-HTTP protocols.
  tcp: 'tcp',
  mongo: 'tcp',
  mongodb: 'tcp',
  mysql: 'tcp',
  redis: 'tcp',
  postgres: 'tcp',
  postgresql: 'tcp',
  kafka: 'tcp',
  amqp: 'tcp',
  amqps: 'tcp',
  mqtt: 'tcp',
  mqtts: 'tcp',
  zookeeper: 'tcp',
  cassandra: 'tcp',
  cql: 'tcp',
  memcached: 'tcp',
  memcache: 'tcp',
  nats: 'tcp',
  ldap: 'tcp',
  smtp: 'tcp',
  ssh: 'tcp',
};

/**
 * Names that are HTTP but not HTTP/1.1: an httpGet probe (HTTP/1.1) may or may not be answered
 * there. Listed so that the docs and tests name them; they classify as `unknown`.
 */
export const HTTP2_NAMES: readonly string[] = ['http2', 'h2c', 'kubernetes.io/h2c', 'kubernetes.io/ws'];

/**
 * The class a protocol name says, by the whole value (an appProtocol) or by its part before the
 * first '-' (a port name: `<protocol>[-<suffix>]`), case-insensitive; undefined when it says
 * nothing. Names with a '-' in the table (`grpc-web`) match whole or as their own prefix.
 */
export function protocolOfName(
  name: string | undefined,
  whole = false,
): Exclude<ProtocolClass, 'notTcp'> | undefined {
  if (name === undefined || name === '') return undefined;
  const value = name.toLowerCase();
  if (HTTP2_NAMES.includes(value)) return 'unknown';
  const exact = PROTOCOL_TABLE[value];
  if (exact !== undefined) return exact;
  if (whole) return undefined;
  // grpc-web-api: the longest table entry that is a '-'-separated prefix.
  for (const key of Object.keys(PROTOCOL_TABLE).sort((a, b) => b.length - a.length)) {
    if (key.includes('-') && value.startsWith(`${key}-`)) return PROTOCOL_TABLE[key];
  }
  const prefix = value.split('-')[0] ?? '';
  if (HTTP2_NAMES.includes(prefix)) return 'unknown';
  return PROTOCOL_TABLE[prefix];
}

/** A Service port, as the operator caches it: what the classification reads. */
export interface CachedServicePort {
  name?: string;
  port: number;
  /** A number, a container port name, or absent (then `port`). */
  targetPort?: number | string;
  appProtocol?: string;
  protocol?: string;
}

/** A Service, as the operator caches it (kube/informer.ts serviceCacheTransform). */
export interface CachedService {
  namespace: string;
  name: string;
  /** Absent or empty: the Service selects no pods (its endpoints are managed by hand). */
  selector?: Record<string, string>;
  ports: CachedServicePort[];
}

/** One port of one Service that reaches a container port: what it says about the protocol. */
export interface ServicePortFacts {
  /** namespace/name of the Service. */
  service: string;
  port: number;
  name?: string;
  appProtocol?: string;
}

/** True when the Service's selector is non-empty and every pair is among the labels. */
export function serviceSelects(service: CachedService, labels: Record<string, string> | undefined): boolean {
  const selector = Object.entries(service.selector ?? {});
  return selector.length > 0 && selector.every(([key, value]) => labels?.[key] === value);
}

/**
 * The ports of the Services in the list that select pods with `labels` (a pod template's) and
 * target the container port (by number, or by name when the targetPort is a name; an absent
 * targetPort is the Service port's own number). Services of other namespaces never count.
 */
export function servicePortsFor(
  services: Iterable<CachedService>,
  namespace: string,
  labels: Record<string, string> | undefined,
  containerPort: { containerPort: number; name?: string },
): ServicePortFacts[] {
  const found: ServicePortFacts[] = [];
  for (const service of services) {
    if (service.namespace !== namespace || !serviceSelects(service, labels)) continue;
    for (const port of service.ports) {
      const target = port.targetPort ?? port.port;
      const reaches =
        typeof target === 'number' ? target === containerPort.containerPort : target === containerPort.name;
      if (!reaches) continue;
      found.push({
        service: `${service.namespace}/${service.name}`,
        port: port.port,
        ...(port.name ? { name: port.name } : {}),
        ...(port.appProtocol ? { appProtocol: port.appProtocol } : {}),
      });
    }
  }
  return found.sort((a, b) => a.service.localeCompare(b.service) || a.port - b.port);
}

/** The container port the probe targets: by number or name; undefined when not declared. */
export function findContainerPort(
  container: V1Container,
  port: number | string,
): V1ContainerPort | undefined {
  return (container.ports ?? []).find((p) =>
    typeof port === 'number' ? p.containerPort === port : p.name === port,
  );
}

function describePort(port: number | string, declared: V1ContainerPort | undefined): string {
  if (declared === undefined) return `port ${port}`;
  return declared.name
    ? `port ${declared.name} (${declared.containerPort})`
    : `port ${declared.containerPort}`;
}

/** Of several answers at one level, the one that risks no blind HTTP probe: notTcp, tcp, grpc, unknown, http. */
const SAFETY_ORDER: readonly ProtocolClass[] = ['notTcp', 'tcp', 'grpc', 'unknown', 'http'];

function safest(candidates: PortProtocol[]): PortProtocol | undefined {
  for (const cls of SAFETY_ORDER) {
    const found = candidates.find((c) => c.class === cls);
    if (found) return found;
  }
  return undefined;
}

/**
 * What the evidence says the port speaks: its protocol (UDP, SCTP), then the appProtocols of the
 * Service ports reaching it, then those ports' names, then the container port's name. Within a
 * level, conflicting answers resolve to the one that risks no blind HTTP probe (SAFETY_ORDER).
 */
export function classifyPort(
  port: number | string,
  declared: V1ContainerPort | undefined,
  servicePorts: readonly ServicePortFacts[],
): PortProtocol {
  const label = describePort(port, declared);
  const transport = (declared?.protocol ?? 'TCP').toUpperCase();
  if (transport !== 'TCP') return { class: 'notTcp', evidence: `${label} is ${transport}` };
  const byAppProtocol = servicePorts.flatMap((s) => {
    const cls = protocolOfName(s.appProtocol, true);
    return cls === undefined
      ? []
      : [{ class: cls, evidence: `Service ${s.service} port ${s.port} has appProtocol ${s.appProtocol}` }];
  });
  const byServiceName = servicePorts.flatMap((s) => {
    const cls = protocolOfName(s.name);
    return cls === undefined
      ? []
      : [{ class: cls, evidence: `Service ${s.service} port ${s.port} is named ${s.name}` }];
  });
  const ownName = protocolOfName(declared?.name);
  const byOwnName =
    ownName === undefined ? [] : [{ class: ownName, evidence: `${label} is named ${declared?.name}` }];
  return safest(byAppProtocol) ?? safest(byServiceName) ?? safest(byOwnName) ?? { class: 'unknown' };
}

/** Same port, by number or name, resolved against the container's declared ports. */
function samePortOf(container: V1Container, a: number | string | undefined, b: number | string): boolean {
  if (a === undefined) return false;
  const number = (p: number | string) =>
    typeof p === 'number'
      ? p
      : /^[0-9]+$/.test(p)
        ? Number(p)
        : findContainerPort(container, p)?.containerPort;
  return String(a) === String(b) || (number(a) !== undefined && number(a) === number(b));
}

/**
 * The container's own liveness or startup probe that GETs over HTTP on the probed port (any
 * path): the port speaks HTTP, as the kubelet already relies on. Undefined when none does.
 */
export function httpProbeOnPort(container: V1Container, port: number | string): string | undefined {
  const probes: [string, V1Probe | undefined][] = [
    ['livenessProbe', container.livenessProbe],
    ['startupProbe', container.startupProbe],
  ];
  for (const [field, probe] of probes) {
    const get = probe?.httpGet;
    if (
      get !== undefined &&
      (get.scheme ?? 'HTTP').toUpperCase() === 'HTTP' &&
      samePortOf(container, get.port, port)
    )
      return `its ${field} GETs ${get.path ?? '/'} on that port`;
  }
  return undefined;
}

/** A port number for the kubelet's grpc probe, which takes no port name; undefined when unknown. */
export function portNumber(port: number | string, declared: V1ContainerPort | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return declared?.containerPort;
}
