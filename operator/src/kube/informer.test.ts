import { PassThrough } from 'node:stream';
import {
  AppsV1Api,
  KubeConfig,
  type V1Deployment,
  type V1Namespace,
  type V1Pod,
} from '@kubernetes/client-node';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  deploymentCacheTransform,
  enqueueObject,
  Informer,
  type InformerOptions,
  LAST_APPLIED_ANNOTATION,
  namespaceCacheTransform,
  objectKey,
  podCacheTransform,
  quietTolerantWatch,
  serviceCacheTransform,
  shareUnchangedParts,
  splitKey,
} from './informer.ts';

const server = 'https://kube.test';
const path = '/apis/apps/v1/deployments';
const json = { 'content-type': 'application/json' };

function kubeConfig(): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'test', server }],
    users: [{ name: 'test' }],
    contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
    currentContext: 'test',
  });
  return config;
}

function deployment(namespace: string, name: string, resourceVersion: string): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      namespace,
      name,
      resourceVersion,
      managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: {} }],
    },
    spec: { selector: {}, template: {} },
  };
}

type Query = Record<string, string>;

/** The apiserver's list response for the next list request. */
function replyToList(resourceVersion: string, items: V1Deployment[]): void {
  nock(server)
    .get(path)
    .query((query: Query) => query.watch === undefined)
    .reply(
      200,
      { apiVersion: 'apps/v1', kind: 'DeploymentList', metadata: { resourceVersion }, items },
      json,
    );
}

interface WatchStream {
  /** Query of the watch request, once it arrived. */
  query: Query | undefined;
  send(type: string, object: unknown): void;
  end(): void;
}

/** The apiserver's streaming response for the next watch request; stays open until end(). */
function replyToWatch(): WatchStream {
  const body = new PassThrough();
  const stream: WatchStream = {
    query: undefined,
    send: (type, object) => body.write(`${JSON.stringify({ type, object })}\n`),
    end: () => body.end(),
  };
  streams.push(stream);
  nock(server)
    .get(path)
    .query((query: Query) => {
      if (query.watch !== 'true') return false;
      stream.query = query;
      return true;
    })
    .reply(200, () => body, json);
  return stream;
}

/** One page of a paginated list, for the list request `matches` accepts. */
function replyToPage(
  matches: (query: Query) => boolean,
  page: { resourceVersion: string; continue?: string; items: V1Deployment[] },
): void {
  const { items, ...metadata } = page;
  nock(server).get(path).query(matches).reply(200, { kind: 'DeploymentList', metadata, items }, json);
}

function replyToWatchWithStatus(status: number): void {
  nock(server)
    .get(path)
    .query((query: Query) => query.watch === 'true')
    .reply(status, { kind: 'Status', code: status }, json);
}

const streams: WatchStream[] = [];
const informers: Informer<V1Deployment>[] = [];

function startInformer(
  options: Partial<InformerOptions<V1Deployment>> = {},
  setup: (informer: Informer<V1Deployment>) => void = () => {},
): {
  informer: Informer<V1Deployment>;
  events: string[];
} {
  const config = kubeConfig();
  const apps = config.makeApiClient(AppsV1Api);
  const informer = new Informer<V1Deployment>({
    name: 'deployments',
    kubeConfig: config,
    path,
    list: (listOptions) => apps.listDeploymentForAllNamespaces(listOptions),
    backoff: { initialMs: 1, maxMs: 5 },
    ...options,
  });
  const events: string[] = [];
  informer.addHandlers({
    onAdd: (object) => events.push(`add ${objectKey(object)}@${object.metadata?.resourceVersion}`),
    onUpdate: (object, old) =>
      events.push(
        `update ${objectKey(object)}@${old.metadata?.resourceVersion}->${object.metadata?.resourceVersion}`,
      ),
    onDelete: (object) => events.push(`delete ${objectKey(object)}`),
  });
  informers.push(informer);
  setup(informer);
  informer.start();
  return { informer, events };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!condition()) throw new Error(`never happened: ${what}`);
}

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(async () => {
  await Promise.all(informers.splice(0).map((informer) => informer.stop()));
  for (const stream of streams.splice(0)) stream.end();
  nock.cleanAll();
});
afterAll(() => {
  nock.enableNetConnect();
});

describe('Informer', () => {
  it('lists, then watches from the list resourceVersion, caching objects without managedFields', async () => {
    replyToList('100', [deployment('a', 'one', '90'), deployment('a', 'two', '91')]);
    const watch = replyToWatch();
    const { informer, events } = startInformer();
    expect(await informer.waitForSync()).toBe(true);
    await until(() => watch.query !== undefined, 'watch request');
    expect(watch.query).toMatchObject({ resourceVersion: '100', allowWatchBookmarks: 'true' });

    watch.send('ADDED', deployment('b', 'three', '101'));
    watch.send('MODIFIED', deployment('a', 'one', '102'));
    watch.send('DELETED', deployment('a', 'two', '103'));
    watch.send('BOOKMARK', { metadata: { resourceVersion: '104' } });
    await until(() => events.length === 5, 'five events');

    expect(events).toEqual([
      'add a/one@90',
      'add a/two@91',
      'add b/three@101',
      'update a/one@90->102',
      'delete a/two',
    ]);
    expect([...informer.keys()].sort()).toEqual(['a/one', 'b/three']);
    expect(informer.get('a/one')?.metadata?.resourceVersion).toBe('102');
    for (const object of informer.list()) expect(object.metadata?.managedFields).toBeUndefined();
  });

  it('restarts a failed watch with backoff from the last resourceVersion, without relisting', async () => {
    replyToList('100', [deployment('a', 'one', '90')]);
    const first = replyToWatch();
    const { informer, events } = startInformer();
    await until(() => first.query !== undefined, 'first watch');
    first.send('MODIFIED', deployment('a', 'one', '105'));
    await until(() => events.length === 2, 'update');
    replyToWatchWithStatus(500);
    const third = replyToWatch();
    first.end();
    await until(() => third.query !== undefined, 'watch after the error');
    expect(third.query?.resourceVersion).toBe('105');
    expect(informer.hasSynced()).toBe(true);
    expect(nock.pendingMocks()).toEqual([]);
  });

  it('retries a failing list with backoff until it succeeds', async () => {
    nock(server).get(path).query(true).reply(503, { kind: 'Status', code: 503 }, json);
    replyToList('7', [deployment('a', 'one', '6')]);
    const watch = replyToWatch();
    const { informer } = startInformer();
    expect(informer.hasSynced()).toBe(false);
    await until(() => watch.query !== undefined, 'watch after the list succeeded');
    expect(informer.hasSynced()).toBe(true);
    expect(watch.query?.resourceVersion).toBe('7');
  });

  it('relists on 410 Gone (as an ERROR event or as the response status) and reports the drift', async () => {
    replyToList('100', [deployment('a', 'one', '90'), deployment('a', 'two', '91')]);
    const first = replyToWatch();
    const { events } = startInformer();
    await until(() => first.query !== undefined, 'first watch');

    replyToList('200', [deployment('a', 'one', '150'), deployment('a', 'three', '160')]);
    replyToWatchWithStatus(410);
    replyToList('300', [deployment('a', 'one', '150'), deployment('a', 'three', '160')]);
    const last = replyToWatch();
    first.send('ERROR', { kind: 'Status', code: 410, reason: 'Expired' });

    await until(() => last.query !== undefined, 'watch after two relists');
    expect(last.query?.resourceVersion).toBe('300');
    expect(events).toEqual([
      'add a/one@90',
      'add a/two@91',
      'update a/one@90->150',
      'add a/three@160',
      'delete a/two',
    ]);
  });

  it('lists again after the watchdog ends a watch that stayed silent (not even a bookmark) too long', async () => {
    replyToList('100', [deployment('a', 'one', '90')]);
    const silent = replyToWatch();
    replyToList('200', [deployment('a', 'one', '190')]);
    const next = replyToWatch();
    const ends: string[] = [];
    const { events } = startInformer({ watchdogMs: 50, onWatchEnd: (reason) => ends.push(reason) });
    await until(() => next.query !== undefined, 'second watch');
    expect(silent.query).toBeDefined();
    expect(next.query?.resourceVersion).toBe('200');
    expect(ends).toEqual(['watchdog']);
    expect(events).toEqual(['add a/one@90', 'update a/one@90->190']);
  });

  it('resumes a watch the server closed from the last resourceVersion, without listing', async () => {
    replyToList('100', [deployment('a', 'one', '90')]);
    const first = replyToWatch();
    const ends: string[] = [];
    startInformer({ onWatchEnd: (reason) => ends.push(reason) });
    await until(() => first.query !== undefined, 'first watch');
    first.send('BOOKMARK', { metadata: { resourceVersion: '150' } });
    await new Promise((resolve) => setTimeout(resolve, 1_100)); // a watch that ends at once backs off
    const second = replyToWatch();
    first.end();
    await until(() => second.query !== undefined, 'second watch');
    expect(second.query?.resourceVersion).toBe('150');
    expect(ends).toEqual(['closed']);
    expect(nock.pendingMocks()).toEqual([]);
  });

  it('asks the server to end each watch after 5-10 minutes, with bookmarks', async () => {
    replyToList('100', []);
    const watch = replyToWatch();
    startInformer({ random: () => 0.5 });
    await until(() => watch.query !== undefined, 'watch');
    expect(watch.query).toMatchObject({ allowWatchBookmarks: 'true', timeoutSeconds: '450' });
  });

  it("sets client-node's inactivity timeout beyond the watchdog, so the watchdog decides", () => {
    const watch = quietTolerantWatch(kubeConfig(), 300_000) as unknown as { requestTimeoutMs: number };
    expect(watch.requestTimeoutMs).toBeGreaterThan(300_000);
  });

  it('lists in pages, following continue tokens', async () => {
    const pages: Query[] = [];
    replyToPage((q) => q.watch === undefined && q.continue === undefined && pages.push(q) > 0, {
      resourceVersion: '100',
      continue: 'page-2',
      items: [deployment('a', 'one', '90')],
    });
    replyToPage((q) => q.continue === 'page-2' && pages.push(q) > 0, {
      resourceVersion: '100',
      items: [deployment('a', 'two', '91')],
    });
    const watch = replyToWatch();
    const { informer } = startInformer({ pageSize: 1 });
    await until(() => watch.query !== undefined, 'watch');
    expect(pages.map((q) => [q.limit, q.continue])).toEqual([
      ['1', undefined],
      ['1', 'page-2'],
    ]);
    expect([...informer.keys()].sort()).toEqual(['a/one', 'a/two']);
    expect(watch.query?.resourceVersion).toBe('100');
  });

  it('lists in full when a continue token expired (410), as client-go does', async () => {
    replyToPage((q) => q.limit === '1' && q.continue === undefined, {
      resourceVersion: '100',
      continue: 'page-2',
      items: [deployment('a', 'one', '90')],
    });
    nock(server)
      .get(path)
      .query((query: Query) => query.continue === 'page-2')
      .reply(410, { kind: 'Status', code: 410, reason: 'Expired' }, json);
    replyToPage((q) => q.watch === undefined && q.limit === undefined, {
      resourceVersion: '300',
      items: [deployment('a', 'two', '250'), deployment('a', 'three', '260')],
    });
    const watch = replyToWatch();
    const { informer, events } = startInformer({ pageSize: 1 });
    await until(() => watch.query !== undefined, 'watch');
    expect(watch.query?.resourceVersion).toBe('300');
    expect([...informer.keys()].sort()).toEqual(['a/three', 'a/two']);
    expect(events).toEqual(['add a/one@90', 'add a/two@250', 'add a/three@260', 'delete a/one']);
  });

  it('answers byIndex from an index kept through adds, updates and deletes', async () => {
    const labelled = (name: string, team: string, rv: string) => {
      const d = deployment('a', name, rv);
      if (d.metadata) d.metadata.labels = { team };
      return d;
    };
    replyToList('100', [labelled('one', 'red', '90'), labelled('two', 'red', '91')]);
    const watch = replyToWatch();
    const { informer, events } = startInformer({}, (i) =>
      i.addIndex('team', (d) => (d.metadata?.labels?.team ? [d.metadata.labels.team] : [])),
    );
    await until(() => watch.query !== undefined, 'watch');
    const names = (team: string) =>
      informer
        .byIndex('team', team)
        .map((d) => d.metadata?.name)
        .sort();
    expect(names('red')).toEqual(['one', 'two']);
    watch.send('MODIFIED', labelled('two', 'blue', '101'));
    watch.send('DELETED', labelled('one', 'red', '102'));
    watch.send('ADDED', labelled('three', 'blue', '103'));
    await until(() => events.length === 5, 'three more events');
    expect(names('red')).toEqual([]);
    expect(names('blue')).toEqual(['three', 'two']);
    expect(() => informer.addIndex('late', () => [])).toThrow('before start');
    expect(() => informer.byIndex('none', 'x')).toThrow('has no index none');
  });

  it('keeps running when a handler throws', async () => {
    replyToList('100', [deployment('a', 'one', '90')]);
    const watch = replyToWatch();
    const { informer, events } = startInformer();
    informer.addHandlers({
      onAdd: () => {
        throw new Error('handler bug');
      },
    });
    await until(() => watch.query !== undefined, 'watch');
    watch.send('ADDED', deployment('a', 'two', '101'));
    await until(() => events.length === 2, 'second add');
    expect([...informer.keys()].sort()).toEqual(['a/one', 'a/two']);
  });

  it('stop ends the watch and makes no further requests', async () => {
    replyToList('100', []);
    const watch = replyToWatch();
    const { informer } = startInformer({ watchdogMs: 10 });
    await until(() => watch.query !== undefined, 'watch');
    await informer.stop();
    replyToList('200', []);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(nock.pendingMocks()).toHaveLength(1);
    expect(await informer.waitForSync()).toBe(true);
  });

  it('stop during a backoff wait ends it at once, without an error', async () => {
    nock(server).get(path).query(true).reply(503, { kind: 'Status', code: 503 }, json);
    let backingOff = false;
    const { informer } = startInformer({
      backoff: { initialMs: 60_000, maxMs: 60_000 },
      random: () => {
        backingOff = true; // drawn for the delay the backoff then waits
        return 0;
      },
    });
    await until(() => backingOff, 'backoff after the failed list');
    const started = Date.now();
    await informer.stop();
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('waitForSync resolves false when the informer stops before syncing', async () => {
    nock(server).get(path).query(true).times(100).reply(503, {}, json);
    const { informer } = startInformer({ backoff: { initialMs: 1_000, maxMs: 1_000 } });
    const waiting = informer.waitForSync();
    await informer.stop();
    expect(await waiting).toBe(false);
  });
});

describe('keys and handlers', () => {
  it('keys are namespace/name, or name for cluster-scoped objects', () => {
    expect(objectKey(deployment('ns', 'web', '1'))).toBe('ns/web');
    expect(objectKey({ metadata: { name: 'policy' } })).toBe('policy');
    expect(splitKey('ns/web')).toEqual({ namespace: 'ns', name: 'web' });
    expect(splitKey('policy')).toEqual({ namespace: undefined, name: 'policy' });
  });

  it('enqueueObject enqueues the object key', () => {
    const keys: string[] = [];
    const own = enqueueObject<V1Deployment>((key) => keys.push(key));
    own.onUpdate?.(deployment('ns', 'web', '2'), deployment('ns', 'web', '1'));
    expect(keys).toEqual(['ns/web']);
  });
});

describe('structural sharing between versions (shareUnchangedParts)', () => {
  const version = (resourceVersion: string, replicas: number, image = 'web:1'): V1Deployment => ({
    metadata: {
      name: 'web',
      namespace: 'shop',
      uid: 'u1',
      resourceVersion,
      labels: { app: 'web' },
      annotations: { note: 'x' },
      managedFields: [{ manager: 'graceful-shutdown-operator', operation: 'Apply' }],
    },
    spec: { selector: {}, template: { spec: { containers: [{ name: 'web', image }] } } },
    status: { replicas },
  });

  it('a status update takes the previous spec, labels, annotations and managedFields objects', () => {
    const before = version('1', 1);
    const after = shareUnchangedParts(version('2', 2), before);
    expect(after.spec).toBe(before.spec);
    expect(after.metadata?.labels).toBe(before.metadata?.labels);
    expect(after.metadata?.annotations).toBe(before.metadata?.annotations);
    expect(after.metadata?.managedFields).toBe(before.metadata?.managedFields);
    expect(after.status).toEqual({ replicas: 2 });
    expect(after.metadata?.resourceVersion).toBe('2');
  });

  it('a changed part stays the new object; another object under the name shares nothing', () => {
    const before = version('1', 1);
    const changed = shareUnchangedParts(version('2', 1, 'web:2'), before);
    expect(changed.spec).not.toBe(before.spec);
    expect(changed.spec?.template.spec?.containers[0]?.image).toBe('web:2');
    expect(changed.metadata?.labels).toBe(before.metadata?.labels);
    const recreated = version('3', 1);
    recreated.metadata = { ...recreated.metadata, uid: 'u2' };
    const other = shareUnchangedParts(recreated, before);
    expect(other.spec).not.toBe(before.spec);
    expect(other.metadata?.labels).not.toBe(before.metadata?.labels);
  });

  it('the informer caches a watched update with the parts it shares with the cached version', async () => {
    replyToList('100', [deployment('a', 'one', '90')]);
    const watch = replyToWatch();
    const { informer, events } = startInformer({ share: shareUnchangedParts });
    expect(await informer.waitForSync()).toBe(true);
    await until(() => watch.query !== undefined, 'watch request');
    // Listed objects are client-node's model classes, watched ones plain JSON: not deep-equal.
    watch.send('MODIFIED', deployment('a', 'one', '101'));
    await until(() => events.includes('update a/one@90->101'), 'the first update');
    const watched = informer.get('a/one');
    watch.send('MODIFIED', { ...deployment('a', 'one', '102'), status: { replicas: 1 } });
    await until(() => events.includes('update a/one@101->102'), 'the status update');
    expect(informer.get('a/one')?.spec).toBe(watched?.spec);
    watch.send('MODIFIED', {
      ...deployment('a', 'one', '103'),
      spec: { selector: {}, template: { metadata: {} } },
    });
    await until(() => events.includes('update a/one@102->103'), 'the spec update');
    expect(informer.get('a/one')?.spec).not.toBe(watched?.spec);
    expect(informer.get('a/one')?.spec).toEqual({ selector: {}, template: { metadata: {} } });
  });
});

describe('cache transforms', () => {
  it("Deployments keep the operator's managedFields entry and lose kubectl's last-applied copy", () => {
    const transform = deploymentCacheTransform<V1Deployment>('graceful-shutdown-operator');
    const kept = transform({
      metadata: {
        name: 'web',
        annotations: { [LAST_APPLIED_ANNOTATION]: '{"big":"copy"}', 'gracefulshutdown.dev/applied': '{}' },
        managedFields: [
          { manager: 'kubectl', operation: 'Apply' },
          { manager: 'graceful-shutdown-operator', operation: 'Apply' },
        ],
      },
    });
    expect(kept.metadata?.annotations).toEqual({ 'gracefulshutdown.dev/applied': '{}' });
    expect(kept.metadata?.managedFields?.map((e) => e.manager)).toEqual(['graceful-shutdown-operator']);
    // Other managers: only what they own of the fields the operator writes, without timestamps.
    const podSpec = (spec: object) => ({ 'f:spec': { 'f:template': { 'f:spec': spec } } });
    const withOthers = transform({
      metadata: {
        name: 'web',
        managedFields: [
          {
            manager: 'argocd-controller',
            operation: 'Apply',
            time: new Date('2026-12-07T10:00:00Z'),
            fieldsType: 'FieldsV1',
            fieldsV1: {
              'f:metadata': { 'f:labels': { 'f:app': {} } },
              ...podSpec({
                'f:terminationGracePeriodSeconds': {},
                'f:containers': {
                  'k:{"name":"web"}': {
                    '.': {},
                    'f:image': {},
                    'f:readinessProbe': { 'f:httpGet': { 'f:path': {} } },
                    'f:lifecycle': { 'f:preStop': { 'f:sleep': {} } },
                  },
                  'k:{"name":"proxy"}': { '.': {}, 'f:image': {} },
                },
              }),
            },
          },
          {
            manager: 'kube-controller-manager',
            operation: 'Update',
            fieldsType: 'FieldsV1',
            fieldsV1: podSpec({ 'f:terminationGracePeriodSeconds': {} }),
            subresource: 'status',
          },
          {
            manager: 'kubectl-scale',
            operation: 'Update',
            fieldsType: 'FieldsV1',
            fieldsV1: { 'f:spec': { 'f:replicas': {} } },
          },
          { manager: 'graceful-shutdown-operator', operation: 'Apply' },
        ],
      },
    });
    expect(withOthers.metadata?.managedFields).toEqual([
      {
        manager: 'argocd-controller',
        operation: 'Apply',
        fieldsType: 'FieldsV1',
        fieldsV1: podSpec({
          'f:terminationGracePeriodSeconds': {},
          'f:containers': {
            'k:{"name":"web"}': { 'f:readinessProbe': {}, 'f:lifecycle': { 'f:preStop': {} } },
          },
        }),
      },
      { manager: 'graceful-shutdown-operator', operation: 'Apply' },
    ]);
    // No entry of the operator's: an empty list, which says "owns nothing"; absent would let the
    // record annotation claim fields.
    const none = transform({
      metadata: { name: 'api', managedFields: [{ manager: 'kubectl', operation: 'Apply' }] },
    });
    expect(none.metadata).toEqual({ name: 'api', managedFields: [] });
  });

  it('Namespaces keep name, uid, resourceVersion and labels only', () => {
    const kept = namespaceCacheTransform<V1Namespace>({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: 'shop',
        uid: 'u',
        resourceVersion: '7',
        labels: { team: 'shop' },
        annotations: { big: 'x' },
        managedFields: [{ manager: 'kubectl' }],
      },
      spec: { finalizers: ['kubernetes'] },
      status: { phase: 'Active' },
    });
    expect(kept).toEqual({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'shop', uid: 'u', resourceVersion: '7', labels: { team: 'shop' } },
    });
  });

  it('Services keep their selector and, per port, name, number, targetPort, protocol and appProtocol', () => {
    const kept = serviceCacheTransform({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'api', namespace: 'shop', uid: 'u', resourceVersion: '3', annotations: { a: 'b' } },
      spec: {
        selector: { app: 'api' },
        clusterIP: '10.96.0.10',
        type: 'ClusterIP',
        ports: [
          { name: 'grpc', port: 80, targetPort: 9090, protocol: 'TCP', appProtocol: 'grpc' },
          { port: 53, nodePort: 30053, protocol: 'UDP' },
        ],
      },
      status: { loadBalancer: {} },
    });
    expect(kept).toEqual({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'api', namespace: 'shop', uid: 'u', resourceVersion: '3' },
      spec: {
        selector: { app: 'api' },
        ports: [
          { name: 'grpc', port: 80, targetPort: 9090, protocol: 'TCP', appProtocol: 'grpc' },
          { port: 53, protocol: 'UDP' },
        ],
      },
    });
  });

  it('Pods keep what verification, scraping and the shutdown observer read, and nothing else', () => {
    const pod: V1Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'web-5d8f9c7b6-abcde',
        namespace: 'shop',
        uid: 'u',
        resourceVersion: '9',
        labels: { app: 'web', 'pod-template-hash': '5d8f9c7b6' },
        annotations: { big: 'x' },
        ownerReferences: [
          { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d8f9c7b6', uid: 'r', controller: true },
        ],
        deletionTimestamp: new Date('2026-11-30T00:00:00Z'),
        deletionGracePeriodSeconds: 30,
        managedFields: [{ manager: 'kubelet' }],
      },
      spec: {
        containers: [
          {
            name: 'web',
            image: 'web:1',
            ports: [{ name: 'http', containerPort: 8080 }],
            env: [{ name: 'SECRET', value: 'x' }],
            resources: { limits: { cpu: '1' } },
          },
        ],
        initContainers: [
          { name: 'migrate', image: 'm:1' },
          { name: 'proxy', image: 'p:1', restartPolicy: 'Always', ports: [{ containerPort: 15001 }] },
        ],
        volumes: [{ name: 'v', emptyDir: {} }],
        nodeName: 'node-1',
      },
      status: {
        phase: 'Running',
        podIP: '10.0.0.7',
        conditions: [
          { type: 'Ready', status: 'True' },
          { type: 'PodScheduled', status: 'True' },
        ],
        containerStatuses: [
          {
            name: 'web',
            state: { terminated: { exitCode: 137, finishedAt: new Date('2026-11-30T00:00:00Z') } },
            image: 'web:1',
            imageID: 'sha',
            ready: false,
            restartCount: 3,
          },
        ],
      },
    };
    const kept = podCacheTransform(pod);
    expect(kept.metadata).toEqual({
      name: 'web-5d8f9c7b6-abcde',
      namespace: 'shop',
      uid: 'u',
      resourceVersion: '9',
      labels: { app: 'web', 'pod-template-hash': '5d8f9c7b6' },
      ownerReferences: pod.metadata?.ownerReferences,
      deletionTimestamp: pod.metadata?.deletionTimestamp,
      deletionGracePeriodSeconds: 30,
    });
    expect(kept.spec).toEqual({
      containers: [{ name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }] }],
      initContainers: [
        { name: 'proxy', image: 'p:1', restartPolicy: 'Always', ports: [{ containerPort: 15001 }] },
      ],
    });
    expect(kept.status).toEqual({
      phase: 'Running',
      podIP: '10.0.0.7',
      conditions: [{ type: 'Ready', status: 'True' }],
      containerStatuses: [{ name: 'web', state: pod.status?.containerStatuses?.[0]?.state }],
    });
  });
});

describe('filter', () => {
  it('caches only objects that pass; one that stops passing leaves the cache as if deleted', async () => {
    const labelled = (name: string, keep: string, rv: string) => {
      const d = deployment('a', name, rv);
      if (d.metadata) d.metadata.labels = { keep };
      return d;
    };
    replyToList('100', [labelled('one', 'yes', '90'), labelled('two', 'no', '91')]);
    const watch = replyToWatch();
    const { informer, events } = startInformer({ filter: (d) => d.metadata?.labels?.keep === 'yes' });
    await until(() => watch.query !== undefined, 'watch');
    expect([...informer.keys()]).toEqual(['a/one']);
    watch.send('MODIFIED', labelled('one', 'no', '101'));
    watch.send('MODIFIED', labelled('two', 'yes', '102'));
    await until(() => events.length === 3, 'two more events');
    expect(events).toEqual(['add a/one@90', 'delete a/one', 'add a/two@102']);
  });
});
