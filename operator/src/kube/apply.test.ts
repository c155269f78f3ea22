import { AppsV1Api } from '@kubernetes/client-node';
import nock from 'nock';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ApplyConfiguration } from '../policy/ownership.ts';
import { createDeploymentWriter, type DeploymentWriter } from './apply.ts';
import { holdReply, jsonHeaders, testKubeConfig, testServer } from './testing.ts';

const path = '/apis/apps/v1/namespaces/shop/deployments/web';
const config: ApplyConfiguration = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', namespace: 'shop' },
};
const updated = { metadata: { name: 'web', namespace: 'shop', generation: 2 } };

const writes: [string, (writer: DeploymentWriter, signal: AbortSignal) => Promise<unknown>, string][] = [
  ['apply', (writer, signal) => writer.apply(config, signal), 'application/apply-patch+yaml'],
  [
    'patch',
    (writer, signal) => writer.patch('shop', 'web', [{ op: 'remove', path: '/x' }], signal),
    'application/json-patch+json',
  ],
];

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
});

describe('DeploymentWriter', () => {
  const writer = createDeploymentWriter(testKubeConfig().makeApiClient(AppsV1Api));

  it.each(writes)('%s: aborting the signal aborts the request in flight', async (_name, write) => {
    const held = holdReply(200, updated);
    nock(testServer).patch(path).query(true).reply(held.reply);
    const abort = new AbortController();
    const writing = write(writer, abort.signal);
    await held.arrived;
    abort.abort();
    // Rejected while the server still holds its answer: the request was cut, not waited for.
    await expect(writing).rejects.toMatchObject({ name: 'AbortError' });
    held.release();
  });

  it.each(writes)('%s: without an abort the request completes', async (_name, write, contentType) => {
    // The client's own middleware (User-Agent) still runs beside the abort one.
    nock(testServer, {
      reqheaders: { 'content-type': contentType, 'user-agent': /^kubernetes-client-javascript\// },
    })
      .patch(path)
      .query(true)
      .reply(200, updated, jsonHeaders);
    await expect(write(writer, new AbortController().signal)).resolves.toMatchObject(updated);
  });
});
