import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CertAndKey, createCA, issueServingCert } from '../webhook/certificates.ts';
import { PooledKubeConfig } from './client.ts';

const DAY = 86_400_000;
let ca: CertAndKey;
let serving: CertAndKey;
let server: Server;
/** TLS handshakes the apiserver stand-in completed. */
let handshakes = 0;

beforeAll(async () => {
  ca = await createCA({ commonName: 'test-ca', notBefore: new Date(Date.now() - DAY), validityMs: 2 * DAY });
  serving = await issueServingCert({
    ca,
    dnsNames: ['127.0.0.1'],
    notBefore: new Date(Date.now() - DAY),
    validityMs: 2 * DAY,
  });
});

async function startServer(): Promise<string> {
  handshakes = 0;
  server = createServer({ cert: serving.cert, key: serving.key }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'NamespaceList', apiVersion: 'v1', metadata: {}, items: [] }));
  });
  server.on('secureConnection', () => handshakes++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  server.closeAllConnections();
  server.close();
  await once(server, 'close');
});

function configure<T extends KubeConfig>(config: T, url: string, caPem: string = ca.cert): T {
  config.loadFromOptions({
    clusters: [{ name: 'local', server: url, caData: Buffer.from(caPem).toString('base64') }],
    users: [{ name: 'user', token: 'secret' }],
    contexts: [{ name: 'local', cluster: 'local', user: 'user' }],
    currentContext: 'local',
  });
  return config;
}

async function calls(config: KubeConfig, n: number): Promise<void> {
  const core = config.makeApiClient(CoreV1Api);
  for (let i = 0; i < n; i++) await core.listNamespace();
}

describe('PooledKubeConfig', () => {
  // Sequential calls keep two connections: undici frees a socket a moment after client-node has
  // read the body, so the next call may find it still busy.
  it('reuses its TLS connections across API calls', async () => {
    const config = configure(new PooledKubeConfig(), await startServer());
    await calls(config, 10);
    expect(handshakes).toBeLessThanOrEqual(2);
  });

  it('negative control: a plain client-node KubeConfig opens a connection per call', async () => {
    const config = configure(new KubeConfig(), await startServer());
    await calls(config, 10);
    expect(handshakes).toBe(10);
  });

  it('opens a new pool when the TLS identity changes (a rotated CA)', async () => {
    const url = await startServer();
    const config = configure(new PooledKubeConfig(), url);
    await calls(config, 10);
    const before = handshakes;
    // The same CA again, as another PEM text (a trailing newline): another identity.
    configure(config, url, `${ca.cert}\n`);
    await calls(config, 10);
    expect(handshakes).toBeGreaterThan(before);
    expect(handshakes).toBeLessThanOrEqual(2 * before);
  });
});
