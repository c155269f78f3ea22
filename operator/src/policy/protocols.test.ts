import { describe, expect, test } from 'vitest';
import {
  type CachedService,
  classifyPort,
  findContainerPort,
  httpProbeOnPort,
  PROTOCOL_TABLE,
  portNumber,
  protocolOfName,
  type ServicePortFacts,
  servicePortsFor,
  serviceSelects,
} from './protocols.ts';
import { container } from './test-fixtures.ts';

describe('protocolOfName', () => {
  test.each<[string, string | undefined]>([
    ['http', 'http'],
    ['http-metrics', 'http'],
    ['HTTP', 'http'],
    ['web', 'http'],
    ['grpc', 'grpc'],
    ['grpc-api', 'grpc'],
    ['grpc-web', 'tcp'],
    ['grpc-web-public', 'tcp'],
    ['https', 'tcp'],
    ['https-admin', 'tcp'],
    ['tls', 'tcp'],
    ['tcp-raw', 'tcp'],
    ['redis', 'tcp'],
    ['mongo', 'tcp'],
    ['mysql-primary', 'tcp'],
    ['postgres', 'tcp'],
    ['kafka', 'tcp'],
    ['amqp', 'tcp'],
    ['mqtt', 'tcp'],
    ['zookeeper', 'tcp'],
    ['cassandra', 'tcp'],
    ['memcached', 'tcp'],
    ['nats', 'tcp'],
    // HTTP/2 cleartext: an httpGet probe (HTTP/1.1) may be refused there.
    ['http2', 'unknown'],
    ['h2c', 'unknown'],
    ['http2-api', 'unknown'],
    // No `<protocol>[-<suffix>]`: says nothing.
    ['httpapi', undefined],
    ['api', undefined],
    ['metrics', undefined],
    ['', undefined],
  ])('port name %j -> %s', (name, want) => {
    expect(protocolOfName(name)).toBe(want);
  });

  test.each<[string, string | undefined]>([
    ['http', 'http'],
    ['grpc', 'grpc'],
    ['redis', 'tcp'],
    ['kubernetes.io/h2c', 'unknown'],
    ['kubernetes.io/ws', 'unknown'],
    ['kubernetes.io/wss', 'tcp'],
    // appProtocol is a whole value, not <protocol>-<suffix>.
    ['http-foo', undefined],
    ['example.com/custom', undefined],
  ])('appProtocol %j -> %s', (value, want) => {
    expect(protocolOfName(value, true)).toBe(want);
  });

  test('every table entry is lowercase and classifies as itself', () => {
    for (const [name, cls] of Object.entries(PROTOCOL_TABLE)) {
      expect(name).toBe(name.toLowerCase());
      expect(protocolOfName(name, true)).toBe(cls);
    }
  });
});

const svc = (
  name: string,
  selector: Record<string, string> | undefined,
  ports: CachedService['ports'],
  namespace = 'shop',
): CachedService => ({ namespace, name, ...(selector ? { selector } : {}), ports });

describe('servicePortsFor', () => {
  const labels = { app: 'web', tier: 'front' };
  const port = { containerPort: 9090, name: 'api' };

  test('a Service selecting the template reaches the port by number, by name, or by its own port', () => {
    const services = [
      svc('by-number', { app: 'web' }, [{ name: 'grpc', port: 80, targetPort: 9090 }]),
      svc('by-name', { app: 'web' }, [{ port: 81, targetPort: 'api', appProtocol: 'grpc' }]),
      svc('same-port', { app: 'web', tier: 'front' }, [{ port: 9090 }]),
      svc('other-port', { app: 'web' }, [{ port: 82, targetPort: 8080 }]),
    ];
    expect(servicePortsFor(services, 'shop', labels, port)).toEqual([
      { service: 'shop/by-name', port: 81, appProtocol: 'grpc' },
      { service: 'shop/by-number', port: 80, name: 'grpc' },
      { service: 'shop/same-port', port: 9090 },
    ]);
  });

  test('Services of another namespace, another selector, or no selector never count', () => {
    const services = [
      svc('elsewhere', { app: 'web' }, [{ port: 9090 }], 'lab'),
      svc('other-app', { app: 'db' }, [{ port: 9090 }]),
      svc('more-labels', { app: 'web', canary: 'true' }, [{ port: 9090 }]),
      svc('manual-endpoints', undefined, [{ port: 9090 }]),
      svc('empty-selector', {}, [{ port: 9090 }]),
    ];
    expect(servicePortsFor(services, 'shop', labels, port)).toEqual([]);
  });

  test('serviceSelects needs a non-empty selector whose pairs are all among the labels', () => {
    expect(serviceSelects(svc('a', { app: 'web' }, []), { app: 'web' })).toBe(true);
    expect(serviceSelects(svc('a', {}, []), { app: 'web' })).toBe(false);
    expect(serviceSelects(svc('a', { app: 'web' }, []), undefined)).toBe(false);
  });
});

describe('classifyPort', () => {
  const facts = (over: Partial<ServicePortFacts>): ServicePortFacts => ({
    service: 'shop/web',
    port: 80,
    ...over,
  });

  test('UDP and SCTP: notTcp, whatever the name says', () => {
    expect(classifyPort(53, { containerPort: 53, name: 'http', protocol: 'UDP' }, [])).toEqual({
      class: 'notTcp',
      evidence: 'port http (53) is UDP',
    });
    expect(classifyPort(9, { containerPort: 9, protocol: 'SCTP' }, []).class).toBe('notTcp');
  });

  test('the container port name, when nothing else says', () => {
    expect(classifyPort('grpc', { containerPort: 9090, name: 'grpc' }, [])).toEqual({
      class: 'grpc',
      evidence: 'port grpc (9090) is named grpc',
    });
    expect(classifyPort(6379, { containerPort: 6379, name: 'redis' }, []).class).toBe('tcp');
    expect(classifyPort(8080, { containerPort: 8080 }, [])).toEqual({ class: 'unknown' });
    expect(classifyPort(8080, undefined, [])).toEqual({ class: 'unknown' });
  });

  test("a Service's appProtocol beats its port name, which beats the container port's name", () => {
    const declared = { containerPort: 8080, name: 'http' };
    expect(classifyPort(8080, declared, [facts({ name: 'tcp-x' })])).toEqual({
      class: 'tcp',
      evidence: 'Service shop/web port 80 is named tcp-x',
    });
    expect(classifyPort(8080, declared, [facts({ name: 'tcp-x', appProtocol: 'http' })])).toEqual({
      class: 'http',
      evidence: 'Service shop/web port 80 has appProtocol http',
    });
    // An appProtocol that says nothing known leaves the decision to the names.
    expect(classifyPort(8080, declared, [facts({ appProtocol: 'example.com/x' })]).class).toBe('http');
  });

  test('Services that disagree: the answer that risks no blind HTTP probe', () => {
    const declared = { containerPort: 8080 };
    const two = [facts({ appProtocol: 'http' }), facts({ service: 'shop/other', appProtocol: 'redis' })];
    expect(classifyPort(8080, declared, two)).toEqual({
      class: 'tcp',
      evidence: 'Service shop/other port 80 has appProtocol redis',
    });
  });
});

describe('httpProbeOnPort', () => {
  test("the container's own HTTP liveness or startup probe on the port, by number or name, any path", () => {
    const c = container('web', [['api', 8080]], {
      livenessProbe: { httpGet: { path: '/healthz', port: 'api' } },
    });
    expect(httpProbeOnPort(c, 8080)).toBe('its livenessProbe GETs /healthz on that port');
    expect(httpProbeOnPort(c, 'api')).toBe('its livenessProbe GETs /healthz on that port');
    const startup = container('web', [8080], { startupProbe: { httpGet: { path: '/', port: 8080 } } });
    expect(httpProbeOnPort(startup, 8080)).toBe('its startupProbe GETs / on that port');
  });

  test('another port, HTTPS, or a probe of another kind: no evidence', () => {
    const other = container('web', [8080, 9090], { livenessProbe: { httpGet: { path: '/', port: 9090 } } });
    expect(httpProbeOnPort(other, 8080)).toBeUndefined();
    const https = container('web', [8080], {
      livenessProbe: { httpGet: { path: '/', port: 8080, scheme: 'HTTPS' } },
    });
    expect(httpProbeOnPort(https, 8080)).toBeUndefined();
    const tcp = container('web', [8080], { livenessProbe: { tcpSocket: { port: 8080 } } });
    expect(httpProbeOnPort(tcp, 8080)).toBeUndefined();
  });
});

describe('ports', () => {
  test('findContainerPort and portNumber resolve a name in the container', () => {
    const c = container('web', [['grpc', 9090], 8080]);
    expect(findContainerPort(c, 'grpc')).toEqual({ name: 'grpc', containerPort: 9090 });
    expect(findContainerPort(c, 8080)).toEqual({ containerPort: 8080 });
    expect(findContainerPort(c, 'nope')).toBeUndefined();
    expect(portNumber('grpc', findContainerPort(c, 'grpc'))).toBe(9090);
    expect(portNumber(7000, undefined)).toBe(7000);
    expect(portNumber('nope', undefined)).toBeUndefined();
  });
});
