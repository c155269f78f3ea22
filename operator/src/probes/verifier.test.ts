import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1Container, V1Deployment, V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  checkProbe,
  ownedByDeployment,
  type ProbeAnswer,
  type ProbeTarget,
  ProbeVerifier,
  podsToTry,
  probeKey,
  resolveContainerPort,
  verifyProbe,
} from './verifier.ts';

// --- a local server answering by path --------------------------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const routes: Record<string, Handler> = {
  '/ok': (_, res) => res.end('ok'),
  '/no-content': (_, res) => res.writeHead(204).end(),
  '/missing': (_, res) => res.writeHead(404).end('not found'),
  '/error': (_, res) => res.writeHead(503).end(),
  '/moved-here-ok': (_, res) => res.writeHead(302, { location: '/ok' }).end(),
  '/moved-here-missing': (_, res) => res.writeHead(301, { location: '/missing' }).end(),
  '/moved-away': (_, res) => res.writeHead(302, { location: 'http://example.invalid/login' }).end(),
  '/moved-https': (_, res) => res.writeHead(302, { location: 'https://127.0.0.1/secure' }).end(),
  '/loop': (_, res) => res.writeHead(302, { location: '/loop' }).end(),
  '/no-location': (_, res) => res.writeHead(304).end(),
  '/slow': (_, res) => setTimeout(() => res.end('late'), 2000).unref(),
  '/endless': (_, res) => {
    res.writeHead(200);
    const timer = setInterval(() => res.write('x'.repeat(1024)), 5);
    res.on('close', () => clearInterval(timer));
  },
  '/headers': (req, res) =>
    res
      .writeHead(
        req.headers['user-agent']?.startsWith('kube-probe/') && req.headers.accept === '*/*' ? 200 : 400,
      )
      .end(),
};
let requests: string[] = [];
let server: Server;
let port: number;
/** A port nothing listens on. */
let closedPort: number;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const handler = routes[(req.url ?? '').split('?')[0] ?? ''];
    if (handler) handler(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const target = (path: string, extra: Partial<ProbeTarget> = {}): ProbeTarget => ({
  podIP: '127.0.0.1',
  port,
  path,
  timeoutMs: 1000,
  ...extra,
});

describe('checkProbe: the kubelet httpGet', () => {
  test.each([
    ['/ok', true, 'answered 200'],
    ['/no-content', true, 'answered 204'],
    ['/no-location', true, 'answered 304'],
    ['/missing', false, 'answered 404'],
    ['/error', false, 'answered 503'],
  ])('%s: ok %s, %s', async (path, ok, outcome) => {
    expect(await checkProbe(target(path))).toEqual({ ok, url: `http://127.0.0.1:${port}${path}`, outcome });
  });

  test('sends a kube-probe user agent and Accept */*', async () => {
    expect((await checkProbe(target('/headers'))).ok).toBe(true);
  });

  test('follows a redirect to the same host, and judges the final answer', async () => {
    expect(await checkProbe(target('/moved-here-ok'))).toMatchObject({
      ok: true,
      outcome: `answered 200 after a redirect to http://127.0.0.1:${port}/ok`,
    });
    expect(await checkProbe(target('/moved-here-missing'))).toMatchObject({
      ok: false,
      outcome: `answered 404 after a redirect to http://127.0.0.1:${port}/missing`,
    });
  });

  test('a redirect to another host (or to https) is not followed: its 3xx is a success', async () => {
    expect(await checkProbe(target('/moved-away'))).toMatchObject({ ok: true, outcome: 'answered 302' });
    expect(await checkProbe(target('/moved-https'))).toMatchObject({ ok: true, outcome: 'answered 302' });
  });

  test('stops after 10 requests in a redirect loop', async () => {
    requests = [];
    expect(await checkProbe(target('/loop'))).toMatchObject({
      ok: false,
      outcome: 'failed: stopped after 10 redirects',
    });
    expect(requests).toHaveLength(10);
  });

  test('connection refused', async () => {
    expect(await checkProbe(target('/ok', { port: closedPort }))).toEqual({
      ok: false,
      url: `http://127.0.0.1:${closedPort}/ok`,
      outcome: 'failed: connection refused',
    });
  });

  test('no answer within the timeout', async () => {
    const started = Date.now();
    expect(await checkProbe(target('/slow', { timeoutMs: 200 }))).toMatchObject({
      ok: false,
      outcome: 'got no answer within 200 ms',
    });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  test('the status decides; an endless body is not waited for', async () => {
    expect(await checkProbe(target('/endless', { timeoutMs: 500 }))).toMatchObject({
      ok: true,
      outcome: 'answered 200',
    });
  });

  test('an IPv6 pod IP is bracketed in the URL', async () => {
    const answer = await checkProbe({ podIP: '::1', port: closedPort, path: '/ok', timeoutMs: 500 });
    expect(answer.url).toBe(`http://[::1]:${closedPort}/ok`);
    expect(answer.ok).toBe(false);
  });

  test('aborting rejects instead of answering', async () => {
    const controller = new AbortController();
    const pending = checkProbe(target('/slow', { signal: controller.signal }));
    controller.abort(new Error('shutting down'));
    await expect(pending).rejects.toThrow('shutting down');
    await expect(checkProbe(target('/ok', { signal: controller.signal }))).rejects.toThrow('shutting down');
  });
});

// --- pods ------------------------------------------------------------------------------------------

function deployment(image = 'acme/web:2'): V1Deployment {
  return {
    metadata: { name: 'web', namespace: 'shop', uid: 'uid-web' },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      template: {
        spec: { containers: [{ name: 'web', image, ports: [{ name: 'http', containerPort: port }] }] },
      },
    },
  };
}

interface PodOptions {
  ip?: string;
  phase?: string;
  ready?: boolean;
  running?: boolean;
  /** When the container started (state.running.startedAt). */
  startedAt?: string;
  deleting?: boolean;
  created?: string;
  image?: string;
  containers?: V1Container[];
}

function pod(name: string, options: PodOptions = {}): V1Pod {
  return {
    metadata: {
      name,
      namespace: 'shop',
      creationTimestamp: new Date(options.created ?? '2025-01-01T00:00:00Z'),
      ...(options.deleting ? { deletionTimestamp: new Date('2025-01-02T00:00:00Z') } : {}),
    },
    spec: {
      containers: options.containers ?? [
        { name: 'web', image: options.image ?? 'acme/web:2', ports: [{ name: 'http', containerPort: port }] },
      ],
    },
    status: {
      phase: options.phase ?? 'Running',
      ...(options.ip === '' ? {} : { podIP: options.ip ?? '127.0.0.1' }),
      conditions: [{ type: 'Ready', status: options.ready === false ? 'False' : 'True' }],
      containerStatuses: [
        {
          name: 'web',
          image: options.image ?? 'acme/web:2',
          imageID: '',
          ready: options.ready !== false,
          restartCount: 0,
          state:
            options.running === false
              ? { waiting: { reason: 'CrashLoopBackOff' } }
              : { running: options.startedAt ? { startedAt: new Date(options.startedAt) } : {} },
        },
      ],
    },
  };
}

describe('ownedByDeployment', () => {
  const web: V1Deployment = { metadata: { name: 'web', namespace: 'shop' } };
  const ownedBy = (kind: string, name: string): V1Pod => ({
    metadata: { name: 'p', ownerReferences: [{ apiVersion: 'apps/v1', kind, name, uid: 'u' }] },
  });
  test.each<[string, V1Pod, boolean]>([
    ['its ReplicaSet', ownedBy('ReplicaSet', 'web-7bb95b96b6'), true],
    ["another Deployment's ReplicaSet (web-api)", ownedBy('ReplicaSet', 'web-api-5d4f8c7b9'), false],
    ['a Job', ownedBy('Job', 'web-7bb95b96b6'), false],
    ['a bare pod', { metadata: { name: 'p' } }, false],
  ])('%s: %s', (_title, pod, owned) => {
    expect(ownedByDeployment(pod, web)).toBe(owned);
  });
});

describe('podsToTry', () => {
  test("a pod on the host's network is never asked (it would be the node)", () => {
    const onHost = pod('web-host');
    onHost.spec = { ...onHost.spec, containers: onHost.spec?.containers ?? [], hostNetwork: true };
    expect(podsToTry(deployment(), [onHost], 'web')).toEqual([]);
  });

  const names = (pods: V1Pod[]) => pods.map((p) => p.metadata?.name);

  test('only running pods, not terminating, with an IP and the container running', () => {
    const pods = [
      pod('pending', { phase: 'Pending' }),
      pod('deleting', { deleting: true }),
      pod('no-ip', { ip: '' }),
      pod('crashing', { running: false }),
      pod('good'),
    ];
    expect(names(podsToTry(deployment(), pods, 'web'))).toEqual(['good']);
    expect(podsToTry(deployment(), pods, 'sidecar')).toEqual([]);
  });

  test('ready first, then the template image, then the newest; at most 2', () => {
    const pods = [
      pod('old-ready', { created: '2025-01-01T00:00:00Z' }),
      pod('new-unready', { created: '2025-01-03T00:00:00Z', ready: false }),
      pod('new-ready', { created: '2025-01-02T00:00:00Z' }),
      pod('newest-ready-old-image', { created: '2025-01-04T00:00:00Z', image: 'acme/web:1' }),
    ];
    expect(names(podsToTry(deployment(), pods, 'web'))).toEqual(['new-ready', 'old-ready']);
    expect(names(podsToTry(deployment(), pods, 'web', 4))).toEqual([
      'new-ready',
      'old-ready',
      'newest-ready-old-image',
      'new-unready',
    ]);
  });
});

describe('resolveContainerPort', () => {
  const container: V1Container = { name: 'web', ports: [{ name: 'http', containerPort: 8080 }] };
  test.each<[number | string, number | undefined]>([
    [9090, 9090],
    ['http', 8080],
    ['admin', undefined],
  ])('%s -> %s', (p, want) => {
    expect(resolveContainerPort(container, p)).toBe(want);
  });
  test('no container: only a number resolves', () => {
    expect(resolveContainerPort(undefined, 'http')).toBe(undefined);
    expect(resolveContainerPort(undefined, 80)).toBe(80);
  });
});

// --- verdicts --------------------------------------------------------------------------------------

const input = (path: string, pods: V1Pod[], portSpec: number | string = 'http') => ({
  deployment: deployment(),
  pods,
  container: 'web',
  path,
  port: portSpec,
  timeoutMs: 500,
});

describe('verifyProbe', () => {
  test('Verified by a pod answering 2xx, saying what was tried', async () => {
    expect(await verifyProbe(input('/ok', [pod('web-abc')]))).toEqual({
      state: 'Verified',
      tried: `GET http://127.0.0.1:${port}/ok on pod web-abc answered 200`,
    });
  });

  test('Unverified: exactly what was asked of which pod and what it answered', async () => {
    expect(await verifyProbe(input('/missing', [pod('web-abc')]))).toEqual({
      state: 'Unverified',
      tried: `GET http://127.0.0.1:${port}/missing on pod web-abc`,
      message: `GET http://127.0.0.1:${port}/missing on pod web-abc answered 404`,
    });
  });

  test('connection refused, on both pods tried', async () => {
    const verdict = await verifyProbe(input('/ok', [pod('web-a'), pod('web-b')], closedPort));
    expect(verdict).toEqual({
      state: 'Unverified',
      tried: `GET http://127.0.0.1:${closedPort}/ok on pod web-a; GET http://127.0.0.1:${closedPort}/ok on pod web-b`,
      message: `GET http://127.0.0.1:${closedPort}/ok on pod web-a failed: connection refused; GET http://127.0.0.1:${closedPort}/ok on pod web-b failed: connection refused`,
    });
  });

  test('a second pod answering is enough', async () => {
    const unreachable = pod('web-a', { created: '2025-01-02T00:00:00Z', ip: '127.0.0.2' });
    const fake = async (t: ProbeTarget): Promise<ProbeAnswer> => ({
      ok: t.podIP === '127.0.0.1',
      url: `http://${t.podIP}:${t.port}${t.path}`,
      outcome: t.podIP === '127.0.0.1' ? 'answered 200' : 'failed: connection refused',
    });
    const verdict = await verifyProbe(input('/ok', [unreachable, pod('web-b')]), fake);
    expect(verdict).toEqual({
      state: 'Verified',
      tried: `GET http://127.0.0.1:${port}/ok on pod web-b answered 200`,
    });
  });

  test('no pod reachable (no route, or the connect gets no answer): Unreachable, with what was tried', async () => {
    const fake = async (t: ProbeTarget): Promise<ProbeAnswer> => ({
      ok: false,
      unreachable: true,
      url: `http://${t.podIP}:${t.port}${t.path}`,
      outcome: 'could not connect within 500 ms',
    });
    expect(await verifyProbe(input('/ok', [pod('web-abc')]), fake)).toEqual({
      state: 'Unreachable',
      message: `GET http://127.0.0.1:${port}/ok on pod web-abc could not connect within 500 ms`,
    });
  });

  test('one pod unreachable, another refusing: Unverified (a pod that answered speaks against it)', async () => {
    const fake = async (t: ProbeTarget): Promise<ProbeAnswer> => ({
      ok: false,
      ...(t.podIP === '127.0.0.2' ? { unreachable: true } : {}),
      url: `http://${t.podIP}:${t.port}${t.path}`,
      outcome: t.podIP === '127.0.0.2' ? 'could not connect within 500 ms' : 'answered 404',
    });
    const far = pod('web-a', { created: '2025-01-02T00:00:00Z', ip: '127.0.0.2' });
    expect((await verifyProbe(input('/ok', [far, pod('web-b')]), fake)).state).toBe('Unverified');
  });

  test('a timeout is Unverified', async () => {
    const verdict = await verifyProbe(input('/slow', [pod('web-abc')]));
    expect(verdict).toMatchObject({
      state: 'Unverified',
      message: expect.stringMatching(/no answer within 500 ms$/),
    });
  });

  test("a named port the pod's container does not declare: Unverified, saying so", async () => {
    expect(await verifyProbe(input('/ok', [pod('web-abc')], 'admin'))).toEqual({
      state: 'Unverified',
      tried: 'port admin of container web in pod web-abc',
      message: 'container web of pod web-abc declares no port named admin',
    });
  });

  test('no running pod: NoPods (the probe may be injected), nothing requested', async () => {
    requests = [];
    const verdict = await verifyProbe(input('/ok', [pod('web-abc', { phase: 'Pending' })]));
    expect(verdict).toEqual({
      state: 'NoPods',
      message: 'no pod of shop/web is running container web with an IP: GET /ok on port http was not tried',
    });
    expect(requests).toEqual([]);
  });
});

describe('ProbeVerifier', () => {
  test('keeps the verdict under the key of (deployment uid, container, path, port); lookup reads it', async () => {
    const verifier = new ProbeVerifier();
    const key = probeKey('uid-web', 'web', '/ok', 'http');
    expect(verifier.get(key)).toBe(undefined);
    const verdict = await verifier.verify(input('/ok', [pod('web-abc')]));
    expect(verdict.state).toBe('Verified');
    expect(verifier.get(key)).toEqual(verdict);
    expect(verifier.lookup('uid-web')('web', '/ok', 'http')).toEqual(verdict);
    expect(verifier.lookup('uid-web')('web', '/ok', port)).toBe(undefined);
    expect(verifier.lookup('uid-other')('web', '/ok', 'http')).toBe(undefined);
  });

  test('a container that only just started is not asked: Pending, not kept; asked once settled', async () => {
    let now = Date.parse('2026-01-01T00:00:05Z');
    const verifier = new ProbeVerifier({ now: () => now });
    const young = [pod('web-abc', { startedAt: '2026-01-01T00:00:00Z' })];
    const first = await verifier.verify(input('/ok', young));
    expect(first).toMatchObject({ state: 'Pending', message: expect.stringContaining('less than 10 s') });
    expect(verifier.get(probeKey('uid-web', 'web', '/ok', 'http'))).toBe(undefined);
    now += 5_000;
    expect((await verifier.verify(input('/ok', young))).state).toBe('Verified');
  });

  test('verdicts expire after the TTL', async () => {
    let now = 1000;
    const verifier = new ProbeVerifier({ ttlMs: 60_000, now: () => now });
    await verifier.verify(input('/missing', [pod('web-abc')]));
    const key = probeKey('uid-web', 'web', '/missing', 'http');
    now += 60_000;
    expect(verifier.get(key)?.state).toBe('Unverified');
    now += 1;
    expect(verifier.get(key)).toBe(undefined);
    expect(verifier.size).toBe(0);
  });

  test('at most maxEntries verdicts, the oldest dropped first', async () => {
    const verifier = new ProbeVerifier({ maxEntries: 2 });
    for (const path of ['/ok', '/missing', '/no-content'])
      await verifier.verify(input(path, [pod('web-abc')]));
    expect(verifier.size).toBe(2);
    expect(verifier.get(probeKey('uid-web', 'web', '/ok', 'http'))).toBe(undefined);
    expect(verifier.get(probeKey('uid-web', 'web', '/missing', 'http'))?.state).toBe('Unverified');
    expect(verifier.get(probeKey('uid-web', 'web', '/no-content', 'http'))?.state).toBe('Verified');
  });

  test('reading a verdict does not keep it longer: the one stored longest ago goes first', async () => {
    const verifier = new ProbeVerifier({ maxEntries: 2 });
    await verifier.verify(input('/ok', [pod('web-abc')]));
    await verifier.verify(input('/missing', [pod('web-abc')]));
    expect(verifier.get(probeKey('uid-web', 'web', '/ok', 'http'))?.state).toBe('Verified');
    await verifier.verify(input('/no-content', [pod('web-abc')]));
    expect(verifier.get(probeKey('uid-web', 'web', '/ok', 'http'))).toBe(undefined);
    expect(verifier.get(probeKey('uid-web', 'web', '/missing', 'http'))?.state).toBe('Unverified');
  });

  test("verdictsFor: one Deployment's unexpired verdicts, what an eviction dropped not among them", async () => {
    const verifier = new ProbeVerifier({ maxEntries: 2 });
    for (const path of ['/ok', '/missing', '/no-content'])
      await verifier.verify(input(path, [pod('web-abc')]));
    expect(
      verifier.verdictsFor('uid-web').map(([container, path, port, v]) => [container, path, port, v.state]),
    ).toEqual([
      ['web', '/missing', 'http', 'Unverified'],
      ['web', '/no-content', 'http', 'Verified'],
    ]);
    expect(verifier.verdictsFor('uid-other')).toEqual([]);
  });

  test('one check per key at a time: concurrent verifies share it, a later one checks again', async () => {
    const pending: { path: string; resolve: (answer: ProbeAnswer) => void }[] = [];
    const verifier = new ProbeVerifier({
      check: (t) => new Promise((resolve) => pending.push({ path: t.path, resolve })),
    });
    const first = verifier.verify(input('/ok', [pod('web-abc')]));
    const second = verifier.verify(input('/ok', [pod('web-abc')]));
    const other = verifier.verify(input('/other', [pod('web-abc')]));
    await Promise.resolve();
    expect(pending.map((p) => p.path)).toEqual(['/ok', '/other']);
    expect(second).toBe(first);
    for (const p of pending)
      p.resolve({ ok: true, url: `http://127.0.0.1${p.path}`, outcome: 'answered 200' });
    expect(await first).toEqual(await second);
    await other;
    const third = verifier.verify(input('/ok', [pod('web-abc')]));
    await Promise.resolve();
    expect(pending.map((p) => p.path)).toEqual(['/ok', '/other', '/ok']);
    pending[2]?.resolve({ ok: false, url: 'http://127.0.0.1/ok', outcome: 'answered 500' });
    expect((await third).state).toBe('Unverified');
    expect(verifier.get(probeKey('uid-web', 'web', '/ok', 'http'))?.state).toBe('Unverified');
  });

  test('an aborted verify keeps nothing, and the next one checks again', async () => {
    const verifier = new ProbeVerifier();
    const controller = new AbortController();
    const pending = verifier.verify({ ...input('/slow', [pod('web-abc')]), signal: controller.signal });
    controller.abort(new Error('stopping'));
    await expect(pending).rejects.toThrow('stopping');
    expect(verifier.get(probeKey('uid-web', 'web', '/slow', 'http'))).toBe(undefined);
    expect((await verifier.verify(input('/ok', [pod('web-abc')]))).state).toBe('Verified');
  });
});
