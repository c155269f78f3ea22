import type { V1Container, V1Probe } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import type { GracefulShutdownPolicySpecInput, ShutdownSettings } from '../api/policy.ts';
import {
  computeDrainSeconds,
  computeGraceSeconds,
  desiredSettings,
  olderThanSupported,
  readAnnotationOverrides,
  supportsNativeSleep,
  supportsNativeSleepZero,
  withHysteresis,
} from './desired.ts';
import {
  container,
  type DeploymentOptions,
  deployment,
  NEW_CLUSTER,
  NO_SOURCE,
  OLD_CLUSTER,
  observed,
  policy,
} from './test-fixtures.ts';
import type {
  ClusterFacts,
  LatencyObservation,
  ProbeVerdict,
  ProbeVerdictLookup,
  ServicePortLookup,
  ShutdownPlan,
} from './types.ts';

describe('supportsNativeSleep', () => {
  test.each([
    [{ major: '1', minor: '28' }, false],
    [{ major: '1', minor: '29' }, false],
    [{ major: '1', minor: '29+' }, false],
    [{ major: '1', minor: '30' }, true],
    [{ major: '1', minor: '30+' }, true],
    [{ major: '1', minor: '34' }, true],
    [{ major: '2', minor: '0' }, true],
    [{ major: '', minor: '', gitVersion: 'v1.31.2-eks-7f9249a' }, true],
    [{ major: '', minor: '', gitVersion: 'v1.29.0' }, false],
    [{ major: 'x', minor: 'y' }, false],
  ])('%j -> %s', (version, want) => {
    expect(supportsNativeSleep(version)).toBe(want);
  });

  test.each([
    [{ major: '1', minor: '32' }, false],
    [{ major: '1', minor: '33+' }, true],
  ])('zero-second sleep %j -> %s', (version, want) => {
    expect(supportsNativeSleepZero(version)).toBe(want);
  });

  test.each([
    [{ major: '1', minor: '29+' }, true],
    [{ major: '', minor: '', gitVersion: 'v1.29.15' }, true],
    [{ major: '1', minor: '30' }, false],
    [{ major: '1', minor: '37' }, false],
    [{ major: 'x', minor: 'y' }, false],
  ])('older than the oldest supported %j -> %s', (version, want) => {
    expect(olderThanSupported(version)).toBe(want);
  });
});

describe('readAnnotationOverrides', () => {
  const read = (annotations: Record<string, string>) => readAnnotationOverrides(deployment({ annotations }));

  test('no annotations: nothing overridden', () => {
    expect(readAnnotationOverrides(deployment())).toEqual({ ok: true, sidecars: [] });
  });

  test.each([
    [{ 'gracefulshutdown.dev/readiness-path': '/health/ready' }, { path: '/health/ready' }],
    [{ 'gracefulshutdown.dev/readiness-path': '/' }, { path: '/' }],
    [{ 'gracefulshutdown.dev/readiness-port': '8081' }, { port: 8081 }],
    [{ 'gracefulshutdown.dev/readiness-port': '65535' }, { port: 65535 }],
    [{ 'gracefulshutdown.dev/readiness-port': 'admin' }, { port: 'admin' }],
    [{ 'gracefulshutdown.dev/sidecars': 'envoy' }, { sidecars: ['envoy'] }],
    [
      { 'gracefulshutdown.dev/sidecars': ' envoy , log-shipper,envoy,' },
      { sidecars: ['envoy', 'log-shipper'] },
    ],
  ])('valid %j', (annotations, want) => {
    expect(read(annotations)).toEqual({ ok: true, sidecars: [], ...want });
  });

  test.each([
    ['gracefulshutdown.dev/readiness-path', 'readyz'],
    ['gracefulshutdown.dev/readiness-path', '/ready z'],
    ['gracefulshutdown.dev/readiness-path', ''],
    ['gracefulshutdown.dev/readiness-port', '0'],
    ['gracefulshutdown.dev/readiness-port', '65536'],
    ['gracefulshutdown.dev/readiness-port', 'HTTP'],
    ['gracefulshutdown.dev/readiness-port', 'a--b'],
    ['gracefulshutdown.dev/readiness-port', 'a-very-long-port-name'],
    ['gracefulshutdown.dev/readiness-port', '-8080'],
    ['gracefulshutdown.dev/sidecars', 'Envoy'],
    ['gracefulshutdown.dev/sidecars', 'envoy,log_shipper'],
    ['gracefulshutdown.dev/sidecars', `a${'b'.repeat(63)}`],
  ])('invalid %s=%j is reported against that annotation', (annotation, value) => {
    const result = read({ [annotation]: value });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors.map((e) => e.annotation)).toEqual([annotation]);
  });

  test('every invalid annotation is reported at once', () => {
    const result = read({
      'gracefulshutdown.dev/readiness-path': 'x',
      'gracefulshutdown.dev/readiness-port': '0',
      'gracefulshutdown.dev/sidecars': 'A,B',
    });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors).toHaveLength(4);
  });
});

describe('computeDrainSeconds', () => {
  const spec = policy('p', {
    observedLatency: { source: 'Prometheus', minSamples: 100, safetyFactor: 1.5 },
  }).spec;
  const cases: {
    title: string;
    observation: LatencyObservation;
    seconds: number;
    reason: string;
    mentions: string;
  }[] = [
    {
      title: 'source None',
      observation: NO_SOURCE,
      seconds: 0,
      reason: 'LatencySourceNone',
      mentions: 'None',
    },
    {
      title: 'unknown, with the source reason',
      observation: { known: false, source: 'Prometheus', reason: 'query returned no series' },
      seconds: 0,
      reason: 'LatencyUnknown',
      mentions: 'query returned no series',
    },
    {
      title: 'unknown because too few samples',
      observation: { known: false, source: 'Scrape', reason: 'few', samples: 12 },
      seconds: 0,
      reason: 'TooFewSamples',
      mentions: '12 requests',
    },
    {
      title: 'known but fewer than minSamples',
      observation: observed(3, 99),
      seconds: 0,
      reason: 'TooFewSamples',
      mentions: 'minSamples 100',
    },
    {
      title: 'exactly minSamples is trusted, rounded up',
      observation: observed(2.2, 100),
      seconds: 4,
      reason: 'ObservedLatency',
      mentions: 'p99 2.2s',
    },
    {
      title: 'whole product stays whole',
      observation: observed(2),
      seconds: 3,
      reason: 'ObservedLatency',
      mentions: '3 s',
    },
    {
      title: 'negative latency',
      observation: observed(-1),
      seconds: 0,
      reason: 'LatencyUnknown',
      mentions: '-1',
    },
    {
      title: 'NaN latency',
      observation: observed(Number.NaN),
      seconds: 0,
      reason: 'LatencyUnknown',
      mentions: 'NaN',
    },
    {
      title: 'capped at one hour',
      observation: observed(10_000),
      seconds: 3600,
      reason: 'ObservedLatency',
      mentions: '',
    },
  ];
  test.each(cases)('$title -> $seconds s, $reason', ({ observation, seconds, reason, mentions }) => {
    const drain = computeDrainSeconds(spec, observation);
    expect(drain).toMatchObject({ seconds, reason });
    expect(drain.message).toContain(mentions);
  });

  test('float noise does not round up a whole number (12.5 x 4.4 = 55.00000000000001 -> 55, not 56)', () => {
    const spec44 = policy('p', { observedLatency: { source: 'Prometheus', safetyFactor: 4.4 } }).spec;
    expect(computeDrainSeconds(spec44, observed(12.5)).seconds).toBe(55);
  });

  test('source None in the policy wins over what the observation claims', () => {
    const none = policy('p').spec;
    expect(computeDrainSeconds(none, { known: false, source: 'Prometheus', reason: 'x' }).reason).toBe(
      'LatencySourceNone',
    );
    expect(computeDrainSeconds(none, observed(20))).toMatchObject({
      seconds: 0,
      reason: 'LatencySourceNone',
    });
  });
});

describe('computeGraceSeconds', () => {
  test.each<[string, GracefulShutdownPolicySpecInput, number, number]>([
    ['defaults, no drain: 5 + 0 + 5 clamped up to 30', {}, 0, 30],
    ['within bounds: 5 + 30 + 5', {}, 30, 40],
    ['clamped down to maxSeconds', {}, 1000, 300],
    ['minSeconds 0 leaves the raw sum', { terminationGracePeriod: { minSeconds: 0 } }, 0, 10],
    [
      'overhead and preStop count',
      { preStop: { seconds: 20 }, terminationGracePeriod: { overheadSeconds: 10 } },
      15,
      45,
    ],
    [
      'Fixed ignores the drain',
      { terminationGracePeriod: { strategy: 'Fixed', fixedSeconds: 60 } },
      1000,
      60,
    ],
  ])('%s', (_title, spec, drain, want) => {
    expect(computeGraceSeconds(policy('p', spec).spec, drain)).toBe(want);
  });
});

describe('withHysteresis', () => {
  test.each([
    ['within 10 % above: keep', 47, 45, undefined, undefined, 47],
    ['within 10 % below: keep', 41, 45, undefined, undefined, 41],
    ['exactly 10 % away: keep', 44, 40, undefined, undefined, 44],
    ['beyond 10 %: follow', 45, 40, undefined, undefined, 40],
    ['far below: follow', 30, 60, undefined, undefined, 60],
    ['wider band', 47, 40, 0.2, undefined, 47],
    ['below the floor: follow even within the band', 47, 45, 0.1, 48, 45],
    ['at the floor: keep', 48, 45, 0.1, 48, 48],
    ['recommendation 0: only 0 is kept', 1, 0, undefined, undefined, 0],
  ])('%s: current %d, recommended %d', (_title, current, recommended, band, floor, want) => {
    expect(withHysteresis(current, recommended, band, floor)).toBe(want);
  });
});

// --- desiredSettings ---------------------------------------------------------------------------

function plan(
  spec: GracefulShutdownPolicySpecInput,
  options: DeploymentOptions = {},
  extra: {
    observation?: LatencyObservation;
    facts?: ClusterFacts;
    previouslyApplied?: ShutdownSettings;
    canLower?: boolean;
    probeVerdict?: ProbeVerdictLookup;
    killedAt?: number;
  } = {},
): ShutdownPlan {
  const result = desiredSettings({
    policy: policy('p', spec),
    deployment: deployment(options),
    observation: extra.observation ?? NO_SOURCE,
    facts: extra.facts ?? NEW_CLUSTER,
    ...(extra.previouslyApplied ? { previouslyApplied: extra.previouslyApplied } : {}),
    ...(extra.canLower === undefined ? {} : { canLower: extra.canLower }),
    ...(extra.probeVerdict ? { probeVerdict: extra.probeVerdict } : {}),
    ...(extra.killedAt === undefined ? {} : { shutdownKilled: { graceSeconds: extra.killedAt } }),
  });
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.plan;
}

/** Which container got a probe (and on which port) and which got a preStop. */
function targets(p: ShutdownPlan): { probe: string[]; preStop: string[] } {
  return {
    probe: p.containers
      .filter((c) => c.readinessProbe)
      .map((c) => `${c.name}:${c.readinessProbe?.httpGet?.port}`),
    preStop: p.containers.filter((c) => c.preStop).map((c) => c.name),
  };
}

const userProbe = { exec: { command: ['cat', '/tmp/ready'] }, periodSeconds: 2 };
const userHook = { httpGet: { path: '/drain', port: 9000 } };

describe('desiredSettings: which container gets what', () => {
  const web = container('web', [['http', 8080]]);
  const envoy = container('envoy', [
    ['proxy', 15001],
    ['admin', 15000],
  ]);
  const worker = container('worker');
  const cases: {
    title: string;
    spec?: GracefulShutdownPolicySpecInput;
    containers: V1Container[];
    initContainers?: V1Container[];
    annotations?: Record<string, string>;
    probe: string[];
    preStop: string[];
    note?: string;
  }[] = [
    { title: 'one container: its first port', containers: [web], probe: ['web:8080'], preStop: ['web'] },
    {
      title: 'no port configured: the first container declaring a port',
      containers: [worker, web, envoy],
      probe: ['web:8080'],
      preStop: ['worker', 'web', 'envoy'],
    },
    {
      title: 'port by name',
      spec: { readinessProbe: { port: 'admin' } },
      containers: [web, envoy],
      probe: ['envoy:admin'],
      preStop: ['web', 'envoy'],
    },
    {
      title: 'port by number',
      spec: { readinessProbe: { port: 15001 } },
      containers: [web, envoy],
      probe: ['envoy:15001'],
      preStop: ['web', 'envoy'],
    },
    {
      title: 'the annotation overrides the policy port',
      spec: { readinessProbe: { port: 15001 } },
      containers: [web, envoy],
      annotations: { 'gracefulshutdown.dev/readiness-port': 'http' },
      probe: ['web:http'],
      preStop: ['web', 'envoy'],
    },
    {
      title: 'a marked sidecar gets neither probe nor preStop, even when it declares the first port',
      containers: [envoy, web],
      annotations: { 'gracefulshutdown.dev/sidecars': 'envoy' },
      probe: ['web:8080'],
      preStop: ['web'],
    },
    {
      title: 'a port declared only by a marked sidecar: no probe',
      spec: { readinessProbe: { port: 'proxy' } },
      containers: [web, envoy],
      annotations: { 'gracefulshutdown.dev/sidecars': 'envoy' },
      probe: [],
      preStop: ['web'],
      note: 'ServingPortNotFound',
    },
    {
      title: 'a numeric port nobody declares, one container: that container',
      spec: { readinessProbe: { port: 9090 } },
      containers: [worker],
      probe: ['worker:9090'],
      preStop: ['worker'],
    },
    {
      title: 'a numeric port nobody declares, two containers: no guess',
      spec: { readinessProbe: { port: 9090 } },
      containers: [worker, web],
      probe: [],
      preStop: ['worker', 'web'],
      note: 'ServingPortNotFound',
    },
    {
      title: 'a named port nobody declares: no probe',
      spec: { readinessProbe: { port: 'grpc' } },
      containers: [web],
      probe: [],
      preStop: ['web'],
      note: 'ServingPortNotFound',
    },
    {
      title: 'no container declares a port: no probe',
      containers: [worker],
      probe: [],
      preStop: ['worker'],
      note: 'NoServingPort',
    },
    {
      title: 'init containers, native sidecars included, are never touched',
      containers: [web],
      initContainers: [
        container('migrate'),
        container('mesh', [['mesh', 4140]], { restartPolicy: 'Always' }),
      ],
      probe: ['web:8080'],
      preStop: ['web'],
    },
  ];
  test.each(cases)('$title', ({ spec, containers, initContainers, annotations, probe, preStop, note }) => {
    const p = plan(spec ?? {}, {
      containers,
      ...(initContainers ? { initContainers } : {}),
      ...(annotations ? { annotations } : {}),
    });
    expect(targets(p)).toEqual({ probe, preStop });
    expect(p.notes.map((n) => n.reason)).toEqual(note ? [note] : []);
    expect(p.containers.map((c) => c.name)).not.toContain('migrate');
    expect(p.containers.map((c) => c.name)).not.toContain('mesh');
    expect(p.recommended.readinessProbe === undefined).toBe(probe.length === 0);
  });

  test('the probe is an httpGet with the policy timing and the annotation path', () => {
    const p = plan(
      { readinessProbe: { path: '/readyz', periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 5 } },
      { annotations: { 'gracefulshutdown.dev/readiness-path': '/health/ready' } },
    );
    expect(p.containers[0]?.readinessProbe).toEqual({
      httpGet: { path: '/health/ready', port: 8080 },
      periodSeconds: 10,
      timeoutSeconds: 2,
      failureThreshold: 5,
    });
    expect(p.recommended.readinessProbe).toEqual({ path: '/health/ready', port: 8080 });
    expect(p.servingContainer).toBe('web');
  });

  test('invalid annotations: no plan, the errors', () => {
    const result = desiredSettings({
      policy: policy('p'),
      deployment: deployment({ annotations: { 'gracefulshutdown.dev/readiness-port': '0' } }),
      observation: NO_SOURCE,
      facts: NEW_CLUSTER,
    });
    expect(result).toMatchObject({
      ok: false,
      errors: [{ annotation: 'gracefulshutdown.dev/readiness-port' }],
    });
  });
});

describe('desiredSettings: inject IfMissing, Override, Never', () => {
  const withUserSettings = {
    containers: [container('web', [8080], { readinessProbe: userProbe, lifecycle: { preStop: userHook } })],
  };

  test('IfMissing keeps a user probe and preStop', () => {
    const p = plan({}, withUserSettings);
    expect(p.containers).toEqual([]);
    // The recommendation is still reported.
    expect(p.recommended.preStop).toEqual({ action: 'Sleep', seconds: 5 });
  });

  test('IfMissing writes where missing, container by container', () => {
    const p = plan(
      {},
      {
        containers: [
          container('web', [8080], { readinessProbe: userProbe }),
          container('worker', [], { lifecycle: { postStart: { exec: { command: ['true'] } } } }),
        ],
      },
    );
    expect(targets(p)).toEqual({ probe: [], preStop: ['web', 'worker'] });
  });

  test('Override replaces both', () => {
    const p = plan(
      { readinessProbe: { inject: 'Override' }, preStop: { inject: 'Override' } },
      withUserSettings,
    );
    expect(p.containers).toEqual([
      {
        name: 'web',
        readinessProbe: {
          httpGet: { path: '/readyz', port: 8080 },
          periodSeconds: 5,
          timeoutSeconds: 1,
          failureThreshold: 3,
        },
        preStop: { sleep: { seconds: 5 } },
      },
    ]);
  });

  test('Never writes neither, even where missing, and recommends neither', () => {
    const p = plan({ readinessProbe: { inject: 'Never' }, preStop: { inject: 'Never' } });
    expect(p.containers).toEqual([]);
    expect(p.recommended.readinessProbe).toBeUndefined();
    expect(p.recommended.preStop).toBeUndefined();
    expect(p.servingContainer).toBeUndefined();
  });

  test('probe Never: the serving container is still chosen (its preStop is mirrored), silently', () => {
    const p = plan(
      { readinessProbe: { inject: 'Never', port: 'http' } },
      { containers: [container('proxy', [15001]), container('web', [['http', 8080]])] },
    );
    expect(p.servingContainer).toBe('web');
    expect(targets(p)).toEqual({ probe: [], preStop: ['proxy', 'web'] });
    // Only the probe's choice reports a missing port.
    const none = plan({ readinessProbe: { inject: 'Never' } }, { containers: [container('worker')] });
    expect(none.servingContainer).toBeUndefined();
    expect(none.notes).toEqual([]);
  });

  test('IfMissing keeps writing a value that is already the one it wants (so server-side apply keeps it)', () => {
    const current = plan({});
    const again = plan(
      {},
      {
        containers: [
          container('web', [['http', 8080]], {
            readinessProbe: { ...current.containers[0]?.readinessProbe, successThreshold: 1 },
            lifecycle: { preStop: { sleep: { seconds: 5 } } },
          }),
        ],
      },
    );
    expect(again.containers).toEqual(current.containers);
  });

  test("IfMissing follows the policy on the operator's own earlier values (previouslyApplied)", () => {
    const earlier = {
      readinessProbe: { httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 5 },
      lifecycle: { preStop: { exec: { command: ['sleep', '5'] } } },
    };
    const p = plan(
      { readinessProbe: { periodSeconds: 10 }, preStop: { seconds: 8 } },
      { containers: [container('web', [8080], earlier)] },
      {
        previouslyApplied: {
          readinessProbe: { path: '/readyz', port: 8080 },
          preStop: { action: 'Exec', seconds: 5 },
        },
      },
    );
    expect(p.containers[0]?.readinessProbe?.periodSeconds).toBe(10);
    expect(p.containers[0]?.preStop).toEqual({ sleep: { seconds: 8 } });
  });

  test('a user value that merely resembles an earlier record of another shape is kept', () => {
    const p = plan({}, withUserSettings, {
      previouslyApplied: {
        readinessProbe: { path: '/readyz', port: 8080 },
        preStop: { action: 'Sleep', seconds: 5 },
      },
    });
    expect(p.containers).toEqual([]);
  });
});

describe('desiredSettings: known sidecars are never touched', () => {
  const istio = container('istio-proxy', [['http-envoy-prom', 15090]], {
    image: 'docker.io/istio/proxyv2:1.24.0',
  });
  const app = container('app', [['http', 8080]]);

  test('istio-proxy first in the pod gets nothing; the app gets the probe on its port', () => {
    const p = plan({}, { containers: [istio, app] });
    expect(targets(p)).toEqual({ probe: ['app:8080'], preStop: ['app'] });
    expect(p.servingContainer).toBe('app');
    expect(p.notes).toEqual([]);
  });

  test('a sidecar recognized by its image under another name gets nothing', () => {
    const mesh = container('mesh', [['admin', 9901]], {
      image: 'cr.l5d.io/linkerd/proxy:stable-2.14.10@sha256:0123abcd',
    });
    const p = plan({}, { containers: [mesh, app] });
    expect(targets(p)).toEqual({ probe: ['app:8080'], preStop: ['app'] });
  });

  test("a sidecar named in the policy's sidecars.names gets nothing", () => {
    const shipper = container('log-shipper', [['metrics', 2020]]);
    const p = plan({ sidecars: { names: ['log-shipper'] } }, { containers: [shipper, app] });
    expect(targets(p)).toEqual({ probe: ['app:8080'], preStop: ['app'] });
    // Without the policy's name it is an ordinary container, and the first with a port.
    expect(targets(plan({}, { containers: [shipper, app] }))).toEqual({
      probe: ['log-shipper:2020'],
      preStop: ['log-shipper', 'app'],
    });
  });

  test("a sidecar matched by the policy's sidecars.images gets nothing", () => {
    const agent = container('agent', [['agent', 7000]], { image: 'registry.acme.io/acme/agent:3' });
    const p = plan({ sidecars: { images: ['acme/agent'] } }, { containers: [agent, app] });
    expect(targets(p)).toEqual({ probe: ['app:8080'], preStop: ['app'] });
  });

  test('a configured port only a known sidecar declares: no probe, and the note says which rule', () => {
    const p = plan({ readinessProbe: { port: 15090 } }, { containers: [istio, app] });
    expect(targets(p)).toEqual({ probe: [], preStop: ['app'] });
    expect(p.notes).toEqual([
      {
        reason: 'ServingPortNotFound',
        message:
          'port 15090 is declared only by a sidecar (istio-proxy is a known sidecar (Istio)): no readiness probe is written',
      },
    ]);
  });

  test('only sidecars declare ports: the note names them', () => {
    const p = plan({}, { containers: [istio, container('worker')] });
    expect(targets(p)).toEqual({ probe: [], preStop: ['worker'] });
    expect(p.notes.map((n) => n.reason)).toEqual(['NoServingPort']);
    expect(p.notes[0]?.message).toMatch(
      /^only sidecars declare ports \(istio-proxy is a known sidecar \(Istio\)\)/,
    );
  });

  test('a numeric port nobody declares goes to the one container that is not a sidecar', () => {
    const p = plan({ readinessProbe: { port: 9090 } }, { containers: [istio, container('worker')] });
    expect(targets(p)).toEqual({ probe: ['worker:9090'], preStop: ['worker'] });
  });

  test('the annotation still marks sidecars, and its note says so', () => {
    const p = plan(
      { readinessProbe: { port: 8080 } },
      { containers: [app, istio], annotations: { 'gracefulshutdown.dev/sidecars': 'app' } },
    );
    expect(p.notes[0]?.message).toBe(
      'port 8080 is declared only by a sidecar (app is marked as a sidecar by the gracefulshutdown.dev/sidecars annotation): no readiness probe is written',
    );
  });
});

describe('desiredSettings: verified probes', () => {
  const unverified: ProbeVerdict = {
    state: 'Unverified',
    tried: 'GET http://10.88.0.5:8080/readyz on pod web-abc',
    message: 'GET http://10.88.0.5:8080/readyz on pod web-abc answered 404',
  };
  const verified: ProbeVerdict = {
    state: 'Verified',
    tried: 'GET http://10.88.0.5:8080/readyz on pod web-abc',
  };
  const noPods: ProbeVerdict = { state: 'NoPods', message: 'no running pod of shop/web' };
  /** A lookup answering `verdict` and recording what it was asked. */
  function lookup(verdict: ProbeVerdict | undefined) {
    const asked: [string, string, number | string][] = [];
    const fn: ProbeVerdictLookup = (c, path, port) => {
      asked.push([c, path, port]);
      return verdict;
    };
    return { fn, asked };
  }

  test('Unverified: no probe, a ProbeUnverified note with what was tried; preStop and grace as usual', () => {
    const { fn, asked } = lookup(unverified);
    const p = plan({}, {}, { probeVerdict: fn });
    expect(asked).toEqual([['web', '/readyz', 8080]]);
    expect(targets(p)).toEqual({ probe: [], preStop: ['web'] });
    expect(p.notes).toEqual([
      {
        reason: 'ProbeUnverified',
        message:
          'GET http://10.88.0.5:8080/readyz on pod web-abc answered 404: no readiness probe is written (readinessProbe.verification is Verify)',
      },
    ]);
    // Still recommended, and still the serving container.
    expect(p.recommended.readinessProbe).toEqual({ path: '/readyz', port: 8080 });
    expect(p.servingContainer).toBe('web');
    expect(p.recommended.terminationGracePeriodSeconds).toBe(30);
  });

  test('the lookup is asked with the annotation path and the configured port name', () => {
    const { fn, asked } = lookup(undefined);
    plan(
      { readinessProbe: { port: 'http' } },
      { annotations: { 'gracefulshutdown.dev/readiness-path': '/health' } },
      { probeVerdict: fn },
    );
    expect(asked).toEqual([['web', '/health', 'http']]);
  });

  test('Trust: the probe despite an Unverified verdict, and the lookup is not asked', () => {
    const { fn, asked } = lookup(unverified);
    const p = plan({ readinessProbe: { verification: 'Trust' } }, {}, { probeVerdict: fn });
    expect(targets(p).probe).toEqual(['web:8080']);
    expect(p.notes).toEqual([]);
    expect(asked).toEqual([]);
  });

  test.each<[string, ProbeVerdict | undefined]>([
    ['Verified', verified],
    ['NoPods', noPods],
    ['no verdict yet', undefined],
  ])('%s: the probe is written', (_, verdict) => {
    const p = plan({}, {}, { probeVerdict: lookup(verdict).fn });
    expect(targets(p).probe).toEqual(['web:8080']);
    expect(p.notes).toEqual([]);
  });

  test('Override replacing a user probe is verified too', () => {
    const p = plan(
      { readinessProbe: { inject: 'Override' } },
      { containers: [container('web', [8080], { readinessProbe: userProbe })] },
      { probeVerdict: lookup(unverified).fn },
    );
    expect(targets(p).probe).toEqual([]);
    expect(p.notes.map((n) => n.reason)).toEqual(['ProbeUnverified']);
  });

  test('a probe the container already has is kept whatever the verdict (nothing new is injected)', () => {
    const { fn, asked } = lookup(unverified);
    const current = plan({}).containers[0]?.readinessProbe;
    const p = plan(
      { readinessProbe: { inject: 'Override' } },
      {
        containers: [container('web', [['http', 8080]], { ...(current ? { readinessProbe: current } : {}) })],
      },
      { probeVerdict: fn },
    );
    expect(targets(p).probe).toEqual(['web:8080']);
    expect(asked).toEqual([]);
  });

  test('IfMissing with a user probe: nothing to inject, nothing asked', () => {
    const { fn, asked } = lookup(unverified);
    const p = plan(
      {},
      { containers: [container('web', [8080], { readinessProbe: userProbe })] },
      { probeVerdict: fn },
    );
    expect(p.notes).toEqual([]);
    expect(asked).toEqual([]);
  });
});

describe('desiredSettings: preStop action', () => {
  test.each<[string, GracefulShutdownPolicySpecInput, ClusterFacts, object]>([
    ['Auto on 1.30+: native sleep', {}, NEW_CLUSTER, { sleep: { seconds: 5 } }],
    ['Auto on 1.29: exec sleep', {}, OLD_CLUSTER, { exec: { command: ['sleep', '5'] } }],
    ['Sleep on any cluster', { preStop: { action: 'Sleep' } }, OLD_CLUSTER, { sleep: { seconds: 5 } }],
    [
      'Exec on any cluster',
      { preStop: { action: 'Exec', seconds: 12 } },
      NEW_CLUSTER,
      { exec: { command: ['sleep', '12'] } },
    ],
    [
      'Auto, 0 s where a zero sleep is not allowed: exec',
      { preStop: { seconds: 0 } },
      { nativeSleep: true },
      { exec: { command: ['sleep', '0'] } },
    ],
    [
      'Auto, 0 s where a zero sleep is allowed: sleep',
      { preStop: { seconds: 0 } },
      NEW_CLUSTER,
      { sleep: { seconds: 0 } },
    ],
  ])('%s', (_title, spec, facts, want) => {
    const p = plan(spec, {}, { facts });
    expect(p.containers[0]?.preStop).toEqual(want);
  });
});

describe('desiredSettings: grace period', () => {
  const drain30 = observed(20); // 20 s x 1.5 = 30 s drain
  const prometheus: GracefulShutdownPolicySpecInput = { observedLatency: { source: 'Prometheus' } };

  test.each<
    [
      string,
      GracefulShutdownPolicySpecInput,
      number | undefined,
      LatencyObservation,
      number | undefined,
      number,
    ]
  >([
    ['unset (30) and recommended 30: nothing to write', {}, undefined, NO_SOURCE, undefined, 30],
    ['unset (30), recommended 40: raised', prometheus, undefined, drain30, 40, 40],
    ['shorter user value: raised', prometheus, 10, drain30, 40, 40],
    ['longer user value kept under IfShorter', prometheus, 120, drain30, undefined, 40],
    [
      'longer user value replaced under Override',
      { ...prometheus, terminationGracePeriod: { inject: 'Override' } },
      120,
      drain30,
      40,
      40,
    ],
    [
      'Never writes nothing',
      { ...prometheus, terminationGracePeriod: { inject: 'Never' } },
      10,
      drain30,
      undefined,
      40,
    ],
    [
      'clamped to maxSeconds',
      { ...prometheus, terminationGracePeriod: { maxSeconds: 60 } },
      undefined,
      observed(200),
      60,
      60,
    ],
    [
      'Fixed strategy',
      { ...prometheus, terminationGracePeriod: { strategy: 'Fixed', fixedSeconds: 90 } },
      undefined,
      drain30,
      90,
      90,
    ],
    ['too few samples: drain 0, minSeconds', prometheus, 10, observed(20, 5), 30, 30],
  ])('%s', (_title, spec, grace, observation, written, recommended) => {
    const p = plan(spec, grace === undefined ? {} : { grace }, { observation });
    expect(p.terminationGracePeriodSeconds).toBe(written);
    expect(p.recommended.terminationGracePeriodSeconds).toBe(recommended);
  });

  test('the drain reason travels with the plan', () => {
    expect(plan(prometheus, {}, { observation: observed(20, 5) }).drain.reason).toBe('TooFewSamples');
    expect(plan({}).drain.reason).toBe('LatencySourceNone');
  });

  test("hysteresis: the operator's own value within 10 % is kept", () => {
    // Recommended 40; the operator applied 42 earlier and the Deployment still has it.
    const p = plan(
      prometheus,
      { grace: 42 },
      { observation: drain30, previouslyApplied: { terminationGracePeriodSeconds: 42 } },
    );
    expect(p.terminationGracePeriodSeconds).toBe(42);
    expect(p.recommended.terminationGracePeriodSeconds).toBe(42);
  });

  test("hysteresis: the operator's own value beyond 10 % follows the recommendation, downwards too", () => {
    const p = plan(
      prometheus,
      { grace: 60 },
      { observation: drain30, previouslyApplied: { terminationGracePeriodSeconds: 60 } },
    );
    expect(p.terminationGracePeriodSeconds).toBe(40);
  });

  test('hysteresis does not keep a value below preStop + drain', () => {
    // preStop 5 + drain 30 = 35; previous 36 is within 10 % of 40 and above the floor: kept.
    // With overhead 0 the recommendation is 35 and previous 33 is within 10 % but below 35.
    const spec = { ...prometheus, terminationGracePeriod: { minSeconds: 0, overheadSeconds: 0 } };
    expect(
      plan(
        spec,
        { grace: 33 },
        { observation: drain30, previouslyApplied: { terminationGracePeriodSeconds: 33 } },
      ).terminationGracePeriodSeconds,
    ).toBe(35);
  });

  test('hysteresis never applies to a value the user set', () => {
    // The Deployment has 42, but the operator last applied 50: 42 is the user's.
    const p = plan(
      prometheus,
      { grace: 42 },
      { observation: drain30, previouslyApplied: { terminationGracePeriodSeconds: 50 } },
    );
    expect(p.recommended.terminationGracePeriodSeconds).toBe(40);
    expect(p.terminationGracePeriodSeconds).toBeUndefined();
  });

  test('hysteresis does not keep a value outside the bounds (maxSeconds lowered since)', () => {
    const spec = { ...prometheus, terminationGracePeriod: { maxSeconds: 300 } };
    const p = plan(
      spec,
      { grace: 310 },
      { observation: observed(1000), previouslyApplied: { terminationGracePeriodSeconds: 310 } },
    );
    expect(p.terminationGracePeriodSeconds).toBe(300);
  });

  describe('never lower on an untrusted or unsettled latency', () => {
    const applied60 = { previouslyApplied: { terminationGracePeriodSeconds: 60 } };
    test.each([
      [
        'unknown (source down)',
        { known: false, source: 'Prometheus', reason: 'connection refused', unavailable: true },
      ],
      ['too few samples', observed(20, 5)],
    ] as [string, LatencyObservation][])(
      '%s: the applied value is kept, with a note',
      (_title, observation) => {
        const p = plan(prometheus, { grace: 60 }, { observation, ...applied60 });
        expect(p.terminationGracePeriodSeconds).toBe(60);
        expect(p.notes.map((n) => n.reason)).toContain('GraceKept');
      },
    );

    test("Override does not lower a user's value while the latency is untrusted (the drain is unknown, not zero)", () => {
      const override = { ...prometheus, terminationGracePeriod: { inject: 'Override' as const } };
      const p = plan(override, { grace: 60 }, { observation: observed(20, 5) });
      expect(p.terminationGracePeriodSeconds).toBeUndefined();
      expect(p.notes.map((n) => n.reason)).toContain('GraceKept');
      // Negative control: with a trusted latency, Override writes the recommendation.
      expect(plan(override, { grace: 60 }, { observation: drain30 }).terminationGracePeriodSeconds).toBe(40);
      // Raising is never held back.
      expect(
        plan(override, { grace: 10 }, { observation: observed(20, 5) }).terminationGracePeriodSeconds,
      ).toBe(30);
      // A Fixed grace period does not depend on the latency: it is written whatever the drain.
      const fixed = {
        ...prometheus,
        terminationGracePeriod: { inject: 'Override' as const, strategy: 'Fixed' as const, fixedSeconds: 40 },
      };
      expect(plan(fixed, { grace: 60 }, { observation: observed(20, 5) }).terminationGracePeriodSeconds).toBe(
        40,
      );
    });

    test('a lower latency that has not held for the stabilization window keeps the applied value', () => {
      const p = plan(prometheus, { grace: 60 }, { observation: drain30, ...applied60, canLower: false });
      expect(p.terminationGracePeriodSeconds).toBe(60);
      expect(p.notes.find((n) => n.reason === 'GraceKept')?.message).toContain('stabilizationWindow');
      // Negative control: once it may lower, it does.
      expect(
        plan(prometheus, { grace: 60 }, { observation: drain30, ...applied60, canLower: true })
          .terminationGracePeriodSeconds,
      ).toBe(40);
    });

    test('raising is never held back', () => {
      const p = plan(
        prometheus,
        { grace: 20 },
        { observation: drain30, previouslyApplied: { terminationGracePeriodSeconds: 20 }, canLower: false },
      );
      expect(p.terminationGracePeriodSeconds).toBe(40);
    });

    test('without a latency source the policy alone decides, downwards too', () => {
      const spec = { terminationGracePeriod: { minSeconds: 35 } };
      expect(plan(spec, { grace: 60 }, applied60).terminationGracePeriodSeconds).toBe(35);
    });
  });

  test('hysteresis does not apply to the Fixed strategy', () => {
    const spec: GracefulShutdownPolicySpecInput = {
      terminationGracePeriod: { strategy: 'Fixed', fixedSeconds: 40 },
    };
    const p = plan(spec, { grace: 42 }, { previouslyApplied: { terminationGracePeriodSeconds: 42 } });
    expect(p.terminationGracePeriodSeconds).toBe(40);
  });

  test.each([
    ['exec sleep', { exec: { command: ['sleep', '60'] } }, 61],
    ['sh -c sleep', { exec: { command: ['/bin/sh', '-c', 'sleep 45'] } }, 46],
    ['native sleep', { sleep: { seconds: 100 } }, 101],
    // A hostile or absurd hook: the grace period stays a number the apiserver can decode.
    ['exec sleep 1e20', { exec: { command: ['sleep', '99999999999999999999'] } }, 86_401],
    ['sh -c sleep 1e20', { exec: { command: ['sh', '-c', 'sleep 99999999999999999999'] } }, 86_401],
    ['native sleep 2^53', { sleep: { seconds: 2 ** 53 } }, 86_401],
  ])("a user's longer preStop (%s) raises the grace period", (_title, hook, want) => {
    const p = plan({}, { containers: [container('web', [8080], { lifecycle: { preStop: hook } })] });
    expect(p.terminationGracePeriodSeconds).toBe(want);
    expect(p.notes.map((n) => n.reason)).toEqual(['GraceRaisedForPreStop']);
  });

  test("a user's preStop beyond maxSeconds wins over maxSeconds: SIGKILL mid-hook is worse", () => {
    const p = plan(
      { terminationGracePeriod: { maxSeconds: 60 } },
      { containers: [container('web', [8080], { lifecycle: { preStop: { sleep: { seconds: 90 } } } })] },
    );
    expect(p.terminationGracePeriodSeconds).toBe(91);
  });

  test("a native sidecar's preStop counts, a marked sidecar's too", () => {
    const sidecarHook = { lifecycle: { preStop: { sleep: { seconds: 50 } } } };
    const native = plan(
      {},
      { initContainers: [container('mesh', [], { restartPolicy: 'Always', ...sidecarHook })] },
    );
    expect(native.terminationGracePeriodSeconds).toBe(51);
    const marked = plan(
      {},
      {
        containers: [container('web', [8080]), container('envoy', [], sidecarHook)],
        annotations: { 'gracefulshutdown.dev/sidecars': 'envoy' },
      },
    );
    expect(marked.terminationGracePeriodSeconds).toBe(51);
  });

  test('an httpGet preStop of unknown length does not raise the grace period', () => {
    const p = plan({}, { containers: [container('web', [8080], { lifecycle: { preStop: userHook } })] });
    expect(p.terminationGracePeriodSeconds).toBeUndefined();
    expect(p.notes).toEqual([]);
  });

  test('Never with a grace period not above the preStop wait: a note, nothing written', () => {
    const p = plan({ preStop: { seconds: 20 }, terminationGracePeriod: { inject: 'Never' } }, { grace: 15 });
    expect(p.terminationGracePeriodSeconds).toBeUndefined();
    expect(p.notes.map((n) => n.reason)).toEqual(['GraceShorterThanPreStop']);
  });
});

describe('desiredSettings: pods killed at the deadline (the closed loop)', () => {
  const note = (p: ShutdownPlan) => p.notes.find((n) => n.reason === 'ShutdownKilled')?.message;

  test('the grace period is raised above the one pods were killed at, even when latency says it fits', () => {
    // Latency: preStop 5 + drain 0 + overhead 5 = 10, raised to minSeconds 30; killed at 30.
    const raised = plan({}, { grace: 30 }, { killedAt: 30 });
    expect(raised.terminationGracePeriodSeconds).toBe(45);
    expect(note(raised)).toBe('pods were killed at the end of a 30 s grace period: raised to 45 s (x1.5)');
    expect(raised.graceExplanation).toBe(
      'grace 45 s: preStop 5 + drain 0 (no latency source) + overhead 5 = 10, raised above the 30 s at which pods were killed, within [30, 300]',
    );
    // Negative control: without the kill, 30 stays.
    expect(plan({}, { grace: 30 }).terminationGracePeriodSeconds).toBeUndefined();
  });

  test('within maxSeconds; a kill at a grace period already exceeded changes nothing', () => {
    const capped = plan({ terminationGracePeriod: { maxSeconds: 40 } }, { grace: 30 }, { killedAt: 30 });
    expect(capped.terminationGracePeriodSeconds).toBe(40);
    expect(note(capped)).toContain('capped at maxSeconds 40');
    const atMax = plan({ terminationGracePeriod: { maxSeconds: 40 } }, { grace: 40 }, { killedAt: 40 });
    expect(note(atMax)).toBe(
      'pods were killed at the end of a 40 s grace period, and maxSeconds 40 allows no longer one',
    );
    const past = plan({ terminationGracePeriod: { minSeconds: 60 } }, {}, { killedAt: 20 });
    expect(past.terminationGracePeriodSeconds).toBe(60);
    expect(note(past)).toBeUndefined();
  });
});

describe('the grace sentence (status and Events)', () => {
  const spec: GracefulShutdownPolicySpecInput = {
    preStop: { seconds: 10 },
    terminationGracePeriod: { minSeconds: 30, maxSeconds: 120, overheadSeconds: 5 },
    observedLatency: { source: 'Prometheus', minSamples: 100, safetyFactor: 1.5 },
  };
  test('shows the arithmetic from the observed percentile', () => {
    const p = plan(spec, {}, { observation: observed(21.3, 500) });
    expect(p.graceExplanation).toBe(
      'grace 47 s = preStop 10 + drain 32 (p99 21.3 s x 1.5) + overhead 5, within [30, 120]',
    );
  });

  test('says when the bounds decided, and when the latency is only a lower bound', () => {
    expect(plan(spec, {}, { observation: observed(1, 500) }).graceExplanation).toBe(
      'grace 30 s: preStop 10 + drain 2 (p99 1 s x 1.5) + overhead 5 = 17, raised to minSeconds of [30, 120]',
    );
    const atLeast: LatencyObservation = { ...observed(100, 500), atLeast: true } as LatencyObservation;
    const p = plan(spec, {}, { observation: atLeast });
    expect(p.graceExplanation).toBe(
      'grace 120 s: preStop 10 + drain 150 (p99 >= 100 s x 1.5) + overhead 5 = 165, capped at maxSeconds of [30, 120]',
    );
    expect(p.drain.message).toContain("above the histogram's largest finite bucket");
  });

  test('says why the drain counts as 0, and when an applied value is kept', () => {
    expect(plan(spec, {}, { observation: observed(3, 12) }).graceExplanation).toContain(
      'drain 0 (12 requests < minSamples 100)',
    );
    const kept = plan(
      spec,
      { grace: 60 },
      {
        observation: { known: false, source: 'Prometheus', reason: 'down', unavailable: true },
        previouslyApplied: { terminationGracePeriodSeconds: 60 },
      },
    );
    expect(kept.graceExplanation).toBe(
      'grace 60 s kept (preStop 10 + drain 0 (latency unknown) + overhead 5 = 15, within [30, 120])',
    );
    expect(plan({ terminationGracePeriod: { strategy: 'Fixed', fixedSeconds: 40 } }).graceExplanation).toBe(
      'grace 40 s (strategy Fixed)',
    );
  });
});

describe('desiredSettings: the probe matches the port protocol (decideProbe)', () => {
  const noPods: ProbeVerdict = { state: 'NoPods', message: 'no pod of shop/web is running container web' };
  const unreachable: ProbeVerdict = {
    state: 'Unreachable',
    message: 'GET http://10.88.0.5:8080/readyz on pod web-abc could not connect within 1000 ms',
  };
  const verified: ProbeVerdict = {
    state: 'Verified',
    tried: 'GET http://10.88.0.5:8080/readyz on pod web-abc answered 200',
  };
  const unverified: ProbeVerdict = {
    state: 'Unverified',
    tried: 'GET http://10.88.0.5:8080/readyz on pod web-abc',
    message: 'GET http://10.88.0.5:8080/readyz on pod web-abc answered 404',
  };
  const timing = { periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 };

  function decide(
    spec: GracefulShutdownPolicySpecInput,
    web: V1Container,
    extra: {
      verdict?: ProbeVerdict;
      servicePorts?: ServicePortLookup;
      ownProbe?: V1Probe;
      templateChanging?: boolean;
    } = {},
  ): ShutdownPlan {
    const result = desiredSettings({
      policy: policy('p', spec),
      deployment: deployment({ containers: [web] }),
      observation: NO_SOURCE,
      facts: NEW_CLUSTER,
      ...(extra.verdict ? { probeVerdict: () => extra.verdict } : {}),
      ...(extra.servicePorts ? { servicePorts: extra.servicePorts } : {}),
      ...(extra.ownProbe ? { ownProbes: { web: extra.ownProbe } } : {}),
      ...(extra.templateChanging === undefined ? {} : { templateChanging: extra.templateChanging }),
    });
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    return result.plan;
  }
  const probeOf = (p: ShutdownPlan) => p.containers.find((c) => c.name === 'web')?.readinessProbe;
  const reasons = (p: ShutdownPlan) => p.notes.map((n) => n.reason);

  test('a port named grpc: tcpSocket, whatever the verdict, and no check is asked', () => {
    const asked: unknown[] = [];
    const result = desiredSettings({
      policy: policy('p', {}),
      deployment: deployment({ containers: [container('web', [['grpc', 9090]])] }),
      observation: NO_SOURCE,
      facts: NEW_CLUSTER,
      probeVerdict: (...args) => {
        asked.push(args);
        return noPods;
      },
    });
    const p = result.ok ? result.plan : undefined;
    expect(p && probeOf(p)).toEqual({ tcpSocket: { port: 9090 }, ...timing });
    expect(p?.recommended.readinessProbe).toEqual({ kind: 'tcpSocket', port: 9090 });
    expect(p?.notes).toEqual([
      {
        reason: 'ProbeKind',
        message:
          'port grpc (9090) is named grpc: a tcpSocket probe on port 9090 instead of httpGet /readyz (readinessProbe.grpcHealthService is false: set it true for a grpc probe where the app serves grpc.health.v1.Health)',
      },
    ]);
    expect(asked).toEqual([]);
  });

  test('grpcHealthService: the kubelet grpc probe, on the port number even when configured by name', () => {
    const p = decide(
      { readinessProbe: { grpcHealthService: true, port: 'grpc' } },
      container('web', [['grpc', 9090]]),
      {
        verdict: noPods,
      },
    );
    expect(probeOf(p)).toEqual({ grpc: { port: 9090 }, ...timing });
    expect(p.recommended.readinessProbe).toEqual({ kind: 'grpc', port: 9090 });
    expect(reasons(p)).toEqual(['ProbeKind']);
  });

  test('a port named redis: tcpSocket; grpcHealthService changes nothing there', () => {
    const p = decide({ readinessProbe: { grpcHealthService: true } }, container('web', [['redis', 6379]]), {
      verdict: noPods,
    });
    expect(probeOf(p)).toEqual({ tcpSocket: { port: 6379 }, ...timing });
    expect(p.notes[0]?.message).toBe(
      'port redis (6379) is named redis: a tcpSocket probe on port 6379 instead of httpGet /readyz',
    );
  });

  test('a UDP port: no probe at all, ProbeNotPossible; preStop as usual', () => {
    const web = container('web', [], { ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }] });
    const p = decide({}, web, { verdict: noPods });
    expect(probeOf(p)).toBeUndefined();
    expect(p.containers[0]?.preStop).toBeDefined();
    expect(p.recommended.readinessProbe).toBeUndefined();
    expect(p.notes).toEqual([
      {
        reason: 'ProbeNotPossible',
        message:
          "port dns (53) is UDP: no readiness probe can pass there (the kubelet's probes connect over TCP); none is written",
      },
    ]);
  });

  test("a Service's appProtocol decides for a port whose name says nothing", () => {
    const asked: unknown[] = [];
    const servicePorts: ServicePortLookup = (port) => {
      asked.push(port);
      return [{ service: 'shop/cache', port: 6379, appProtocol: 'redis' }];
    };
    const p = decide({}, container('web', [['api', 7000]]), { verdict: noPods, servicePorts });
    expect(asked.length).toBeGreaterThan(0);
    for (const port of asked) expect(port).toEqual({ containerPort: 7000, name: 'api' });
    expect(probeOf(p)).toEqual({ tcpSocket: { port: 7000 }, ...timing });
    expect(p.notes[0]?.message).toContain('Service shop/cache port 6379 has appProtocol redis');
  });

  test('no pod to ask and nothing says HTTP: tcpSocket instead of a blind httpGet (ProbeFallback)', () => {
    for (const verdict of [noPods, unreachable]) {
      const p = decide({}, container('web', [['api', 8080]]), { verdict });
      expect(probeOf(p)).toEqual({ tcpSocket: { port: 8080 }, ...timing });
      expect(p.recommended.readinessProbe).toEqual({ kind: 'tcpSocket', port: 8080 });
      // The httpGet probe is owed a check once pods run (controllers/probe-recheck.ts).
      expect(p.probeCheck).toEqual({ container: 'web', path: '/readyz', port: 8080 });
      expect(p.notes).toEqual([
        {
          reason: 'ProbeFallback',
          message: `${verdict.state === 'NoPods' ? noPods.message : unreachable.message}; nothing says port 8080 speaks HTTP (its name, a Service's appProtocol, an httpGet liveness or startup probe): a tcpSocket probe is written instead of httpGet /readyz, which is checked once pods run and replaces it with the next pod-template change`,
        },
      ]);
    }
  });

  test('an unnamed port and a port named http2 (HTTP/1.1 may be refused) get the fallback too', () => {
    expect(probeOf(decide({}, container('web', [8080]), { verdict: noPods }))?.tcpSocket).toEqual({
      port: 8080,
    });
    expect(probeOf(decide({}, container('web', [['http2', 8080]]), { verdict: noPods }))?.tcpSocket).toEqual({
      port: 8080,
    });
  });

  test('no pod to ask, but the port is named http: httpGet; unreachable pods say so (ProbeUnreachable)', () => {
    const named = decide({}, container('web', [['http', 8080]]), { verdict: noPods });
    expect(probeOf(named)?.httpGet).toEqual({ path: '/readyz', port: 8080 });
    expect(named.notes).toEqual([]);
    const p = decide({}, container('web', [['http', 8080]]), { verdict: unreachable });
    expect(probeOf(p)?.httpGet).toEqual({ path: '/readyz', port: 8080 });
    expect(p.notes).toEqual([
      {
        reason: 'ProbeUnreachable',
        message: `${unreachable.message}: httpGet /readyz is written unverified (port http (8080) is named http)`,
      },
    ]);
  });

  test("the user's own HTTP liveness probe on the port is evidence of HTTP; one on another port is not", () => {
    const live = container('web', [['api', 8080]], {
      livenessProbe: { httpGet: { path: '/healthz', port: 8080 } },
    });
    expect(probeOf(decide({}, live, { verdict: noPods }))?.httpGet).toEqual({ path: '/readyz', port: 8080 });
    const elsewhere = container(
      'web',
      [
        ['api', 8080],
        ['admin', 9000],
      ],
      {
        livenessProbe: { httpGet: { path: '/healthz', port: 9000 } },
      },
    );
    expect(probeOf(decide({}, elsewhere, { verdict: noPods }))?.tcpSocket).toEqual({ port: 8080 });
  });

  test('Trust: httpGet on a port whose name says nothing; Verified and no verdict yet: httpGet', () => {
    expect(
      probeOf(decide({ readinessProbe: { verification: 'Trust' } }, container('web', [8080])))?.httpGet,
    ).toEqual({
      path: '/readyz',
      port: 8080,
    });
    expect(probeOf(decide({}, container('web', [8080]), { verdict: verified }))?.httpGet).toBeDefined();
    // Not checked yet: the controller checks it on a running pod before it writes.
    expect(probeOf(decide({}, container('web', [8080])))?.httpGet).toBeDefined();
  });

  test('Unverified on a port whose name says nothing: no probe, as on any port', () => {
    const p = decide({}, container('web', [8080]), { verdict: unverified });
    expect(probeOf(p)).toBeUndefined();
    expect(reasons(p)).toEqual(['ProbeUnverified']);
  });

  test("the operator's tcpSocket fallback stays until the template changes anyway, then the verified httpGet replaces it", () => {
    const ownProbe = { tcpSocket: { port: 8080 }, ...timing };
    const kept = decide({}, container('web', [8080]), {
      verdict: verified,
      ownProbe,
      templateChanging: false,
    });
    // Nothing written for the probe: the owned one is kept as it is (ownership.ts retainOwnedFields).
    expect(probeOf(kept)).toBeUndefined();
    expect(kept.notes).toEqual([
      {
        reason: 'ProbeUpgradeDeferred',
        message: `the operator's tcpSocket probe on port 8080 stays until the pod template next changes: httpGet /readyz (${verified.tried} succeeded) replaces it then`,
      },
    ]);
    // Verified: nothing more to check. Not asked yet: the check is owed (probe-recheck.ts runs it).
    expect(kept.probeCheck).toBeUndefined();
    const notAsked = decide({}, container('web', [8080]), { ownProbe });
    expect(notAsked.notes[0]?.message).toContain(
      'is checked on a running pod then, and replaces it if answered',
    );
    expect(notAsked.probeCheck).toEqual({ container: 'web', path: '/readyz', port: 8080 });
    const joining = decide({}, container('web', [8080]), {
      verdict: verified,
      ownProbe,
      templateChanging: true,
    });
    expect(probeOf(joining)?.httpGet).toEqual({ path: '/readyz', port: 8080 });
    expect(joining.notes).toEqual([]);
    // Still no pod: the fallback is planned again (the same probe: nothing changes).
    expect(probeOf(decide({}, container('web', [8080]), { verdict: noPods, ownProbe }))).toEqual(ownProbe);
  });
});
