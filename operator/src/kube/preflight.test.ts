import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/cluster/processes.ts';
import { loadKubeConfig, StartupError } from './client.ts';
import { describeRequestError, preflight } from './preflight.ts';
import { jsonHeaders, testKubeConfig, testServer } from './testing.ts';

const crdPath = '/apis/gracefulshutdown.dev/v1alpha1/gracefulshutdownpolicies';

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
});

describe('preflight: one line a person can act on, or the server version', () => {
  const version = () =>
    nock(testServer)
      .get('/version')
      .reply(200, { major: '1', minor: '37', gitVersion: 'v1.37.2' }, jsonHeaders);
  const policies = (status = 200) =>
    nock(testServer)
      .get(crdPath)
      .query({ limit: 1 })
      .reply(
        status,
        status === 200
          ? { items: [] }
          : {
              kind: 'Status',
              message:
                status === 403
                  ? 'gracefulshutdownpolicies.gracefulshutdown.dev is forbidden: User "system:serviceaccount:x:y" cannot list resource'
                  : 'the server could not find the requested resource',
            },
        jsonHeaders,
      );
  const namespaces = (names: string[], status = 200) =>
    nock(testServer)
      .get('/api/v1/namespaces')
      .query({ fieldSelector: 'metadata.name=gso', limit: 1 })
      .reply(
        status,
        status === 200 ? { items: names.map((name) => ({ metadata: { name } })) } : { message: 'forbidden' },
        jsonHeaders,
      );

  it('passes with the version when the server answers, the CRD is there and the namespace exists', async () => {
    version();
    policies();
    namespaces(['gso']);
    await expect(preflight(testKubeConfig(), 'gso')).resolves.toMatchObject({ gitVersion: 'v1.37.2' });
  });

  it('names the CRD and the command that installs it', async () => {
    version();
    policies(404);
    await expect(preflight(testKubeConfig(), 'gso')).rejects.toThrow(
      new StartupError(
        'the GracefulShutdownPolicy CRD (gracefulshutdownpolicies.gracefulshutdown.dev/v1alpha1) is not installed on https://kube.test: kubectl apply --server-side -k config/crd',
      ),
    );
  });

  it('says an RBAC denial is one, with the apiserver own words', async () => {
    version();
    policies(403);
    await expect(preflight(testKubeConfig(), 'gso')).rejects.toThrow(
      /^the operator may not list gracefulshutdownpolicies.gracefulshutdown.dev on https:\/\/kube.test \(HTTP 403: .*cannot list resource\): apply its RBAC \(config\/rbac\)/,
    );
  });

  it('names a namespace that does not exist, and how to create it', async () => {
    version();
    policies();
    namespaces([]);
    await expect(preflight(testKubeConfig(), 'gso')).rejects.toThrow(
      'namespace gso does not exist on https://kube.test: create it (kubectl create namespace gso), or pass --namespace (POD_NAMESPACE)',
    );
  });

  it('names the URL and the cause when the server cannot be reached; 401 as refused credentials', async () => {
    // A real refused connection: a port nothing listens on.
    const closed = await freePort();
    nock.enableNetConnect('127.0.0.1');
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `https://127.0.0.1:${closed}` }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
      currentContext: 'c',
    });
    await expect(preflight(kc, 'gso')).rejects.toThrow(
      `cannot reach the Kubernetes API at https://127.0.0.1:${closed}: connect ECONNREFUSED 127.0.0.1:${closed}`,
    );
    nock.disableNetConnect();
    nock(testServer).get('/version').reply(401, { message: 'Unauthorized' }, jsonHeaders);
    await expect(preflight(testKubeConfig(), 'gso')).rejects.toThrow(
      'cannot reach the Kubernetes API at https://kube.test: HTTP 401: the credentials were refused (an expired token or certificate?)',
    );
  });

  it('describeRequestError: a TypeError with a cause code not in its message gets the code', () => {
    const error = new TypeError('fetch failed', {
      cause: Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }),
    });
    expect(describeRequestError(error)).toBe('DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate');
  });
});

describe('loadKubeConfig: the files kubectl would use, else a StartupError', () => {
  let dir: string;
  const file = (name: string, clusters: string[], user: string, current?: string) =>
    `apiVersion: v1
kind: Config
clusters: [${clusters.map((c) => `{ name: ${c}, cluster: { server: "https://${c}.test" } }`).join(', ')}]
users: [{ name: ${user}, user: { token: ${name} } }]
contexts: [${clusters.map((c) => `{ name: ${c}, context: { cluster: ${c}, user: ${user} } }`).join(', ')}]
${current ? `current-context: ${current}` : ''}
`;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gso-kubeconfig-'));
    await writeFile(join(dir, 'a'), file('a', ['one', 'two'], 'alice', 'two'));
    await writeFile(join(dir, 'b'), file('b', ['two', 'three'], 'bob', 'three'));
    await writeFile(join(dir, 'broken'), 'clusters: [');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const noHome = { env: {}, home: '/nonexistent-home', serviceAccountTokenPath: '/nonexistent-token' };

  it('merges a KUBECONFIG list as kubectl does: first definition and first current-context win, missing files skipped', () => {
    const kc = loadKubeConfig({
      ...noHome,
      env: { KUBECONFIG: [join(dir, 'a'), join(dir, 'missing'), join(dir, 'b')].join(':') },
    });
    expect(kc.getCurrentContext()).toBe('two');
    expect(kc.getCurrentCluster()?.server).toBe('https://two.test');
    expect(kc.getClusters().map((c) => c.name)).toEqual(['one', 'two', 'three']);
    expect(kc.getUsers().map((u) => u.name)).toEqual(['alice', 'bob']);
  });

  it('says what is missing: no configuration at all, a file named that does not exist, a file that is not YAML', () => {
    expect(() => loadKubeConfig(noHome)).toThrow(
      new StartupError(
        'no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account',
      ),
    );
    expect(() => loadKubeConfig({ ...noHome, path: join(dir, 'missing') })).toThrow(
      `kubeconfig ${join(dir, 'missing')}: no such file`,
    );
    expect(() =>
      loadKubeConfig({ ...noHome, env: { KUBECONFIG: `${join(dir, 'x')}:${join(dir, 'y')}` } }),
    ).toThrow(`no kubeconfig file exists of ${join(dir, 'x')}, ${join(dir, 'y')} (KUBECONFIG)`);
    expect(() => loadKubeConfig({ ...noHome, path: join(dir, 'broken') })).toThrow(
      new RegExp(`^kubeconfig ${join(dir, 'broken')}: `),
    );
  });
});
