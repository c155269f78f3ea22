import type { ClientRequest } from 'node:http';
import { request } from 'node:https';
import { connect, type Socket } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { Histogram, Registry } from 'prom-client';
import { afterEach, describe, expect, test } from 'vitest';
import { waitFor } from '../../../test/cluster/wait.ts';
import { silentLogger } from '../log.ts';
import type { AdmissionDecision, AdmissionRequest } from './admission.ts';
import { type CertAndKey, createCA, issueServingCert } from './certificates.ts';
import {
  inThread,
  MAX_BODIES_IN_FLIGHT_BYTES,
  MAX_BODY_BYTES,
  MAX_CONNECTIONS,
  MUTATE_DEPLOYMENTS_PATH,
  WebhookServer,
} from './server.ts';

const HOUR = 3_600_000;
let ca: CertAndKey;

async function serving(): Promise<CertAndKey> {
  ca ??= await createCA({
    commonName: 'test-ca',
    notBefore: new Date(Date.now() - 60_000),
    validityMs: HOUR,
  });
  return issueServingCert({
    ca,
    dnsNames: ['127.0.0.1'],
    notBefore: new Date(Date.now() - 60_000),
    validityMs: HOUR,
  });
}

const servers: WebhookServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function histogram() {
  const registry = new Registry();
  const duration = new Histogram({
    name: 'admission_duration_seconds',
    help: 'test',
    labelNames: ['operation', 'outcome'] as const,
    registers: [registry],
  });
  return { registry, duration };
}

async function start(options: {
  admit?: (r: AdmissionRequest) => AdmissionDecision;
  ready?: () => boolean;
  duration?: Histogram<'operation' | 'outcome'>;
}): Promise<WebhookServer> {
  const server = new WebhookServer({
    host: '127.0.0.1',
    port: 0,
    logger: silentLogger(),
    decide: inThread(
      options.admit ?? (() => ({ outcome: 'Skipped', patch: [], warnings: [], message: 'test' })),
      options.ready ?? (() => true),
    ),
    ...(options.duration ? { duration: options.duration } : {}),
  });
  servers.push(server);
  await server.setCertificate(await serving());
  return server;
}

function post(
  port: number,
  body: string,
  path = MUTATE_DEPLOYMENTS_PATH,
  method = 'POST',
): Promise<{ status: number; body: string; peer: PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method,
        ca: ca.cert,
        agent: false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            peer: (res.socket as import('node:tls').TLSSocket).getPeerCertificate(),
          }),
        );
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

/** A POST whose body the caller writes (chunked); `onStatus` gets the answer's status. */
function openRequest(port: number, onStatus: (status: number) => void): ClientRequest {
  const req = request(
    { host: '127.0.0.1', port, path: MUTATE_DEPLOYMENTS_PATH, method: 'POST', ca: ca.cert, agent: false },
    (res) => {
      onStatus(res.statusCode ?? 0);
      res.resume();
    },
  );
  return req;
}

const review = (uid = 'abc') =>
  JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      operation: 'CREATE',
      namespace: 'shop',
      name: 'web',
      kind: { group: 'apps', kind: 'Deployment' },
    },
  });

describe('WebhookServer', () => {
  test('answers an AdmissionReview over TLS: allowed, the JSON patch base64-encoded, the warnings', async () => {
    const patch = [{ op: 'add' as const, path: '/metadata/labels', value: { a: 'b' } }];
    const { registry, duration } = histogram();
    const server = await start({
      admit: (r) => ({ outcome: 'Mutated', patch, warnings: [`hello ${r.name}`], message: 'm' }),
      duration,
    });
    const answer = await post(server.port, review('uid-1'));
    expect(answer.status).toBe(200);
    const response = (JSON.parse(answer.body) as { response: Record<string, unknown> }).response;
    expect(response).toMatchObject({
      uid: 'uid-1',
      allowed: true,
      patchType: 'JSONPatch',
      warnings: ['hello web'],
    });
    expect(JSON.parse(Buffer.from(String(response.patch), 'base64').toString('utf8'))).toEqual(patch);
    expect(await registry.metrics()).toContain(
      'admission_duration_seconds_count{operation="CREATE",outcome="Mutated"} 1',
    );
  });

  test('fails open: caches not synced, or the decision throws, admit the object unchanged', async () => {
    const { registry, duration } = histogram();
    let called = 0;
    const notSynced = await start({
      ready: () => false,
      admit: () => {
        called++;
        throw new Error('never');
      },
      duration,
    });
    const a = JSON.parse((await post(notSynced.port, review())).body) as {
      response: Record<string, unknown>;
    };
    expect(a.response).toEqual({ uid: 'abc', allowed: true });
    expect(called).toBe(0);
    const broken = await start({
      admit: () => {
        throw new Error('a bug');
      },
      duration,
    });
    const b = JSON.parse((await post(broken.port, review())).body) as { response: Record<string, unknown> };
    expect(b.response).toEqual({ uid: 'abc', allowed: true });
    const text = await registry.metrics();
    expect(text).toContain('admission_duration_seconds_count{operation="CREATE",outcome="NotSynced"} 1');
    expect(text).toContain('admission_duration_seconds_count{operation="CREATE",outcome="Error"} 1');
  });

  test('another path or method is 404, a body that is no AdmissionReview 400', async () => {
    const server = await start({});
    expect((await post(server.port, '', '/metrics', 'GET')).status).toBe(404);
    expect((await post(server.port, 'not json')).status).toBe(400);
    expect((await post(server.port, JSON.stringify({ kind: 'AdmissionReview', request: {} }))).status).toBe(
      400,
    );
  });

  test("the metric's operation label is bounded whatever a client sends", async () => {
    const { registry, duration } = histogram();
    const server = await start({ duration });
    for (const operation of ['DELETE', 'x'.repeat(100)])
      await post(server.port, JSON.stringify({ kind: 'AdmissionReview', request: { uid: 'u', operation } }));
    expect(await registry.metrics()).toContain(
      'admission_duration_seconds_count{operation="other",outcome="Skipped"} 2',
    );
  });

  test('a body past MAX_BODY_BYTES is refused with 413, declared or streamed, and the server goes on', async () => {
    const { registry, duration } = histogram();
    let admitted = 0;
    const server = await start({
      duration,
      admit: () => {
        admitted++;
        return { outcome: 'Skipped', patch: [], warnings: [], message: 'test' };
      },
    });
    // Declared: refused before a byte of the body is read.
    const declared = await post(server.port, 'x'.repeat(MAX_BODY_BYTES + 1));
    expect(declared.status).toBe(413);
    // Streamed without a length (chunked): refused once it passes the limit.
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = openRequest(server.port, (status) => resolve(status));
      req.once('error', reject);
      const chunk = 'x'.repeat(256 * 1024);
      for (let sent = 0; sent <= MAX_BODY_BYTES; sent += chunk.length) req.write(chunk);
    });
    expect(streamed).toBe(413);
    expect(admitted).toBe(0);
    expect(server.bufferedBytes).toBe(0);
    expect((await post(server.port, review())).status).toBe(200);
    expect(await registry.metrics()).toContain(
      'admission_duration_seconds_count{operation="other",outcome="TooLarge"} 2',
    );
  });

  test('bodies held at once are bounded: the request past the budget gets 503, the others are served', async () => {
    const server = await start({});
    // Each slow client sends most of a maximum-size body and waits.
    const part = 'x'.repeat(Math.floor(MAX_BODY_BYTES * 0.9));
    const slow: { req: ClientRequest; status: Promise<number> }[] = [];
    const fits = Math.floor(MAX_BODIES_IN_FLIGHT_BYTES / part.length);
    for (let i = 0; i <= fits; i++) {
      let resolveStatus: (status: number) => void = () => {};
      const status = new Promise<number>((resolve) => {
        resolveStatus = resolve;
      });
      const req = openRequest(server.port, (s) => resolveStatus(s));
      req.on('error', () => resolveStatus(-1));
      slow.push({ req, status });
      await new Promise<void>((resolve) => req.write(part, () => resolve()));
    }
    // Together they pass the budget: the one whose bytes cross it is refused at once (whichever
    // arrived last), the others wait for the rest of their bodies.
    const first = await Promise.race(slow.map((s, i) => s.status.then((status) => ({ i, status }))));
    expect(first.status).toBe(503);
    expect(server.bufferedBytes).toBeLessThanOrEqual(MAX_BODIES_IN_FLIGHT_BYTES);
    expect(server.bufferedBytes).toBeGreaterThan(0);
    // A small review still gets through while the others hold their share.
    expect((await post(server.port, review())).status).toBe(200);
    for (const { req } of slow) req.destroy();
    await Promise.all(slow.map((s) => s.status));
    await waitFor('the refused and dropped bodies released', async () => server.bufferedBytes === 0, {
      timeoutMs: 5_000,
      intervalMs: 20,
    });
  });

  test('connections past MAX_CONNECTIONS are closed at once and counted (TooManyConnections)', async () => {
    const { registry, duration } = histogram();
    const server = await start({ duration });
    const sockets: Socket[] = [];
    const closed: Promise<void>[] = [];
    for (let i = 0; i < MAX_CONNECTIONS + 5; i++) {
      const socket = connect(server.port, '127.0.0.1');
      socket.on('error', () => {});
      closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
      sockets.push(socket);
    }
    await waitFor(
      'the extra connections dropped',
      async () =>
        (await registry.metrics()).includes(
          'admission_duration_seconds_count{operation="other",outcome="TooManyConnections"} 5',
        ),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    for (const socket of sockets) socket.destroy();
    await Promise.all(closed);
    // Once they are gone, a request is served again.
    expect((await post(server.port, review())).status).toBe(200);
  });

  test('a new certificate is served to new connections without a restart', async () => {
    const server = await start({});
    const before = (await post(server.port, review())).peer.serialNumber;
    await server.setCertificate(await serving());
    const after = (await post(server.port, review())).peer.serialNumber;
    expect(after).not.toBe(before);
  });
});
